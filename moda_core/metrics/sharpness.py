"""Sharpness ratio: how sharp generated faces are next to the real ones (1 = as sharp, < 1 = blurrier).

* **Sharpness** of an image region: the variance of its Laplacian (OpenCV's 3x3 aperture
  ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``) on BT.601 luma in [0, 1], computed on the whole frame and then taken
  over the region, so region borders add no edge of their own.
* **Face region**: per frame, the bounding box of the 478 face points (x, y; forehead to chin, cheek to cheek)
  of the *reference* (real) frame, the same box for both frames. The points are given in pixels of the 512
  crop (``reference_points``, e.g. a prepared clip's tracked landmarks) and scaled to the frames' size, or,
  when not given, MediaPipe finds them in the reference frames (VIDEO mode, as
  :func:`moda_core.metrics.follow.detect_face_points`; frames without a face take their neighbours' box).
* **Ratio**: per frame ``var(Lap(generated[box])) / var(Lap(reference[box]))``; the row's value is the mean over
  frames, its details the median, the range and both mean variances. A ratio above 1 means the generated face
  has more fine detail than the real one (noise, ringing), not that it is better.
* Sharpness depends on resolution: compare frames at the size that matters (512 for the renderers' targets); a
  256 px render upscaled to 512 scores well below 1 however good it is.
"""
from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

from moda_core.metrics.follow import TARGET_SIZE, check_points, detect_face_points
from moda_core.metrics.image import _LUMA, Frames, frame_pair
from moda_core.metrics.report import MetricResult
from moda_core.smoothing import fill_missing

SHARPNESS_NAME = "sharpness ratio"
SHARPNESS_UNIT = "gen/real"
MIN_BOX = 8          # px: a smaller face box is not a face


def laplacian(frame: np.ndarray) -> np.ndarray:
    """The Laplacian of a float ``[H, W, C]`` frame's luma (``C`` = 1 or 3) in [0, 1], float64 ``[H, W]``."""
    gray = frame[..., 0] if frame.shape[-1] == 1 else frame @ _LUMA
    return cv2.Laplacian(np.ascontiguousarray(gray, dtype=np.float64), cv2.CV_64F, ksize=1,
                         borderType=cv2.BORDER_REFLECT)


def face_boxes(points: np.ndarray, width: int, height: int, size: int = TARGET_SIZE) -> np.ndarray:
    """Face points ``[T, 478, 2]`` in px of a ``size`` crop -> int boxes ``[T, 4]`` (x0, y0, x1, y1), exclusive
    end, in px of a ``width`` x ``height`` frame, clipped to it."""
    scaled = points * np.array([width / size, height / size])
    low, high = np.floor(scaled.min(axis=1)), np.ceil(scaled.max(axis=1))
    boxes = np.concatenate([low, high], axis=1)
    return np.clip(boxes, 0, [width, height, width, height]).astype(np.int64)


def sharpness_per_frame(generated: Any, reference: Any, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Laplacian variances ``([T], [T])`` of the generated and reference frames inside ``boxes`` ``[T, 4]``."""
    g, r = frame_pair(generated, reference)
    if boxes.shape != (len(g), 4):
        raise ValueError(f"need one face box per frame, [{len(g)}, 4], got {list(boxes.shape)}")
    out = np.empty((2, len(g)))
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
            raise ValueError(f"the face box of frame {t} is {x1 - x0}x{y1 - y0} px, too small to measure sharpness "
                             "(is the face inside the frame?)")
        out[0, t], out[1, t] = (laplacian(f[t])[y0:y1, x0:x1].var() for f in (g, r))
    return out[0], out[1]


def sharpness_ratio(generated: Any, reference: Any, *, reference_points: Any = None,
                    models_dir: str | os.PathLike | None = None, fps: float = 30.0) -> MetricResult:
    """The "sharpness ratio" row of ``generated`` against ``reference`` frames ``[T, H, W, C]`` (module docstring).

    ``reference_points`` ``[T, 478, 2]`` (px of the 512 crop) give the face boxes; without them MediaPipe (model
    in ``models_dir``) finds the faces of the reference frames at ``fps``.
    """
    g, r = frame_pair(generated, reference)
    count, height, width = r.shape[:3]
    if reference_points is not None:
        points, source = check_points(reference_points, "reference points", count), "given points"
        if not np.isfinite(points).all():
            raise ValueError("reference points contain NaN or infinite values")
    else:
        points, source = detect_face_points(r, models_dir, fps=fps), "MediaPipe on the reference frames"
        found = np.isfinite(points).all(axis=(1, 2))
        if not found.any():
            raise ValueError("MediaPipe found no face in the reference frames; sharpness needs the face region")
        points = fill_missing(points, found)
    gen_var, ref_var = sharpness_per_frame(g, r, face_boxes(points, width, height))
    if not (ref_var > 0).all():
        flat = int(np.flatnonzero(ref_var <= 0)[0])
        raise ValueError(f"reference frame {flat} has a flat face region (no detail); sharpness is undefined")
    ratio = gen_var / ref_var
    return MetricResult(SHARPNESS_NAME, float(ratio.mean()), SHARPNESS_UNIT, None,
                        details=dict(median=float(np.median(ratio)), min=float(ratio.min()), max=float(ratio.max()),
                                     generated_variance=float(gen_var.mean()),
                                     reference_variance=float(ref_var.mean()), frames=count, size=[width, height],
                                     face_box=f"bounding box of the 478 face points ({source})"))
