"""Condition images: the face mesh and shoulders drawn the way the authors' renderer was trained to read them.

Authors' style (moda-official-facts.md §2.9), in RGB as the renderer sees it, on a black 512x512 canvas:

1. tessellation, grey (128, 128, 128), 1 px;
2. contours, 2 px: lips and face oval (224, 224, 224); subject-left eye and brow (48, 255, 48);
   subject-right eye and brow (255, 48, 48);
3. irises, 2 px: left (48, 255, 48), right (255, 48, 48);
4. shoulders: two 9-point polylines (points 0-8 and 9-17), (225, 225, 225), 2 px.

Lines are 8-connected (no anti-aliasing), end points truncated toward zero. ``style="antialiased"`` draws the
same lines with anti-aliasing (not what the released renderer saw). Other canvas sizes are drawn at 512 and
area-resized, as the golden renderer vectors were made.

Independent of the OpenCV version: OpenCV >= 4.13 (and 5.x, which current mediapipe brings) clips a thick
line before rasterising it, so 2-px lines with an end off the canvas come out differently from the OpenCV 4.10
the authors used. Those segments are rasterised here the way 4.10 does (:func:`_thick_segment`); lines inside
the canvas and 1-px lines are the same in every version and go to ``cv2.polylines``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import cv2
import numpy as np
import torch

from moda_core.landmarks import connection_groups

DRAW_SIZE = 512
_FIXED_BITS = 16                 # OpenCV's sub-pixel precision for polygon vertices
_FIXED_ONE = 1 << _FIXED_BITS
_FIXED_LIMIT = 30000             # px; beyond this fixed-point vertices overflow int32, OpenCV draws those itself
GREY, WHITE, GREEN, RED, SHOULDER = (128, 128, 128), (224, 224, 224), (48, 255, 48), (255, 48, 48), (225, 225, 225)


@dataclass(frozen=True)
class _Stroke:
    edges: np.ndarray       # [E, 2] landmark index pairs
    color: tuple[int, int, int]
    thickness: int


@cache
def _face_strokes() -> tuple[_Stroke, ...]:
    groups = connection_groups()

    def join(*names: str) -> np.ndarray:
        return np.concatenate([groups[n] for n in names])

    return (_Stroke(groups["tesselation"], GREY, 1),
            _Stroke(join("lips", "face_oval"), WHITE, 2),
            _Stroke(join("left_eye", "left_eyebrow"), GREEN, 2),
            _Stroke(join("right_eye", "right_eyebrow"), RED, 2),
            _Stroke(groups["left_iris"], GREEN, 2),
            _Stroke(groups["right_iris"], RED, 2))


_SHOULDER_EDGES = np.asarray([(i, i + 1) for side in (0, 9) for i in range(side, side + 8)], dtype=np.int64)


def _line_type(style: str) -> int:
    if style not in ("authors", "antialiased"):
        raise ValueError(f"drawing style must be 'authors' or 'antialiased', got {style!r}")
    return cv2.LINE_8 if style == "authors" else cv2.LINE_AA


def draw_condition_frame(face_xy: np.ndarray, torso_xy: np.ndarray | None = None,
                         canvas: np.ndarray | None = None, style: str = "authors") -> np.ndarray:
    """Draw one frame into a uint8 RGB ``[512, 512, 3]`` canvas (black by default) and return it.

    ``face_xy`` ``[478, 2]`` and ``torso_xy`` ``[18, 2]`` are image-space pixel positions (float or int).
    """
    line_type = _line_type(style)
    image = np.zeros((DRAW_SIZE, DRAW_SIZE, 3), np.uint8) if canvas is None else canvas
    face = np.trunc(np.asarray(face_xy, dtype=np.float64)).astype(np.int32)
    for stroke in _face_strokes():
        _draw_segments(image, face[stroke.edges], stroke.color, stroke.thickness, line_type)  # [E, 2, 2]
    if torso_xy is not None:
        torso = np.trunc(np.asarray(torso_xy, dtype=np.float64)).astype(np.int32)
        _draw_segments(image, torso[_SHOULDER_EDGES], SHOULDER, 2, line_type)
    return image


def _draw_segments(image: np.ndarray, segments: np.ndarray, color, thickness: int, line_type: int) -> None:
    """Draw ``[E, 2, 2]`` integer segments; thick 8-connected ones leaving the canvas as OpenCV 4.10 does."""
    if thickness == 1 or line_type != cv2.LINE_8:
        cv2.polylines(image, segments, False, color, thickness, line_type)
        return
    height, width = image.shape[:2]
    inside = ((segments >= 0) & (segments < (width, height))).all(axis=(1, 2))
    far = (np.abs(segments) > _FIXED_LIMIT).any(axis=(1, 2))
    native = inside | far
    if native.any():
        cv2.polylines(image, segments[native], False, color, thickness, line_type)
    for start, end in segments[~native]:
        _thick_segment(image, start, end, color, thickness)


def _thick_segment(image: np.ndarray, start: np.ndarray, end: np.ndarray, color, thickness: int) -> None:
    """OpenCV 4.10's thick 8-connected line, unclipped: a rectangle of half-width ``thickness / 2`` around the
    segment (vertices in 16-bit fixed point, the perpendicular offset rounded half to even) filled as a convex
    polygon, plus a filled round cap of radius ``round(thickness / 2)`` on each end point."""
    p0 = start.astype(np.int64) << _FIXED_BITS
    p1 = end.astype(np.int64) << _FIXED_BITS
    dx = float(p0[0] - p1[0]) / _FIXED_ONE
    dy = float(p1[1] - p0[1]) / _FIXED_ONE
    length_sq = dx * dx + dy * dy
    half_width = (thickness << (_FIXED_BITS - 1)) + (thickness & 1) * _FIXED_ONE * 0.5
    if length_sq > np.finfo(np.float64).eps:
        scale = half_width / np.sqrt(length_sq)
        offset = np.array([np.rint(dy * scale), np.rint(dx * scale)], np.int64)
        corners = np.stack([p0 + offset, p0 - offset, p1 - offset, p1 + offset]).astype(np.int32)
        cv2.fillConvexPoly(image, corners, color, cv2.LINE_8, _FIXED_BITS)
    radius = ((thickness << (_FIXED_BITS - 1)) + (_FIXED_ONE >> 1)) >> _FIXED_BITS
    for point in (start, end):
        cv2.circle(image, (int(point[0]), int(point[1])), radius, color, -1, cv2.LINE_8)


def draw_condition_images(face_xy: torch.Tensor | np.ndarray, torso_xy: torch.Tensor | np.ndarray | None = None,
                          *, size: int = DRAW_SIZE, style: Literal["authors", "antialiased"] = "authors",
                          as_uint8: bool = False) -> torch.Tensor:
    """Draw a batch: ``face_xy`` ``[T, 478, 2]``, ``torso_xy`` ``[T, 18, 2]`` -> ``[T, size, size, 3]``.

    Returns float32 in 0..1 (ComfyUI IMAGE layout) or uint8 with ``as_uint8=True``.
    """
    face = np.asarray(face_xy.detach().cpu() if isinstance(face_xy, torch.Tensor) else face_xy, dtype=np.float64)
    if face.ndim != 3 or face.shape[1:] != (478, 2):
        raise ValueError(f"face_xy must be [T, 478, 2] pixel positions, got {list(face.shape)}")
    torso = None
    if torso_xy is not None:
        torso = np.asarray(torso_xy.detach().cpu() if isinstance(torso_xy, torch.Tensor) else torso_xy,
                           dtype=np.float64)
        if torso.shape != (face.shape[0], 18, 2):
            raise ValueError(f"torso_xy must be [{face.shape[0]}, 18, 2] to match face_xy, got {list(torso.shape)}")
    if not (np.isfinite(face).all() and (torso is None or np.isfinite(torso).all())):
        raise ValueError("landmark positions contain NaN or infinite values; check the head pose and scale")
    frames = np.empty((face.shape[0], size, size, 3), np.uint8)
    canvas = np.empty((DRAW_SIZE, DRAW_SIZE, 3), np.uint8)
    for t in range(face.shape[0]):
        canvas.fill(0)
        draw_condition_frame(face[t], None if torso is None else torso[t], canvas, style)
        frames[t] = canvas if size == DRAW_SIZE else cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    out = torch.from_numpy(frames)
    return out if as_uint8 else out.to(torch.float32).div_(255.0)
