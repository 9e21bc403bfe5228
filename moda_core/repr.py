"""R, the talking representation: the one type every MODA stage reads or writes.

A :class:`TalkingRepr` holds, for ``S`` samples (e.g. several seeds of the same audio) of ``T`` frames:

========== ================ ============================================================================
field      shape            meaning
========== ================ ============================================================================
mouth      ``[S, T, 40, 3]`` lip points (:func:`moda_core.landmarks.mouth_indices` order), canonical px
eyes       ``[S, T, 60, 3]`` eye, iris and brow points (:func:`moda_core.landmarks.eye_indices` order)
face       ``[S, T, 478, 3]`` dense face mesh from FaCo-Net, canonical px; ``None`` until composed
head_pose  ``[S, T, 7]``      ``[yaw, pitch, roll]`` degrees, ``[tx, ty, tz]`` image px (z toward the
                             camera), canonicalisation ``scale`` (see :mod:`moda_core.geometry`)
torso      ``[S, T, 18, 3]`` shoulder points, 9 per side (image-left shoulder first), canonical px
========== ================ ============================================================================

Canonical space: 512 px frame, inter-ocular distance 120 px, face anchor near (256, 232, 128), z toward the
camera. ``is_offset`` tells whether the values are offsets from the subject's means (what MODA predicts:
mouth/eyes/face from the subject template, head pose from its mean pose, torso from its mean torso) or
absolute values. ``fps`` is frames per second; ``subject`` names the subject the values belong to.

Arrays given without the sample axis (``[T, ...]``) are promoted to ``S = 1``. Instances are immutable by
convention: every method returns a new object and never writes into the tensors it was given.

Files: ``.safetensors`` (tensors + JSON metadata) and ``.npz`` (same keys, for editing in numpy); both carry
``format = "moda-repr"`` and a ``version``; loading validates and rejects unknown versions.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from moda_core.fileio import atomic_write

if TYPE_CHECKING:
    from moda_core.subject import Subject

REPR_FORMAT = "moda-repr"
REPR_VERSION = 1
TRACK_SHAPES: dict[str, tuple[int, ...]] = {
    "mouth": (40, 3), "eyes": (60, 3), "face": (478, 3), "head_pose": (7,), "torso": (18, 3),
}
REQUIRED_TRACKS = ("mouth", "eyes", "head_pose", "torso")


class ReprError(ValueError):
    """Raised for an invalid talking representation or file."""


@dataclass(frozen=True)
class TalkingRepr:
    """Motion of a talking portrait over time (see the module docstring for shapes and units)."""

    mouth: torch.Tensor
    eyes: torch.Tensor
    head_pose: torch.Tensor
    torso: torch.Tensor
    fps: float
    face: torch.Tensor | None = None
    is_offset: bool = False
    subject: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for name in TRACK_SHAPES:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(np.asarray(value))
            if value.ndim == len(TRACK_SHAPES[name]) + 1:
                value = value.unsqueeze(0)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "meta", {str(k): str(v) for k, v in dict(self.meta).items()})
        self.validate()

    # ---------------------------------------------------------------- checks
    def validate(self) -> "TalkingRepr":
        """Raise :class:`ReprError` naming the field if shapes, lengths, values or fps are invalid."""
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise ReprError(f"fps must be a positive number, got {self.fps}")
        lengths = {}
        for name, tail in TRACK_SHAPES.items():
            value = getattr(self, name)
            if value is None:
                if name in REQUIRED_TRACKS:
                    raise ReprError(f"R.{name} is required")
                continue
            if value.ndim != len(tail) + 2 or tuple(value.shape[2:]) != tail:
                raise ReprError(f"R.{name} must have shape [S, T, {', '.join(map(str, tail))}] "
                                f"(or [T, ...]), got {tuple(value.shape)}")
            if not value.is_floating_point():
                raise ReprError(f"R.{name} must be a floating-point tensor, got {value.dtype}")
            if not torch.isfinite(value).all():
                raise ReprError(f"R.{name} contains NaN or infinite values")
            lengths[name] = tuple(value.shape[:2])
        if len(set(lengths.values())) != 1:
            detail = ", ".join(f"{k}: S={s} T={t}" for k, (s, t) in lengths.items())
            raise ReprError(f"R fields disagree on samples/frames ({detail})")
        if self.num_frames < 1:
            raise ReprError("R has no frames")
        return self

    # ---------------------------------------------------------------- properties
    @property
    def num_samples(self) -> int:
        return self.mouth.shape[0]

    @property
    def num_frames(self) -> int:
        return self.mouth.shape[1]

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.num_frames / self.fps

    @property
    def device(self) -> torch.device:
        return self.mouth.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mouth.dtype

    def tracks(self) -> dict[str, torch.Tensor]:
        """The tensors present, by field name."""
        return {n: getattr(self, n) for n in TRACK_SHAPES if getattr(self, n) is not None}

    def replace(self, **changes) -> "TalkingRepr":
        """A copy with some fields replaced (validated)."""
        return dataclasses.replace(self, **changes)

    def _map_tracks(self, fn) -> "TalkingRepr":
        return self.replace(**{n: fn(n, v) for n, v in self.tracks().items()})

    # ---------------------------------------------------------------- time and samples
    def slice_time(self, start: int = 0, stop: int | None = None) -> "TalkingRepr":
        """Frames ``[start, stop)`` (Python slice semantics, no step)."""
        frames = range(self.num_frames)[start:stop]
        if len(frames) == 0:
            raise ReprError(f"slice [{start}:{stop}] of {self.num_frames} frames is empty")
        return self._map_tracks(lambda _, v: v[:, frames.start:frames.stop])

    def select_samples(self, indices: int | Sequence[int]) -> "TalkingRepr":
        """Keep some samples, e.g. ``r.select_samples(0)`` for the first seed."""
        idx = [indices] if isinstance(indices, int) else list(indices)
        for i in idx:
            if not -self.num_samples <= i < self.num_samples:
                raise ReprError(f"sample index {i} out of range for {self.num_samples} samples")
        return self._map_tracks(lambda _, v: v[idx])

    @classmethod
    def concat_time(cls, reprs: Iterable["TalkingRepr"]) -> "TalkingRepr":
        """Join representations one after the other in time."""
        return cls._join(reprs, dim=1, name="concat_time")

    @classmethod
    def stack_samples(cls, reprs: Iterable["TalkingRepr"]) -> "TalkingRepr":
        """Join representations of the same length as extra samples."""
        return cls._join(reprs, dim=0, name="stack_samples")

    @classmethod
    def _join(cls, reprs: Iterable["TalkingRepr"], dim: int, name: str) -> "TalkingRepr":
        """Concatenate every track along ``dim`` (0 samples, 1 time); everything else must agree."""
        reprs = list(reprs)
        if not reprs:
            raise ReprError(f"{name} needs at least one R")
        first = reprs[0]
        kept = "num_samples" if dim == 1 else "num_frames"
        for r in reprs[1:]:
            differ = [f"{key} {getattr(first, key)} vs {getattr(r, key)}" for key in ("fps", "is_offset", kept)
                      if getattr(first, key) != getattr(r, key)]
            if (first.face is None) != (r.face is None):
                differ.append("face present in only one")
            if differ:
                raise ReprError(f"{name} needs equal fps, is_offset, {kept} and face presence; got "
                                + ", ".join(differ))
        return first.replace(**{n: torch.cat([getattr(r, n) for r in reprs], dim=dim) for n in first.tracks()})

    def resample(self, fps: float) -> "TalkingRepr":
        """Linear resampling in time (``align_corners=True``) to ``round(duration * fps)`` frames."""
        if not np.isfinite(fps) or fps <= 0:
            raise ReprError(f"target fps must be a positive number, got {fps}")
        frames = max(1, int(round(self.num_frames * fps / self.fps)))

        def resample_track(_, value: torch.Tensor) -> torch.Tensor:
            s, t = value.shape[:2]
            flat = value.reshape(s, t, -1).transpose(1, 2)                      # [S, D, T]
            if t == 1:
                out = flat.expand(-1, -1, frames)
            else:
                out = F.interpolate(flat, size=frames, mode="linear", align_corners=True)
            return out.transpose(1, 2).reshape(s, frames, *value.shape[2:])

        return self._map_tracks(resample_track).replace(fps=fps)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TalkingRepr":
        """Move tensors to a device and/or floating dtype."""
        return self._map_tracks(lambda _, v: v.to(device=device, dtype=dtype))

    # ---------------------------------------------------------------- offsets vs absolute
    def to_absolute(self, subject: "Subject") -> "TalkingRepr":
        """Add the subject's means to offsets (no-op when already absolute)."""
        return self if not self.is_offset else self._shift(subject, +1.0).replace(is_offset=False)

    def to_offsets(self, subject: "Subject") -> "TalkingRepr":
        """Subtract the subject's means (no-op when already offsets)."""
        return self if self.is_offset else self._shift(subject, -1.0).replace(is_offset=True)

    def _shift(self, subject: "Subject", sign: float) -> "TalkingRepr":
        means = subject.track_means()

        def shift(name: str, value: torch.Tensor) -> torch.Tensor:
            return value + sign * means[name].to(device=value.device, dtype=value.dtype)

        return self._map_tracks(shift).replace(subject=subject.name or self.subject)

    # ---------------------------------------------------------------- files
    def _metadata(self) -> dict[str, str]:
        return {"format": REPR_FORMAT, "version": str(REPR_VERSION), "fps": repr(self.fps),
                "is_offset": json.dumps(self.is_offset), "subject": self.subject, "meta": json.dumps(self.meta)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` or ``.npz`` (chosen by suffix), atomically."""
        path = Path(path)
        tensors = {n: v.detach().cpu().contiguous() for n, v in self.tracks().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=self._metadata()))
        elif path.suffix == ".npz":
            arrays = {n: v.numpy() for n, v in tensors.items()}
            arrays["__metadata__"] = np.asarray(json.dumps(self._metadata()))

            def write_npz(tmp: str) -> None:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **arrays)

            atomic_write(path, write_npz)
        else:
            raise ReprError(f"unknown R file type {path.suffix!r} for {path}: use .safetensors or .npz")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "TalkingRepr":
        """Read a file written by :meth:`save` (or edited by hand in numpy), validating it."""
        path = Path(path)
        if not path.is_file():
            raise ReprError(f"R file not found: {path}")
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open
                with safe_open(str(path), framework="pt") as handle:
                    metadata = handle.metadata() or {}
                    tensors = {k: handle.get_tensor(k) for k in handle.keys()}
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    if "__metadata__" not in archive.files:
                        raise ReprError(f"{path} has no __metadata__ entry; it was not written by moda")
                    metadata = json.loads(str(archive["__metadata__"]))
                    tensors = {k: torch.from_numpy(archive[k].copy()) for k in archive.files if k != "__metadata__"}
            else:
                raise ReprError(f"unknown R file type {path.suffix!r} for {path}: use .safetensors or .npz")
        except ReprError:
            raise
        except Exception as err:  # corrupt or truncated files surface as many exception types
            raise ReprError(f"cannot read R file {path}: {err}") from err
        if metadata.get("format") != REPR_FORMAT:
            raise ReprError(f"{path} is not a MODA R file (format={metadata.get('format')!r})")
        if metadata.get("version") != str(REPR_VERSION):
            raise ReprError(f"{path} has R format version {metadata.get('version')!r}; this moda reads version "
                            f"{REPR_VERSION}. Upgrade comfyui-moda to read it.")
        unknown = set(tensors) - set(TRACK_SHAPES)
        if unknown:
            raise ReprError(f"{path} has unknown R fields {sorted(unknown)}")
        try:
            return cls(**{k: v.to(device) for k, v in tensors.items()}, fps=float(metadata["fps"]),
                       is_offset=json.loads(metadata["is_offset"]), subject=metadata.get("subject", ""),
                       meta=json.loads(metadata.get("meta", "{}")))
        except ReprError as err:
            raise ReprError(f"{path}: {err}") from err
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ReprError(f"{path}: damaged metadata ({err})") from err

    def __repr__(self) -> str:
        face = "face" if self.face is not None else "no face"
        kind = "offsets" if self.is_offset else "absolute"
        return (f"TalkingRepr(samples={self.num_samples}, frames={self.num_frames}, fps={self.fps:g}, {kind}, "
                f"{face}, subject={self.subject!r}, dtype={self.dtype}, device={self.device})")
