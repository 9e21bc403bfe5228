"""MediaPipe Tasks ImageSegmenter with the selfie model: person probability per pixel."""
from __future__ import annotations

import os

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from moda_core.preprocess.model_files import SELFIE_SEGMENTER, model_path


class PersonSegmenter:
    """Context manager; :meth:`person_probability` gives a float32 ``[H, W]`` map in 0..1."""

    def __init__(self, models_dir: str | os.PathLike | None = None):
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(model_path(SELFIE_SEGMENTER, models_dir))),
            output_confidence_masks=True, output_category_mask=False)
        self._segmenter = vision.ImageSegmenter.create_from_options(options)

    def __enter__(self) -> "PersonSegmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._segmenter.close()

    def person_probability(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 ``[H, W, 3]`` -> float32 ``[H, W]`` probability that the pixel shows the person."""
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb, dtype=np.uint8))
        mask = self._segmenter.segment(image).confidence_masks[0].numpy_view()
        return np.array(mask, dtype=np.float32).reshape(rgb.shape[:2])       # copy: the view dies with the result
