"""Mouth-landmark metrics of the MODA paper (section 4.1): LMD, LMD-v and MA.

Inputs are either two :class:`~moda_core.repr.TalkingRepr` (absolute, or offsets plus the ``subject`` to add
back) or raw point arrays ``[T, N, 2|3]`` / ``[S, T, N, 2|3]`` (numpy or torch) in canonical px. Both must have
the same frame count ``T`` and point count ``N``; a reference with one sample is compared with every generated
sample, and the result is the mean over samples.

* **LMD** (mouth landmark distance, canonical px):
  ``LMD = 1/(S*T*N) * sum_{s,t,n} || g[s,t,n,:D] - r[s,t,n,:D] ||_2`` with ``D = 2`` (x, y) by default, as
  landmark papers measure it; ``dims=3`` adds z.
* **LMD-v** (velocity LMD, canonical px per frame): the same on frame-to-frame velocities
  ``v[t] = x[t+1] - x[t]`` (``T - 1`` of them), so a constant offset between the sequences gives 0.
* **MA** (mouth area IoU, in [0, 1]): per frame, the lip polygon of each sequence is rasterised (``cv2.fillPoly``
  with sub-pixel coordinates on a canvas ``resolution`` times finer than canonical px, default 8, spanning both
  polygons), and ``|A & B| / |A | B|`` is averaged over frames and samples. Edge pixels count as inside, so
  values read slightly high for thin shapes (about +0.005 for a 48x12 px box at the default resolution).
  The paper calls it the overlap of the "mouth area"; we take the region inside the *outer* lip contour (lips
  plus opening) by default, which is never empty; ``contour="inner"`` uses the inner lip contour (the mouth
  opening; nearly empty when the mouth is closed). A frame where both polygons rasterise to nothing counts as
  IoU 1.
"""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from moda_core.landmarks import NUM_FACE_POINTS, connection_groups, mouth_indices
from moda_core.metrics.report import to_numpy
from moda_core.repr import TalkingRepr

if TYPE_CHECKING:
    from moda_core.subject import Subject

MOUTH_CORNER_OUTER = 61     # MediaPipe FaceMesh: left corner of the outer lip contour
MOUTH_CORNER_INNER = 78     # ... and of the inner one
_MAX_CANVAS = 4096


def absolute_repr(r: TalkingRepr, subject: "Subject | None", name: str = "R") -> TalkingRepr:
    """``r`` with absolute values; offsets need the ``subject`` whose means they are relative to."""
    if not isinstance(r, TalkingRepr):
        raise ValueError(f"{name} must be a TalkingRepr, got {type(r).__name__}")
    if r.is_offset:
        if subject is None:
            raise ValueError(f"{name} holds offsets from the subject's means; pass subject=... to make it "
                             "absolute (landmark metrics compare canonical positions)")
        r = r.to_absolute(subject)
    return r


def landmark_array(x: Any, *, track: str = "mouth", subject: "Subject | None" = None,
                   name: str = "input") -> np.ndarray:
    """``[S, T, N, D]`` float64 points from an R (``track`` field, made absolute) or a ``[T|S,T, N, 2|3]`` array."""
    if isinstance(x, TalkingRepr):
        r = absolute_repr(x, subject, name)
        value = getattr(r, track, None) if track in ("mouth", "eyes", "face", "torso") else None
        if value is None:
            raise ValueError(f"{name} has no {track!r} track (choose mouth, eyes, torso or a present face)")
        arr = to_numpy(value, name).astype(np.float64)
    else:
        arr = to_numpy(x, name)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] not in (2, 3):
            raise ValueError(f"{name} must be landmarks [T, N, 2|3] or [S, T, N, 2|3], got shape {list(arr.shape)}")
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"{name} has no frames or no points: shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _pair(generated: Any, reference: Any, *, track: str, subject: "Subject | None",
          dims: int | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(generated, TalkingRepr) and isinstance(reference, TalkingRepr) and generated.fps != reference.fps:
        raise ValueError(f"generated and reference R have different fps ({generated.fps:g} vs "
                         f"{reference.fps:g}); resample one of them first")
    g = landmark_array(generated, track=track, subject=subject, name="generated")
    r = landmark_array(reference, track=track, subject=subject, name="reference")
    if g.shape[1] != r.shape[1]:
        raise ValueError(f"generated has {g.shape[1]} frames, reference {r.shape[1]}; trim or resample to the "
                         "same length (TalkingRepr.slice_time / resample)")
    if g.shape[2] != r.shape[2]:
        raise ValueError(f"generated has {g.shape[2]} points per frame, reference {r.shape[2]}")
    if g.shape[0] != r.shape[0] and 1 not in (g.shape[0], r.shape[0]):
        raise ValueError(f"sample counts {g.shape[0]} (generated) and {r.shape[0]} (reference) differ; "
                         "give the reference one sample or as many as the generated")
    if dims is not None:
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 (x, y) or 3 (x, y, z), got {dims}")
        if min(g.shape[-1], r.shape[-1]) < dims:
            raise ValueError(f"dims={dims} needs {dims}-D points, got {g.shape[-1]}-D and {r.shape[-1]}-D")
        g, r = g[..., :dims], r[..., :dims]
    return g, r


