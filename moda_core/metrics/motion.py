"""Motion statistics of generated R: diversity across samples, head-pose range and speed, blink rate.

* **Diversity** (paper Table 3, "the variance of the generated facial landmarks"; canonical px^2): for ``S >= 2``
  samples generated from the same audio, the population variance across samples of every landmark coordinate,
  averaged over frames, points and coordinates:
  ``1/(T*N*D) * sum_{t,n,d} Var_s(x[s,t,n,d])``. For an R the points are the ``tracks`` (default mouth and
  eyes, what MODA generates) and the coordinates x, y (``dims=2``) or x, y, z (``dims=3``). Identical samples
  give 0; samples ``base + c_s`` with per-sample constants ``c_s`` give ``Var(c)``. Offsets or absolute values
  give the same number (the subject's mean cancels).
* **Head-pose range** (deg for yaw/pitch/roll, image px for tx/ty/tz, unitless scale): ``max_t - min_t`` per axis;
  **speed** (the same units per second): ``mean_t |p[t+1] - p[t]| * fps``. Both are averaged over samples.
* **Blink rate** (blinks per minute): per frame, the eye openness (mean over both eyes of
  :func:`moda_core.editing.eyes.eye_openness`: lid-centre gap over eye width, absolute canonical points); a
  frame is closed when its openness is below ``threshold`` times the sample's median openness (the open-eye
  level, as blinks are short); each run of closed frames is one blink (the rule of
  :func:`moda_core.editing.eyes.detect_blinks`). Rate = ``blinks / (T / fps / 60)``, averaged over samples.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from moda_core.geometry import HEAD_POSE_AXES
from moda_core.metrics.report import to_numpy
from moda_core.repr import TalkingRepr

if TYPE_CHECKING:
    from moda_core.subject import Subject


def diversity(samples: Any, *, tracks: Sequence[str] = ("mouth", "eyes"), dims: int = 2,
              subject: "Subject | None" = None) -> float:
    """Mean variance across samples of landmark coordinates, canonical px^2 (see the module docstring).

    ``samples``: an R with ``S >= 2`` samples, or an array ``[S, T, N, D]`` (``[S, T, F]`` for any features).
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    if isinstance(samples, TalkingRepr):
        if not tracks:
            raise ValueError("tracks must name at least one landmark track")
        parts = []
        for track in tracks:
            value = getattr(samples, track, None) if track in ("mouth", "eyes", "face", "torso") else None
            if value is None:
                raise ValueError(f"R has no {track!r} track (choose from mouth, eyes, torso, face when present)")
            parts.append(to_numpy(value, track).astype(np.float64)[..., :dims])
        arr = np.concatenate(parts, axis=2)
    else:
        arr = to_numpy(samples, "samples")
        if arr.ndim not in (3, 4) or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"samples must be numbers [S, T, N, D] or [S, T, F], got shape {list(arr.shape)} "
                             f"dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim == 4:
            if arr.shape[-1] < dims:
                raise ValueError(f"dims={dims} needs {dims}-D points, got {arr.shape[-1]}-D")
            arr = arr[..., :dims]
    if arr.shape[0] < 2:
        raise ValueError(f"diversity needs at least 2 samples of the same audio, got {arr.shape[0]}")
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError("samples are empty or contain NaN or infinite values")
    return float((arr - arr[:1]).var(axis=0).mean())      # centring on sample 0: exact 0 for equal samples


def _pose_array(pose: Any, fps: float | None) -> tuple[np.ndarray, float]:
    if isinstance(pose, TalkingRepr):
        return to_numpy(pose.head_pose).astype(np.float64), pose.fps
    arr = to_numpy(pose, "head_pose")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != len(HEAD_POSE_AXES) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"head pose must be an R or numbers [T, 7] / [S, T, 7] "
                         f"({', '.join(HEAD_POSE_AXES)}), got shape {list(arr.shape)}")
    if fps is None or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"a head-pose array needs fps > 0 (frames per second), got {fps}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("head pose contains NaN or infinite values")
    return arr, float(fps)


def head_pose_stats(pose: Any, *, fps: float | None = None) -> dict[str, dict[str, float]]:
    """``{axis: {"range": max - min, "speed": mean |d/dt|}}`` per head-pose axis (yaw, pitch, roll in deg and
    deg/s; tx, ty, tz in px and px/s; scale), averaged over samples. ``pose``: an R, or ``[T, 7]``/``[S, T, 7]``
    with ``fps``. Needs at least 2 frames."""
    arr, rate = _pose_array(pose, fps)
    if arr.shape[1] < 2:
        raise ValueError("head-pose speed needs at least 2 frames")
    ranges = (arr.max(axis=1) - arr.min(axis=1)).mean(axis=0)
    speeds = (np.abs(np.diff(arr, axis=1)).mean(axis=1) * rate).mean(axis=0)
    return {axis: {"range": float(ranges[i]), "speed": float(speeds[i])} for i, axis in enumerate(HEAD_POSE_AXES)}


def eye_openness_series(r: TalkingRepr, subject: "Subject | None" = None) -> np.ndarray:
    """``[S, T]`` eye openness of an R, both eyes averaged: :func:`moda_core.editing.eyes.eye_openness` (lid-centre
    gap over eye width, about 0.25 open and 0 closed). Offsets need ``subject``."""
    from moda_core.editing.eyes import openness_series   # lazy: the landmark/image metrics do not need editing

    if not isinstance(r, TalkingRepr):
        raise ValueError(f"eye openness needs a TalkingRepr, got {type(r).__name__}")
    return openness_series(r, subject)


def count_blinks(openness: np.ndarray, threshold: float = 0.5) -> int:
    """Runs of frames whose openness is below ``threshold`` x the median openness of the series ``[T]``."""
    level = float(np.median(openness))
    if level <= 0:
        return 0
    from moda_core.editing.eyes import closed_runs

    return len(closed_runs(openness < threshold * level))


def blink_rate(x: Any, *, fps: float | None = None, subject: "Subject | None" = None,
               threshold: float = 0.5) -> float:
    """Blinks per minute, averaged over samples (see the module docstring).

    ``x``: an R (absolute, or offsets with ``subject``), or an openness series ``[T]`` / ``[S, T]`` with ``fps``.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if isinstance(x, TalkingRepr):
        series, rate = eye_openness_series(x, subject), x.fps
    else:
        series = to_numpy(x, "openness")
        if series.ndim == 1:
            series = series[None]
        if series.ndim != 2 or not np.issubdtype(series.dtype, np.number) or series.shape[1] < 1:
            raise ValueError(f"openness must be an R or numbers [T] / [S, T], got shape {list(series.shape)}")
        if fps is None or not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"an openness series needs fps > 0, got {fps}")
        series, rate = series.astype(np.float64), float(fps)
        if not np.isfinite(series).all():
            raise ValueError("openness contains NaN or infinite values")
    minutes = series.shape[1] / rate / 60.0
    return float(np.mean([count_blinks(s, threshold) for s in series]) / minutes)
