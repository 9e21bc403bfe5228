"""The fixed 512x512 head-and-shoulders crop, framed like the authors' training data.

The crop is axis-aligned (scale + translation, no rotation; head roll stays in the pose). It puts the
canonicalisation anchor (mean of landmarks 50, 280, 168) at :data:`TARGET_ANCHOR` and makes the pose scale
``s = 120 / inter-ocular px`` equal :data:`TARGET_SCALE`, the mean pose of the authors' released subject
(Cathy ``headmotion = [.., 276.4, 245.7, 2.8, 1.168]``): eyes about 103 px apart, near y = 225, chin near
y = 400, shoulders in the bottom ~100 rows. Parts of the crop outside the source are filled by edge
replication.

Coordinates are continuous pixels with the origin at the top-left corner of pixel (0, 0) (MediaPipe's
``x*W``), so ``source = crop * side/512 + (x0, y0)``. For ``cv2.warpAffine`` (pixel-centre coordinates) add
``(side/512 - 1) / 2`` to both translations.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from moda_core.subject import REFERENCE_SIZE

TARGET_SCALE = 1.168
TARGET_ANCHOR = (256.0, 246.0)


@dataclass(frozen=True)
class CropBox:
    """Square ``[x0, x0 + side) x [y0, y0 + side)`` of the source, resized to 512x512."""

    x0: int
    y0: int
    side: int

    @property
    def zoom(self) -> float:
        """Crop pixels per source pixel."""
        return REFERENCE_SIZE / self.side

    @property
    def crop_to_source(self) -> np.ndarray:
        """``[2, 3]`` affine: crop ``(x, y, 1)`` -> source pixels."""
        inverse = 1.0 / self.zoom
        return np.array([[inverse, 0.0, self.x0], [0.0, inverse, self.y0]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Source points ``[..., 2 or 3]`` -> crop points (z, if present, scales like x and y)."""
        out = np.array(points, dtype=np.float64)
        out[..., :2] -= (self.x0, self.y0)
        return out * self.zoom

    def cut(self, rgb: np.ndarray) -> np.ndarray:
        """Source image uint8 ``[H, W, 3]`` -> crop uint8 ``[512, 512, 3]`` (edge-replicated outside)."""
        height, width = rgb.shape[:2]
        x1, y1 = self.x0 + self.side, self.y0 + self.side
        inside = rgb[max(self.y0, 0):min(y1, height), max(self.x0, 0):min(x1, width)]     # holds the face
        padded = cv2.copyMakeBorder(inside, max(-self.y0, 0), max(y1 - height, 0), max(-self.x0, 0),
                                    max(x1 - width, 0), cv2.BORDER_REPLICATE)
        shrink = self.side > REFERENCE_SIZE
        return cv2.resize(padded, (REFERENCE_SIZE, REFERENCE_SIZE),
                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def crop_box_for(anchor_xy: np.ndarray, scale: float) -> CropBox:
    """The box that maps a face with source anchor ``(x, y)`` and pose scale ``scale`` onto the targets."""
    zoom = scale / TARGET_SCALE                                  # inter-ocular px in crop / in source
    side = max(1, int(round(REFERENCE_SIZE / zoom)))
    zoom = REFERENCE_SIZE / side
    return CropBox(x0=int(round(anchor_xy[0] - TARGET_ANCHOR[0] / zoom)),
                   y0=int(round(anchor_xy[1] - TARGET_ANCHOR[1] / zoom)), side=side)
