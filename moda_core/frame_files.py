"""Frames as lossless PNG files named by zero-padded frame index (000000.png, 000001.png, ...).

Used to keep pipeline stages for inspection or comparison: the condition images the renderer reads and the
frames it renders (``moda animate --save-condition DIR --save-frames DIR``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from moda_core.fileio import atomic_write

Quantize = Literal["round", "truncate"]


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def to_uint8(images: torch.Tensor, quantize: Quantize = "round") -> np.ndarray:
    """Float ``[B, H, W, 3]`` in 0..1 (or uint8) -> uint8 numpy. ``truncate`` is the authors' ``astype(uint8)``."""
    if images.dtype == torch.uint8:
        return images.cpu().numpy()
    if quantize not in ("round", "truncate"):
        raise ValueError(f"quantize must be 'round' or 'truncate', got {quantize!r}")
    scaled = images.detach().to("cpu", torch.float32).clamp(0, 1) * 255.0
    return (scaled.round() if quantize == "round" else scaled).to(torch.uint8).numpy()


class PngSequence:
    """Writes RGB frames into ``folder`` as ``<index>.png``; each file appears whole (written, then renamed)."""

    def __init__(self, folder: str | os.PathLike, quantize: Quantize = "round"):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder} is a file; give a folder for the PNG frames")
        self.quantize = quantize
        self.written = 0

    def write(self, start: int, images: torch.Tensor) -> None:
        """Frames ``start, start + 1, ...`` from ``[B, H, W, 3]`` (float 0..1 or uint8, RGB)."""
        import cv2

        self.folder.mkdir(parents=True, exist_ok=True)          # on first use: a failed run leaves no empty folder
        for offset, image in enumerate(to_uint8(images, self.quantize)):
            path = self.folder / frame_name(start + offset)
            bgr = np.ascontiguousarray(image[..., ::-1])

            def write(tmp: str, bgr: np.ndarray = bgr) -> None:
                if not cv2.imwrite(tmp, bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                    raise OSError(f"could not write {tmp}")

            atomic_write(path, write)
            self.written += 1


class StageSaver:
    """``on_batch`` hook for :func:`moda_core.pipeline.render_stream`: saves condition images and/or frames."""

    def __init__(self, condition_dir: str | os.PathLike | None = None, frames_dir: str | os.PathLike | None = None,
                 quantize: Quantize = "round"):
        if condition_dir is not None and frames_dir is not None and \
                Path(condition_dir).resolve() == Path(frames_dir).resolve():
            raise ValueError(f"condition images and frames would overwrite each other in {frames_dir} (both are "
                             "000000.png, ...); give two folders")
        self.conditions = PngSequence(condition_dir) if condition_dir is not None else None
        self.frames = PngSequence(frames_dir, quantize) if frames_dir is not None else None

    def __call__(self, start: int, conditions: torch.Tensor, frames: torch.Tensor) -> None:
        if self.conditions is not None:
            self.conditions.write(start, conditions)         # drawn as uint8, so rounding gives them back exactly
        if self.frames is not None:
            self.frames.write(start, frames)
