"""Reading still images into RGB uint8 ``[H, W, 3]`` from files, PIL images, numpy arrays or tensors."""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from moda_core.preprocess.errors import PreprocessError

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def _from_pil(image: Image.Image) -> np.ndarray:
    """EXIF-rotated RGB; transparent pixels are composited over white; 16-bit grey scaled to 8 bits."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        grey = grey / 257.0 if image.mode.startswith("I;16") or grey.max() > 255 else grey
        image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _from_array(array: np.ndarray, name: str) -> np.ndarray:
    """``[H, W]``, ``[H, W, 1|3|4]`` (optionally with a leading batch of 1), uint8 or float 0..1 -> RGB uint8."""
    while array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise PreprocessError(f"{name}: expected one image [H, W, 3] (or [1, H, W, 3]), got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise PreprocessError(f"{name}: expected uint8 or float 0..1 pixels, got {array.dtype}")
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.shape[2] == 4:
        return _from_pil(Image.fromarray(array, "RGBA"))
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array.copy()     # own, contiguous


def read_image(image: ImageInput, label: str | None = None) -> tuple[np.ndarray, str]:
    """Any supported image input -> (RGB uint8 ``[H, W, 3]``, a name for messages: ``label`` if given, else the
    file path, or "the image" for an in-memory image)."""
    if label is None:
        label = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "the image"
    if isinstance(image, (str, os.PathLike)):
        name = os.fspath(image)
        if not os.path.isfile(name):
            raise PreprocessError(f"image file not found: {name}")
        try:
            with Image.open(name) as opened:
                return _from_pil(opened), label
        except (UnidentifiedImageError, OSError) as err:
            raise PreprocessError(f"cannot read image {name}: {err}. Use a JPEG or PNG file.") from err
    if isinstance(image, Image.Image):
        return _from_pil(image), label
    if isinstance(image, torch.Tensor):
        return _from_array(image.detach().cpu().numpy(), label), label
    if isinstance(image, np.ndarray):
        return _from_array(image, label), label
    raise PreprocessError(f"unsupported image input of type {type(image).__name__}: give a file path, a PIL "
                          "image, or an [H, W, 3] array/tensor")
