"""18 shoulder points from the selfie segmenter's person mask (our replacement for the authors' matting +
face parsing, moda-official-facts.md §7.5-7.6).

2-D extraction (in the 512 crop): keep the connected part of the person mask that holds the face; for every
column left and right of the neck (outside ``NECK_HALF_WIDTH`` face widths of the face centre, within
``SHOULDER_REACH`` face widths), the silhouette's upper boundary is the first person pixel at or below the
chin (+ a small margin); a median filter along x removes notches. Each shoulder is then 9 points evenly
spaced in x over its columns, y interpolated: image-left shoulder first, each ordered left -> right. With
long hair over the shoulders the boundary is the hair's outline. A shoulder that is not visible is mirrored
from the other one about the face centre; with neither visible, :func:`fallback_shoulders` gives a flat
line below the chin.

3-D (billboard, like the authors): z = mean z of the frame's face, then canonicalised with the head pose.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from moda_core.smoothing import fill_missing

POINTS_PER_SIDE = 9
NECK_HALF_WIDTH = 0.3            # face widths
SHOULDER_REACH = 2.5             # face widths
CHIN_MARGIN = 0.05               # face heights below the chin where the search starts
FALLBACK_DROP = 0.45             # fallback shoulder line: face heights below the chin
MIN_COLUMNS = 8                  # columns a side needs to count as visible
_CHIN, _FOREHEAD, _CHEEK_RIGHT, _CHEEK_LEFT, _NOSE_BRIDGE = 152, 10, 234, 454, 168


def _face_frame(face: np.ndarray) -> tuple[float, float, float, float]:
    """(centre x, chin y, face width, face height) of an image-space face ``[478, 3]``."""
    width = abs(face[_CHEEK_LEFT, 0] - face[_CHEEK_RIGHT, 0])
    height = abs(face[_CHIN, 1] - face[_FOREHEAD, 1])
    return (face[_CHEEK_LEFT, 0] + face[_CHEEK_RIGHT, 0]) / 2, face[_CHIN, 1], width, height


def _person_with_face(probability: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Boolean mask of the connected person region holding the nose bridge (else the largest region)."""
    mask = (probability > 0.5).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask)
    if count <= 2:
        return mask.astype(bool)
    h, w = mask.shape
    x, y = np.clip(face[_NOSE_BRIDGE, :2].astype(int), 0, (w - 1, h - 1))
    label = labels[y, x]
    if label == 0:                                   # face pixel not in the mask: take the largest region
        label = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return labels == label


def _side(boundary: np.ndarray, columns: np.ndarray) -> np.ndarray | None:
    """9 (x, y) points along the boundary over ``columns`` (x ascending) or None if too few are valid."""
    columns = columns[np.isfinite(boundary[columns])]
    if len(columns) < MIN_COLUMNS:
        return None
    ys = median_filter(boundary[columns], size=9, mode="nearest")
    xs = np.linspace(columns[0], columns[-1], POINTS_PER_SIDE)
    return np.stack([xs + 0.5, np.interp(xs, columns, ys)], -1)     # +0.5: column centres


def shoulder_points(person_probability: np.ndarray, face: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Person map ``[H, W]`` + image-space face ``[478, 3]`` (same pixels) -> (``[18, 2]`` or None, sides seen)."""
    mask = _person_with_face(person_probability, face)
    h, w = mask.shape
    centre, chin, face_width, face_height = _face_frame(face)
    top = int(np.clip(np.ceil(chin + CHIN_MARGIN * face_height), 0, h - 1))
    below = mask[top:]
    boundary = np.where(below.any(0), top + below.argmax(0), np.nan)     # top edge of first person pixel
    columns = np.arange(w)
    offset = columns + 0.5 - centre
    reach = (np.abs(offset) >= NECK_HALF_WIDTH * face_width) & (np.abs(offset) <= SHOULDER_REACH * face_width)
    left = _side(boundary, columns[reach & (offset < 0)])
    right = _side(boundary, columns[reach & (offset > 0)])
    seen = (left is not None) + (right is not None)
    if seen == 0:
        return None, 0
    if left is None:
        left = (right * (-1.0, 1.0) + (2 * centre, 0.0))[::-1]
    elif right is None:
        right = (left * (-1.0, 1.0) + (2 * centre, 0.0))[::-1]
    return np.concatenate([left, right]), seen


def fallback_shoulders(face: np.ndarray, size: int) -> np.ndarray:
    """A flat ``[18, 2]`` shoulder line ``FALLBACK_DROP`` face heights below the chin, to the crop edges."""
    centre, chin, face_width, face_height = _face_frame(face)
    y = min(chin + FALLBACK_DROP * face_height, size - 1.0)
    inner = NECK_HALF_WIDTH * face_width
    left = np.linspace(0.0, max(centre - inner, 1.0), POINTS_PER_SIDE)
    right = np.linspace(min(centre + inner, size - 1.0), float(size), POINTS_PER_SIDE)
    return np.stack([np.concatenate([left, right]), np.full(2 * POINTS_PER_SIDE, y)], -1)


def smooth_track(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``[T, 18, 2]`` per-frame shoulders (rows with ``found`` False are ignored) -> filled, smoothed track.

    Missing frames are interpolated linearly in time; then a 5-frame median (drops one-frame outliers) and a
    Gaussian (sigma 1 frame) smooth each coordinate.
    """
    flat = fill_missing(points, found).reshape(len(points), -1)
    flat = median_filter(flat, size=(5, 1), mode="nearest")
    return gaussian_filter1d(flat, sigma=1.0, axis=0, mode="nearest").reshape(points.shape)


def billboard(points_2d: np.ndarray, face: np.ndarray) -> np.ndarray:
    """``[..., 18, 2]`` shoulders + image-space faces ``[..., 478, 3]`` -> ``[..., 18, 3]`` at mean face z."""
    depth = np.broadcast_to(face[..., 2].mean(-1)[..., None, None], points_2d.shape[:-1] + (1,))
    return np.concatenate([points_2d, depth], -1)
