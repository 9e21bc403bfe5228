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
        cv2.polylines(image, face[stroke.edges], False, stroke.color, stroke.thickness, line_type)  # [E, 2, 2]
    if torso_xy is not None:
        torso = np.trunc(np.asarray(torso_xy, dtype=np.float64)).astype(np.int32)
        cv2.polylines(image, torso[_SHOULDER_EDGES], False, SHOULDER, 2, line_type)
    return image


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
