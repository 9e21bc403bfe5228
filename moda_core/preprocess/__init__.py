"""Preprocessing with MediaPipe Tasks: photos -> Subject, talking videos -> sample folders, audio loading.

Modules: :mod:`.audio` (any audio -> 16 kHz mono), :mod:`.video` (frames at a target fps),
:mod:`.images` (any image input -> RGB uint8), :mod:`.landmarks` / :mod:`.segmentation` (MediaPipe
wrappers), :mod:`.face_geometry` + :mod:`.pose` (head pose, canonical faces), :mod:`.torso` (shoulders),
:mod:`.crop` (the 512 reference crop), :mod:`.photo` (:func:`subject_from_photo`), :mod:`.sample`
(:func:`prepare_video_sample`), :mod:`.model_files` (where the model files are found).

Names are imported lazily, so ``from moda_core.preprocess import load_audio`` does not import mediapipe.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "PreprocessError": "errors",
    "AUDIO_RATE": "audio", "load_audio": "audio", "resample_audio": "audio",
    "VideoInfo": "video", "probe_video": "video", "read_frames": "video",
    "read_image": "images",
    "FACE_LANDMARKER": "model_files", "SELFIE_SEGMENTER": "model_files", "MODEL_URLS": "model_files",
    "model_path": "model_files", "models_folder": "model_files",
    "FaceLandmarks": "landmarks", "PersonSegmenter": "segmentation",
    "FrontalReference": "face_geometry", "load_frontal_reference": "face_geometry",
    "to_image_space": "pose", "frontal_rotation": "pose", "head_pose": "pose", "canonicalise": "pose",
    "reprojection_error": "pose", "eye_distance": "pose", "MIN_EYE_DISTANCE": "pose",
    "shoulder_points": "torso",
    "CropBox": "crop", "crop_box_for": "crop",
    "PhotoDiagnostics": "photo", "subject_from_photo": "photo",
    "SampleSummary": "sample", "prepare_video_sample": "sample",
    "FramesSummary": "frames", "subject_from_frames": "frames",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
