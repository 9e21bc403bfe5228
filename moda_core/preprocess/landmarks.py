"""MediaPipe Tasks FaceLandmarker: 478 face points per face, in pixels of the analysed frame.

Points are ``(x*W, y*H, z*W)`` like the authors (MediaPipe's z: smaller = closer to the camera); use
:func:`moda_core.preprocess.pose.to_image_space` for our z-toward-camera convention. Coordinates are
continuous with the origin at the top-left corner of the top-left pixel.
"""
from __future__ import annotations

import os

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from moda_core.preprocess.model_files import FACE_LANDMARKER, model_path


class FaceLandmarks:
    """Context manager around one FaceLandmarker in IMAGE (``video=False``) or VIDEO mode."""

    def __init__(self, models_dir: str | os.PathLike | None = None, video: bool = False, max_faces: int = 1):
        self.model_path = model_path(FACE_LANDMARKER, models_dir)
        self.video = video
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)), num_faces=max_faces,
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def __enter__(self) -> "FaceLandmarks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._landmarker.close()

    def detect(self, rgb: np.ndarray, timestamp_ms: int | None = None) -> list[np.ndarray]:
        """Faces in an RGB uint8 ``[H, W, 3]`` frame -> list of float64 ``[478, 3]`` (MediaPipe order).

        VIDEO mode needs strictly increasing ``timestamp_ms``.
        """
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb, dtype=np.uint8))
        if self.video:
            result = self._landmarker.detect_for_video(image, int(timestamp_ms))
        else:
            result = self._landmarker.detect(image)
        height, width = rgb.shape[:2]
        scale = np.array([width, height, width], dtype=np.float64)
        return [np.array([(p.x, p.y, p.z) for p in face], dtype=np.float64) * scale for face in result.face_landmarks]
