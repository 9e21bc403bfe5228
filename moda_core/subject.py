"""Subject: everything MODA needs to know about one person.

* ``reference_image``: the 512x512 RGB crop the renderer was trained with / conditions on, uint8 ``[H, W, 3]``.
* ``template``: canonical mean face ``[478, 3]`` in canonical px (the style input S of MODA and FaCo-Net).
* ``mean_head_pose``: ``[7]`` mean head pose (see :mod:`moda_core.geometry`).
* ``mean_torso``: ``[18, 3]`` mean shoulder points, canonical px.
  They are float32, or float64 with ``means_float64=True``: the authors add float64 means (their repr.npz), and
  float32 moves drawn points by up to 1e-3 px. Files keep the dtype. ``style_vector`` is float32 either way.
* ``crop_to_source``: ``[2, 3]`` affine matrix taking a crop pixel ``(x, y, 1)`` to source-photo pixels, and
  ``source_size`` ``(width, height)`` of that photo, for pasting renders back.
* ``source_image``: optional uint8 ``[H, W, 3]`` original photo (for paste-back).
* ``reference_points``: optional ``[496, 2]`` float32, where the 478 face and 18 torso points are in the reference
  crop (px of the 512 crop), for subjects whose template is a mean over frames (video); the warp renderer
  warps from them. Without them the template projected with the mean pose is used (exact for photos).

Files: one ``.safetensors`` with JSON metadata (``format = "moda-subject"``, ``version``).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from moda_core.landmarks import eye_indices, mouth_indices
from moda_core.fileio import atomic_write

SUBJECT_FORMAT = "moda-subject"
SUBJECT_VERSION = 1
REFERENCE_SIZE = 512


class SubjectError(ValueError):
    """Raised for an invalid subject or subject file."""


def _as_tensor(value, dtype=None) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return tensor if dtype is None else tensor.to(dtype)


@dataclass(frozen=True)
class Subject:
    reference_image: torch.Tensor
    template: torch.Tensor
    mean_head_pose: torch.Tensor
    mean_torso: torch.Tensor
    crop_to_source: torch.Tensor = dataclasses.field(
        default_factory=lambda: torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64))
    source_size: tuple[int, int] = (REFERENCE_SIZE, REFERENCE_SIZE)
    name: str = ""
    source_image: torch.Tensor | None = None
    means_float64: bool = False              # keep template and means in float64 (the authors' repr.npz)
    reference_points: torch.Tensor | None = None   # [496, 2] face + torso in the reference crop (video subjects)

    def __post_init__(self):
        object.__setattr__(self, "reference_image", _as_tensor(self.reference_image, torch.uint8))
        object.__setattr__(self, "means_float64", bool(self.means_float64))
        for name in ("template", "mean_head_pose", "mean_torso"):
            object.__setattr__(self, name, _as_tensor(getattr(self, name), self.means_dtype))
        object.__setattr__(self, "crop_to_source", _as_tensor(self.crop_to_source, torch.float64))
        object.__setattr__(self, "source_size", (int(self.source_size[0]), int(self.source_size[1])))
        if self.source_image is not None:
            object.__setattr__(self, "source_image", _as_tensor(self.source_image, torch.uint8))
        if self.reference_points is not None:
            object.__setattr__(self, "reference_points", _as_tensor(self.reference_points, torch.float32))
        self.validate()

    def validate(self) -> "Subject":
        checks = {"reference_image": (self.reference_image, (REFERENCE_SIZE, REFERENCE_SIZE, 3)),
                  "template": (self.template, (478, 3)), "mean_head_pose": (self.mean_head_pose, (7,)),
                  "mean_torso": (self.mean_torso, (18, 3)), "crop_to_source": (self.crop_to_source, (2, 3))}
        if self.reference_points is not None:
            checks["reference_points"] = (self.reference_points, (478 + 18, 2))
        for name, (value, shape) in checks.items():
            if tuple(value.shape) != shape:
                raise SubjectError(f"Subject.{name} must have shape {list(shape)}, got {list(value.shape)}")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise SubjectError(f"Subject.{name} contains NaN or infinite values")
        if self.mean_head_pose[6] <= 0:
            raise SubjectError(f"Subject.mean_head_pose scale must be > 0, got {float(self.mean_head_pose[6])}")
        if min(self.source_size) < 1:
            raise SubjectError(f"Subject.source_size must be positive, got {self.source_size}")
        if self.source_image is not None and (self.source_image.ndim != 3 or self.source_image.shape[2] != 3):
            raise SubjectError(f"Subject.source_image must be [H, W, 3], got {list(self.source_image.shape)}")
        return self

    # ---------------------------------------------------------------- derived values
    @property
    def means_dtype(self) -> torch.dtype:
        return torch.float64 if self.means_float64 else torch.float32

    def style_vector(self) -> torch.Tensor:
        """The MODA / FaCo subject input: template flattened to ``[1434]`` float32 (x, y, z per point)."""
        return self.template.reshape(-1).to(torch.float32)

    def track_means(self) -> dict[str, torch.Tensor]:
        """Per-field means that R offsets are relative to."""
        return {"mouth": self.template[torch.from_numpy(mouth_indices())],
                "eyes": self.template[torch.from_numpy(eye_indices())],
                "face": self.template, "head_pose": self.mean_head_pose, "torso": self.mean_torso}

    def reference_float(self) -> torch.Tensor:
        """Reference image as float ``[H, W, 3]`` in 0..1 (ComfyUI IMAGE layout without the batch axis)."""
        return self.reference_image.to(torch.float32) / 255.0

    def replace(self, **changes) -> "Subject":
        """A copy with ``changes``; a new ``reference_image`` without new ``reference_points`` drops the old points
        (they describe the old image)."""
        if "reference_image" in changes and "reference_points" not in changes:
            changes["reference_points"] = None
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.safetensors`` file atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            raise SubjectError(f"subject files are .safetensors, got {path.name}")
        tensors = {"reference_image": self.reference_image, "template": self.template,
                   "mean_head_pose": self.mean_head_pose, "mean_torso": self.mean_torso,
                   "crop_to_source": self.crop_to_source}
        if self.source_image is not None:
            tensors["source_image"] = self.source_image
        if self.reference_points is not None:
            tensors["reference_points"] = self.reference_points
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        metadata = {"format": SUBJECT_FORMAT, "version": str(SUBJECT_VERSION), "name": self.name,
                    "source_size": json.dumps(list(self.source_size))}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Subject":
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            path = path / "subject.safetensors"
        if not path.is_file():
            raise SubjectError(f"subject file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        except Exception as err:
            raise SubjectError(f"cannot read subject file {path}: {err}") from err
        if metadata.get("format") != SUBJECT_FORMAT:
            raise SubjectError(f"{path} is not a MODA subject file (format={metadata.get('format')!r})")
        if metadata.get("version") != str(SUBJECT_VERSION):
            raise SubjectError(f"{path} has subject format version {metadata.get('version')!r}; this moda reads "
                               f"version {SUBJECT_VERSION}")
        try:
            return cls(**tensors, name=metadata.get("name", ""),
                       source_size=tuple(json.loads(metadata["source_size"])),
                       means_float64=tensors["template"].dtype == torch.float64)
        except (TypeError, KeyError) as err:
            raise SubjectError(f"{path}: damaged subject file ({err})") from err

    def __repr__(self) -> str:
        return (f"Subject(name={self.name!r}, source_size={self.source_size}, "
                f"scale={float(self.mean_head_pose[6]):.3f})")
