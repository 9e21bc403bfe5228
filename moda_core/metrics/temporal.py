"""TCM, the temporal consistency metric of the MODA paper (eq. 16, after Yao et al. 2017).

For a reference video ``O`` and a generated video ``V`` of ``T`` frames each (same shape, see
:mod:`moda_core.metrics.image` for accepted inputs; values on the [0, 1] scale)::

    E_X(t) = || X_t - warp(X_{t-1}) ||^2          (sum of squares over all pixels and channels)
    TCM    = 1/(T-1) * sum_{t=1}^{T-1} exp( -| E_O(t) / E_V(t) - 1 | )

* ``warp(X_{t-1})`` resamples frame ``t-1`` onto frame ``t`` with dense optical flow: OpenCV Farneback flow
  (pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2) estimated on the grayscale
  frames from ``t`` to ``t-1`` (backward flow), applied with ``cv2.remap`` (bilinear, replicated borders).
* The paper does not say whose flow warps which video. By default (``flow_from="reference"``) the flow is
  estimated on the reference and warps both videos, as in Yao et al., where the trusted video supplies the
  motion: the generated video is then judged on whether it changes between frames the way the reference does,
  which needs a generated video aligned with the reference (renderer reconstruction, as in the paper's TPE
  ablation). ``flow_from="each"`` warps each video with its own flow, for videos whose motion differs.
* The equation as printed (text extraction of the PDF) reads ``exp(-||.||^2/||.||^2 - 1)``; we read the bars of
  an absolute value lost in extraction, ``exp(-|ratio - 1|)``, which is in (0, 1] and is 1 exactly when the
  generated video's warping residual equals the reference's. ``absolute=False`` gives the literal
  ``exp(1 - ratio)`` (unbounded above by e, for comparison only).
* The sum has ``T - 1`` terms (the first frame has no predecessor), so it is averaged over ``T - 1``.
* ``eps`` (per pixel-channel, default 1e-10) is added to both residuals, so two perfectly static videos
  (0 / 0) score 1, and a frozen generated video against a moving reference scores about ``exp(-ratio)`` -> 0.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from moda_core.metrics.image import _LUMA, Frames, frame_pair

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)
TCM_EPS = 1e-10


def _gray_u8(frame: np.ndarray) -> np.ndarray:
    gray = frame[..., 0] if frame.shape[-1] == 1 else frame @ _LUMA
    return np.clip(np.round(gray * 255.0), 0, 255).astype(np.uint8)


def backward_flow(frame_t: np.ndarray, frame_prev: np.ndarray) -> np.ndarray:
    """Farneback flow ``[H, W, 2]`` (dx, dy) with ``frame_t(p) ~ frame_prev(p + flow(p))``; frames [H, W, C] in [0, 1]."""
    return cv2.calcOpticalFlowFarneback(_gray_u8(frame_t), _gray_u8(frame_prev), None, **FARNEBACK)


def warp(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Resample ``frame`` [H, W, C] at ``p + flow(p)`` (bilinear, replicated borders)."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    out = cv2.remap(np.ascontiguousarray(frame, dtype=np.float64), map_x, map_y, interpolation=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(frame.shape)


def _residual(cur: np.ndarray, prev: np.ndarray, flow: np.ndarray) -> float:
    return float(np.sum((cur - warp(prev, flow)) ** 2))


def tcm_per_frame(generated: Any, reference: Any, *, flow_from: str = "reference", absolute: bool = True,
                  eps: float = TCM_EPS, data_range: float | None = None) -> np.ndarray:
    """``[T - 1]`` TCM terms ``exp(-|E_O(t) / E_V(t) - 1|)`` for t = 1..T-1 (see the module docstring)."""
    if flow_from not in ("reference", "each"):
        raise ValueError(f"flow_from must be 'reference' or 'each', got {flow_from!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    v, o = frame_pair(generated, reference, data_range)
    if len(v) < 2:
        raise ValueError("TCM needs at least 2 frames")
    if min(v.shape[1:3]) < 2:
        raise ValueError(f"TCM needs frames of at least 2x2 pixels, got {v.shape[2]}x{v.shape[1]}")
    n = float(np.prod(v.shape[1:]))
    terms = np.empty(len(v) - 1)
    o_prev, v_prev = o[0], v[0]
    for t in range(1, len(v)):
        o_cur, v_cur = o[t], v[t]
        flow_o = backward_flow(o_cur, o_prev)
        flow_v = flow_o if flow_from == "reference" else backward_flow(v_cur, v_prev)
        e_o = _residual(o_cur, o_prev, flow_o) + eps * n
        e_v = _residual(v_cur, v_prev, flow_v) + eps * n
        ratio = e_o / e_v if e_v > 0 else (1.0 if e_o == 0 else np.inf)
        terms[t - 1] = np.exp(-abs(ratio - 1.0)) if absolute else np.exp(1.0 - ratio)
        o_prev, v_prev = o_cur, v_cur
    return terms


def tcm(generated: Any, reference: Any, *, flow_from: str = "reference", absolute: bool = True,
        eps: float = TCM_EPS, data_range: float | None = None) -> float:
    """TCM of eq. 16, in (0, 1] (higher is better; identical videos give 1). See the module docstring."""
    return float(tcm_per_frame(generated, reference, flow_from=flow_from, absolute=absolute, eps=eps,
                               data_range=data_range).mean())


__all__ = ["tcm", "tcm_per_frame", "backward_flow", "warp", "Frames", "FARNEBACK"]