def lmd(generated: Any, reference: Any, *, dims: int = 2, track: str = "mouth",
        subject: "Subject | None" = None) -> float:
    """Mean landmark distance in canonical px (see the module docstring); 0 for identical sequences."""
    g, r = _pair(generated, reference, track=track, subject=subject, dims=dims)
    return float(np.linalg.norm(g - r, axis=-1).mean())


def lmd_v(generated: Any, reference: Any, *, dims: int = 2, track: str = "mouth",
          subject: "Subject | None" = None) -> float:
    """Mean distance between frame-to-frame landmark velocities, canonical px per frame (needs T >= 2)."""
    g, r = _pair(generated, reference, track=track, subject=subject, dims=dims)
    if g.shape[1] < 2:
        raise ValueError("LMD-v needs at least 2 frames")
    return float(np.linalg.norm(np.diff(g, axis=1) - np.diff(r, axis=1), axis=-1).mean())


# ---------------------------------------------------------------- mouth area
@cache
def _lip_loops_mesh() -> dict[str, tuple[int, ...]]:
    """The two closed lip contours as FaceMesh indices in walking order, from the ``lips`` connection group."""
    edges = connection_groups()["lips"]
    neighbours: dict[int, list[int]] = {}
    for a, b in edges.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    loops = {}
    for name, start in (("outer", MOUTH_CORNER_OUTER), ("inner", MOUTH_CORNER_INNER)):
        loop, prev, cur = [start], None, start
        while True:
            nxt = [n for n in neighbours[cur] if n != prev]
            if len(neighbours[cur]) != 2:
                raise RuntimeError(f"lips connection group is not two closed loops (point {cur})")
            prev, cur = cur, nxt[0]
            if cur == start:
                break
            loop.append(cur)
        loops[name] = tuple(loop)
    return loops


def lip_contour(contour: str = "outer", num_points: int = 40) -> np.ndarray:
    """Indices of a lip polygon (``"outer"`` or ``"inner"``) into a ``num_points``-point array (40: R's mouth
    order, 478: the FaceMesh), in walking order around the loop."""
    loops = _lip_loops_mesh()
    if contour not in loops:
        raise ValueError(f"contour must be 'outer' or 'inner', got {contour!r}")
    mesh = np.asarray(loops[contour], dtype=np.int64)
    if num_points == NUM_FACE_POINTS:
        return mesh
    if num_points == len(mouth_indices()):
        position = {int(m): i for i, m in enumerate(mouth_indices())}
        return np.asarray([position[int(m)] for m in mesh], dtype=np.int64)
    raise ValueError(f"mouth area needs the 40 mouth points (R order) or all {NUM_FACE_POINTS} face points, "
                     f"got {num_points} points")


def _polygon_iou(a: np.ndarray, b: np.ndarray, resolution: float) -> float:
    lo = np.floor(np.minimum(a.min(0), b.min(0))) - 1.0
    extent = float(np.max(np.maximum(a.max(0), b.max(0)) - lo)) + 1.0
    scale = min(resolution, _MAX_CANVAS / extent)
    size = int(np.ceil(extent * scale)) + 2
    masks = []
    for poly in (a, b):
        canvas = np.zeros((size, size), dtype=np.uint8)
        fixed = np.round((poly - lo) * scale * 16.0).astype(np.int32)      # 4 fractional bits
        cv2.fillPoly(canvas, [fixed.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=4)
        masks.append(canvas.astype(bool))
    union = np.logical_or(*masks).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(*masks).sum() / union)


def mouth_area_iou(generated: Any, reference: Any, *, contour: str = "outer", subject: "Subject | None" = None,
                   resolution: float = 8.0, per_frame: bool = False) -> float | np.ndarray:
    """MA: mean IoU of the rasterised lip polygons, in [0, 1] (see the module docstring).

    ``resolution`` is canvas pixels per canonical px (finer = less quantisation); ``per_frame=True`` returns the
    ``[S, T]`` IoUs instead of their mean. Uses x, y only.
    """
    if not resolution > 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    g, r = _pair(generated, reference, track="mouth", subject=subject, dims=2)
    loop = lip_contour(contour, g.shape[2])
    g, r = np.broadcast_arrays(g[:, :, loop], r[:, :, loop])
    ious = np.empty(g.shape[:2])
    for s in range(g.shape[0]):
        for t in range(g.shape[1]):
            ious[s, t] = _polygon_iou(g[s, t], r[s, t], resolution)
    return ious if per_frame else float(ious.mean())
