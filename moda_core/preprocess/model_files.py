"""Where the MediaPipe model files are found.

Search order: the ``models_dir`` argument, then the ``MODA_MODELS_DIR`` environment variable, then
``~/.cache/moda/models``. Nothing is ever downloaded here; a missing file raises :class:`PreprocessError`
naming the file, the folder searched and the official download address.
"""
from __future__ import annotations

import os
from pathlib import Path

from moda_core.preprocess.errors import PreprocessError

FACE_LANDMARKER = "face_landmarker.task"
SELFIE_SEGMENTER = "selfie_segmenter.tflite"
MODEL_URLS = {
    FACE_LANDMARKER: "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
                     "float16/latest/face_landmarker.task",
    SELFIE_SEGMENTER: "https://storage.googleapis.com/mediapipe-models/image_segmenter/selfie_segmenter/"
                      "float16/latest/selfie_segmenter.tflite",
}
MODELS_DIR_ENV = "MODA_MODELS_DIR"
DEFAULT_MODELS_DIR = Path("~/.cache/moda/models")


def models_folder(models_dir: str | os.PathLike | None = None) -> Path:
    """The folder that is searched: argument, else ``$MODA_MODELS_DIR``, else ``~/.cache/moda/models``."""
    chosen = models_dir if models_dir is not None else os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR
    return Path(chosen).expanduser()


def model_path(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """Path of model file ``name`` (one of :data:`MODEL_URLS`), or :class:`PreprocessError` if it is missing."""
    folder = models_folder(models_dir)
    path = folder / name
    if not path.is_file():
        source = ("the models_dir argument" if models_dir is not None else
                  f"${MODELS_DIR_ENV}" if os.environ.get(MODELS_DIR_ENV) else "the default folder")
        raise PreprocessError(
            f"MediaPipe model file {name!r} not found in {folder} ({source}). Download it from "
            f"{MODEL_URLS[name]} into that folder, or point --models / {MODELS_DIR_ENV} at the folder holding it.")
    return path
