"""A recorded VAE draw of MODA, replayed instead of seeded sampling (reproducibility, checks against other code).

MODA draws its only random numbers once per 20 s audio window: the VAE noise ``[1, frames_in_window, latent]``
(moda-official-facts.md §2.4). A noise file is a ``.safetensors`` holding ``noise.0``, ``noise.1``, ... one
float tensor per window in window order, each ``[samples, frames_in_window, latent]``; sample ``i`` of every
window drives motion sample ``i``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from moda_core.fileio import atomic_write

KEY_PREFIX = "noise."


class NoiseFileError(ValueError):
    """A noise file is unreadable or does not match the audio / model it is used with."""


@dataclass(frozen=True)
class RecordedNoise:
    """Per-window VAE noise ``[samples, frames, latent]``; ``source`` names the file in error messages."""

    windows: tuple[torch.Tensor, ...]
    source: str = "recorded noise"

    def __post_init__(self):
        windows = tuple(torch.as_tensor(w).detach().to("cpu", torch.float32) for w in self.windows)
        object.__setattr__(self, "windows", windows)
        if not windows:
            raise NoiseFileError(f"{self.source}: holds no noise windows (expected noise.0, noise.1, ...)")
        for index, window in enumerate(windows):
            if window.ndim != 3 or 0 in window.shape:
                raise NoiseFileError(f"{self.source}: noise.{index} must be [samples, frames, latent], got shape "
                                     f"{list(window.shape)}")
            if window.shape[0] != windows[0].shape[0] or window.shape[2] != windows[0].shape[2]:
                raise NoiseFileError(f"{self.source}: noise.{index} has shape {list(window.shape)} but noise.0 has "
                                     f"{list(windows[0].shape)}; samples and latent size must agree")
            if not torch.isfinite(window).all():
                raise NoiseFileError(f"{self.source}: noise.{index} contains NaN or infinite values")

    @property
    def num_samples(self) -> int:
        return self.windows[0].shape[0]

    @property
    def num_windows(self) -> int:
        return len(self.windows)

    @property
    def latent_size(self) -> int:
        return self.windows[0].shape[2]

    def window_frames(self) -> list[int]:
        return [w.shape[1] for w in self.windows]

    @classmethod
    def from_seed(cls, seed: int, window_frames: Sequence[int], num_samples: int, latent_size: int,
                  source: str = "seeded noise") -> "RecordedNoise":
        """The draw seeded sampling makes: sample ``i`` from a CPU generator seeded ``seed + i``, one
        ``[1, frames, latent]`` normal draw per window in order (as ``MODANet`` draws it)."""
        samples = []
        for index in range(num_samples):
            generator = torch.Generator().manual_seed(seed + index)
            samples.append([torch.randn((1, frames, latent_size), generator=generator) for frames in window_frames])
        return cls(tuple(torch.cat([s[w] for s in samples]) for w in range(len(window_frames))), source=source)

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, path: str | os.PathLike) -> "RecordedNoise":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise NoiseFileError(f"noise file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as err:      # safetensors raises several types for damaged files
            raise NoiseFileError(f"cannot read noise file {path}: {err}") from err
        count = len(tensors)
        expected = [f"{KEY_PREFIX}{i}" for i in range(count)]
        if sorted(tensors) != sorted(expected):
            raise NoiseFileError(f"{path}: keys must be noise.0 .. noise.{count - 1} (one per 20 s window), got "
                                 f"{sorted(tensors)}")
        for key, value in tensors.items():
            if not value.is_floating_point():
                raise NoiseFileError(f"{path}: {key} must be a float tensor, got {value.dtype}")
        return cls(tuple(tensors[key] for key in expected), source=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {f"{KEY_PREFIX}{i}": w.clone().contiguous() for i, w in enumerate(self.windows)}
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "moda-noise"}))

    # ---------------------------------------------------------------- replay
    def check(self, num_samples: int, latent_size: int, window_frames: Sequence[int] | None = None) -> None:
        """Fail before any work when the file cannot serve ``num_samples`` samples of a model with this latent
        size, or (given the audio's frames per window) does not match the audio's windows."""
        if self.num_samples != num_samples:
            raise NoiseFileError(f"{self.source}: holds {self.num_samples} sample(s) per window but {num_samples} "
                                 f"motion sample(s) were requested; ask for {self.num_samples}")
        if self.latent_size != latent_size:
            raise NoiseFileError(f"{self.source}: latent size {self.latent_size}, but this MODA model draws "
                                 f"{latent_size} values per frame; the file was recorded with another model")
        if window_frames is not None and list(window_frames) != self.window_frames():
            raise NoiseFileError(f"{self.source}: holds {self.num_windows} window(s) of {self.window_frames()} "
                                 f"frames, but this audio has {len(window_frames)} window(s) of "
                                 f"{list(window_frames)} frames; the file was recorded for other audio (or another "
                                 f"frame_count rule)")

    def window_noise(self, sample: int):
        """``noise_fn(window_index, frames) -> [1, frames, latent]`` for ``generate_motion``, checking each window
        it is asked for (frames, and that the file has it)."""
        def noise_fn(window: int, frames: int) -> torch.Tensor:
            if window >= self.num_windows:
                raise NoiseFileError(f"{self.source}: holds {self.num_windows} window(s) of noise but this audio "
                                     f"needs more (window {window} of 20 s windows every 10 s); record noise for "
                                     f"this audio")
            stored = self.windows[window]
            if stored.shape[1] != frames:
                raise NoiseFileError(f"{self.source}: noise.{window} has {stored.shape[1]} frames but window "
                                     f"{window} of this audio has {frames}; the file was recorded for other audio "
                                     f"(frames per window: {self.window_frames()})")
            return stored[sample:sample + 1]

        return noise_fn


def as_recorded_noise(noise: "RecordedNoise | Sequence[torch.Tensor] | str | os.PathLike") -> RecordedNoise:
    """A :class:`RecordedNoise`, a list of per-window tensors, or a noise file path -> :class:`RecordedNoise`."""
    if isinstance(noise, RecordedNoise):
        return noise
    if isinstance(noise, (str, os.PathLike)):
        return RecordedNoise.load(noise)
    return RecordedNoise(tuple(noise))
