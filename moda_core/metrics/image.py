"""Full-reference image metrics (PSNR, SSIM) and the no-reference NIQE.

Frames are ``[T, H, W, C]`` batches or single ``[H, W, C]`` images, ``C`` = 1 or 3, numpy or torch (a ComfyUI
IMAGE is ``[B, H, W, 3]`` float in [0, 1]). Each input is brought to float64 in [0, 1] on its own: ``uint8`` is
divided by 255, ``uint16`` by 65535, floats are taken as already in [0, 1] unless ``data_range`` says their full
scale (e.g. ``data_range=255`` for float frames holding 0..255). So a uint8 video and a float IMAGE compare
directly. Both inputs must have the same shape. Scores are computed per frame and averaged over frames.

* **PSNR** (dB): ``10 * log10(1 / MSE)`` per frame on the [0, 1] scale (= ``10 log10(255^2 / MSE_uint8)``),
  MSE over all pixels and channels. A frame with MSE 0 scores ``max_db`` (default 100 dB, the cap: identical
  inputs give exactly 100); every frame's score is capped there so the mean stays finite.
* **SSIM** (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, ``L = 1``,
  population (not sample) covariances, reflect padding, and the mean of the SSIM map after cropping the 5-pixel
  border; computed per channel and averaged over channels (``channels="mean"``) or on BT.601 luma
  ``Y = 0.299 R + 0.587 G + 0.114 B`` (``channels="luma"``). This is the formula of
  ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=-1)``. Identical inputs give 1.
* **NIQE** (Mittal et al. 2013, no reference, lower is better): :func:`moda_core.metrics.niqe_model.niqe_score` per
  frame on MATLAB's YCbCr luma, averaged over up to ``max_frames`` evenly spaced frames (default
  :data:`NIQE_MAX_FRAMES`; about 0.2-0.5 s per 512x512 frame on one core). Frames need at least two 96x96 blocks.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from moda_core.metrics.report import MetricResult, to_numpy

PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_LUMA = np.array([0.299, 0.587, 0.114])

NIQE_MAX_FRAMES = 20


class Frames:
    """A validated frame batch read one frame at a time (whole videos in float64 would not fit in memory)."""

    def __init__(self, x: Any, name: str = "frames", data_range: float | None = None):
        arr = to_numpy(x, name)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3):
            raise ValueError(f"{name} must be frames [T, H, W, 1|3] or an image [H, W, 1|3], got shape "
                             f"{list(arr.shape)}")
        if min(arr.shape[:3]) < 1:
            raise ValueError(f"{name} is empty: shape {list(arr.shape)}")
        if data_range is not None:
            if not data_range > 0:
                raise ValueError(f"data_range must be > 0, got {data_range}")
            scale = float(data_range)
        elif arr.dtype == np.uint8:
            scale = 255.0
        elif arr.dtype == np.uint16:
            scale = 65535.0
        elif np.issubdtype(arr.dtype, np.floating):
            scale = 1.0
        else:
            raise ValueError(f"{name} must be uint8, uint16 or float frames, got dtype {arr.dtype}")
        self.array, self.scale, self.name = arr, scale, name

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.array.shape)

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        """Frame ``t`` as float64 ``[H, W, C]`` in [0, 1]."""
        frame = self.array[t].astype(np.float64) / self.scale
        if not np.isfinite(frame).all():
            raise ValueError(f"{self.name} frame {t} contains NaN or infinite values")
        return frame


def frame_pair(generated: Any, reference: Any, data_range: float | None = None) -> tuple[Frames, Frames]:
    """Both videos validated, with equal shapes."""
    g = generated if isinstance(generated, Frames) else Frames(generated, "generated", data_range)
    r = reference if isinstance(reference, Frames) else Frames(reference, "reference", data_range)
    if g.shape != r.shape:
        raise ValueError(f"generated frames {list(g.shape)} and reference frames {list(r.shape)} differ in shape "
                         "(need the same frame count, size and channels)")
    return g, r


def psnr_per_frame(generated: Any, reference: Any, *, data_range: float | None = None,
                   max_db: float = PSNR_CAP_DB) -> np.ndarray:
    """``[T]`` PSNR in dB, each capped at ``max_db``."""
    g, r = frame_pair(generated, reference, data_range)
    mse = np.array([np.mean((g[t] - r[t]) ** 2) for t in range(len(g))])
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(1.0 / mse)
    return np.minimum(db, max_db)


def psnr(generated: Any, reference: Any, *, data_range: float | None = None, max_db: float = PSNR_CAP_DB) -> float:
    """Mean per-frame PSNR in dB (higher is better; identical frames give ``max_db``)."""
    return float(psnr_per_frame(generated, reference, data_range=data_range, max_db=max_db).mean())


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, sigmaY=SSIM_SIGMA,
                            borderType=cv2.BORDER_REFLECT)


def _ssim_plane(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mu_a, mu_b = _blur(a), _blur(b)
    var_a = _blur(a * a) - mu_a * mu_a
    var_b = _blur(b * b) - mu_b * mu_b
    cov = _blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    pad = (SSIM_WINDOW - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def ssim_per_frame(generated: Any, reference: Any, *, data_range: float | None = None,
                   channels: str = "mean") -> np.ndarray:
    """``[T]`` SSIM per frame (see the module docstring for the exact formula)."""
    if channels not in ("mean", "luma"):
        raise ValueError(f"channels must be 'mean' (per channel, averaged) or 'luma', got {channels!r}")
    g, r = frame_pair(generated, reference, data_range)
    if min(g.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {g.shape[2]}x{g.shape[1]}")
    out = np.empty(len(g))
    for t in range(len(g)):
        a, b = g[t], r[t]
        if channels == "luma" and a.shape[-1] == 3:
            a, b = (a @ _LUMA)[..., None], (b @ _LUMA)[..., None]
        out[t] = np.mean([_ssim_plane(np.ascontiguousarray(a[..., c]), np.ascontiguousarray(b[..., c]))
                          for c in range(a.shape[-1])])
    return out


def ssim(generated: Any, reference: Any, *, data_range: float | None = None, channels: str = "mean") -> float:
    """Mean per-frame SSIM (at most 1, higher is better; identical frames give 1)."""
    return float(ssim_per_frame(generated, reference, data_range=data_range, channels=channels).mean())


def niqe(frames: Any, *, max_frames: int | None = NIQE_MAX_FRAMES, channel: str = "y") -> MetricResult:
    """Mean per-frame NIQE (lower is better) as ``MetricResult`` ``"NIQE"``; ``details``: ``frames`` scored,
    ``of_frames`` in the input, ``channel``. ``max_frames=None`` scores every frame.

    Raises ``ValueError`` for a bad batch or frames too small for NIQE (under two 96x96 blocks)."""
    from moda_core.metrics.niqe_model import niqe_score

    checked = frames if isinstance(frames, Frames) else Frames(frames, "frames")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    total = len(checked)
    count = total if max_frames is None else min(total, max_frames)
    picked = np.unique(np.linspace(0, total - 1, count).round().astype(int))
    scores = [niqe_score(checked[int(t)], channel) for t in picked]
    return MetricResult("NIQE", float(np.mean(scores)), "", False,
                        details={"frames": len(picked), "of_frames": total, "channel": channel})
