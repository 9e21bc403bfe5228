"""Landmark-follow error: do the faces in rendered frames sit where the renderer was told to put them?

* **Detection**: MediaPipe FaceLandmarker (the preprocessing's :class:`~moda_core.preprocess.FaceLandmarks`) in
  VIDEO mode, as the preprocessing tracks clips (each frame's face region comes from the previous frame's
  points; the points themselves are detected in every frame), finds the 478 points (x, y) of the first face.
* **Coordinates**: pixels of a 512x512 crop (the space of :func:`moda_core.projection.project_repr`); frames of
  another size are analysed at their size and the points scaled by ``512 / width`` and ``512 / height``.
* **Error** (px at 512): the 2-D Euclidean distance between each detected and target point, averaged over all 478
  points (468 mesh + 10 iris) and over the frames where a face was detected. The row's details also give the
  median frame, the worst frame, the 40 lip points (R's mouth) and the 60 eye/brow points (R's eyes) separately,
  and the frames without a face (left out of the mean; fewer than half the frames with a face is an error).
* **Noise floor**: the real frames of a prepared clip against that clip's own (3-frame smoothed) tracked points
  score 0.45 px (``may_5s``; 0.24 px against the unsmoothed detections). IMAGE mode (no tracking) would
  score 2.1 px there, as its face regions differ from frame to frame, so VIDEO mode is used.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from moda_core.landmarks import NUM_FACE_POINTS, eye_indices, mouth_indices
from moda_core.metrics.image import Frames
from moda_core.metrics.report import MetricResult, to_numpy

TARGET_SIZE = 512
MIN_FACE_FRACTION = 0.5
FOLLOW_NAME = "landmark follow"
FOLLOW_UNIT = "px @512"


def _uint8(frame: np.ndarray) -> np.ndarray:
    rgb = np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def detect_face_points(frames: Any, models_dir: str | os.PathLike | None = None, *, size: int = TARGET_SIZE,
                       fps: float = 30.0, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """MediaPipe's 478 points of every frame of a clip ``[T, H, W, C]`` at ``fps`` -> float64 ``[T, 478, 2]``
    (x, y) scaled to a ``size`` x ``size`` frame; NaN where no face was found. ``progress(done, total)`` after
    every frame."""
    from moda_core.preprocess.landmarks import FaceLandmarks

    video = frames if isinstance(frames, Frames) else Frames(frames, "frames")
    count, height, width = video.shape[:3]
    scale = np.array([size / width, size / height])
    out = np.full((count, NUM_FACE_POINTS, 2), np.nan)
    with FaceLandmarks(models_dir, video=True) as detector:
        for t in range(count):
            faces = detector.detect(_uint8(video[t]), timestamp_ms=round(t * 1000.0 / fps))
            if faces:
                out[t] = faces[0][:, :2] * scale
            if progress is not None:
                progress(t + 1, count)
    return out


def check_points(points: Any, name: str, frames: int | None = None) -> np.ndarray:
    """``[T, 478, 2|3]`` points (tensor or array) -> float64 ``[T, 478, 2]``; ``frames`` checks T."""
    arr = to_numpy(points, name).astype(np.float64)
    if arr.ndim != 3 or arr.shape[1] != NUM_FACE_POINTS or arr.shape[2] not in (2, 3):
        raise ValueError(f"{name} must be face points [T, {NUM_FACE_POINTS}, 2], got shape {list(arr.shape)}")
    if frames is not None and arr.shape[0] != frames:
        raise ValueError(f"{name} has {arr.shape[0]} frames but the video has {frames}; give one set of points "
                         "per frame")
    return arr[..., :2]


def follow_distances(detected: Any, targets: Any) -> np.ndarray:
    """Per-point distances ``[T, 478]`` (px) between detected and target points ``[T, 478, 2]``; NaN rows where
    nothing was detected. Targets must be finite."""
    found = check_points(detected, "detected points")
    goal = check_points(targets, "target points", len(found))
    if not np.isfinite(goal).all():
        raise ValueError("target points contain NaN or infinite values")
    return np.linalg.norm(found - goal, axis=-1)


def follow_row(distances: np.ndarray, **details: Any) -> MetricResult:
    """The "landmark follow" row from :func:`follow_distances` output (see the module docstring)."""
    found = np.isfinite(distances).all(axis=1)
    if found.sum() < MIN_FACE_FRACTION * len(distances) or not found.any():
        raise ValueError(f"MediaPipe found a face in only {int(found.sum())} of {len(distances)} generated frames; "
                         "the renders do not look like a face")
    per_frame = distances[found].mean(axis=1)
    return MetricResult(
        FOLLOW_NAME, float(per_frame.mean()), FOLLOW_UNIT, False,
        details=dict(median_frame=float(np.median(per_frame)), worst_frame=float(per_frame.max()),
                     worst_frame_index=int(np.flatnonzero(found)[per_frame.argmax()]),
                     mouth=float(distances[found][:, mouth_indices()].mean()),
                     eyes=float(distances[found][:, eye_indices()].mean()),
                     frames=int(len(distances)), frames_without_face=np.flatnonzero(~found).tolist(),
                     points="all 478 (x, y)", **details))


def landmark_follow(frames: Any, targets: Any, models_dir: str | os.PathLike | None = None, *, fps: float = 30.0,
                    progress: Callable[[int, int], None] | None = None) -> MetricResult:
    """Landmark-follow error of generated ``frames`` ``[T, H, W, C]`` against ``targets`` ``[T, 478, 2]`` (px of
    the 512 crop): a :class:`MetricResult` named "landmark follow" (module docstring). ``ValueError`` for
    mismatched inputs or too few detected faces; a missing MediaPipe model raises
    :class:`~moda_core.preprocess.PreprocessError` (a ``ValueError``) naming the file."""
    video = frames if isinstance(frames, Frames) else Frames(frames, "generated frames")
    goal = check_points(targets, "target points", len(video))
    return follow_row(follow_distances(detect_face_points(video, models_dir, fps=fps, progress=progress), goal))
