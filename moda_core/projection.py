"""Pose transform and projection: R (canonical motion) -> image-space points -> condition images.

For one sample of R and the subject it animates (moda-official-facts.md §2.6-§2.9):

1. offsets become absolute values with the subject's means (:meth:`TalkingRepr.to_absolute`);
2. the canonical face is R's composed face track when there is one (FaCo-Net output, every point), else the
   subject template with its 40 mouth and 60 eye points replaced by R's (a preview before FaCo-Net);
3. face and torso go to image space with the frame's head pose (:func:`moda_core.geometry.canonical_to_image`,
   the torso as a billboard in the head frame), de-normalised around ``face_center``;
4. projection is orthographic: x, y are pixels of the 512x512 crop (z is kept for callers that want it);
5. :func:`moda_core.drawing.draw_condition_images` draws what the renderer reads.

``face_center``: the authors de-normalise with (256, 235, 128) although they canonicalised with
(256, 232, 128); ``"authors"`` reproduces the released pipeline, ``"canonical"`` the consistent value.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from moda_core.drawing import draw_condition_images
from moda_core.geometry import AUTHORS_INFERENCE_FACE_CENTER, CANONICALISATION_FACE_CENTER, canonical_to_image
from moda_core.landmarks import eye_indices, mouth_indices
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

FACE_CENTERS: dict[str, tuple[float, float, float]] = {
    "authors": AUTHORS_INFERENCE_FACE_CENTER,        # (256, 235, 128): what the released inference uses
    "canonical": CANONICALISATION_FACE_CENTER,       # (256, 232, 128): what the canonical space was built with
}
FaceCenter = Literal["authors", "canonical"] | Sequence[float]


def resolve_face_center(face_center: FaceCenter) -> tuple[float, float, float]:
    """``"authors"``, ``"canonical"`` or an explicit ``(x, y, z)`` -> ``(x, y, z)``."""
    if isinstance(face_center, str):
        if face_center not in FACE_CENTERS:
            raise ValueError(f"face_center must be one of {sorted(FACE_CENTERS)} or (x, y, z), got {face_center!r}")
        return FACE_CENTERS[face_center]
    center = tuple(float(v) for v in face_center)
    if len(center) != 3:
        raise ValueError(f"face_center must have 3 values (x, y, z), got {center}")
    return center


def canonical_face(r: TalkingRepr, subject: Subject) -> torch.Tensor:
    """Absolute canonical face ``[S, T, 478, 3]``: R's face track, or the template with R's mouth and eyes."""
    absolute = r.to_absolute(subject)
    if absolute.face is not None:
        return absolute.face
    s, t = absolute.num_samples, absolute.num_frames
    face = subject.template.to(device=absolute.device, dtype=absolute.dtype).expand(s, t, -1, -1).clone()
    face[:, :, torch.from_numpy(mouth_indices()).to(face.device)] = absolute.mouth
    face[:, :, torch.from_numpy(eye_indices()).to(face.device)] = absolute.eyes
    return face


def project_repr(r: TalkingRepr, subject: Subject, sample: int = 0,
                 face_center: FaceCenter = "authors") -> tuple[torch.Tensor, torch.Tensor]:
    """One sample of R in image space: ``(face_xyz [T, 478, 3], torso_xyz [T, 18, 3])``, float64, R's device.

    x, y are pixels of the 512x512 crop; z grows toward the camera. Inputs are not modified.
    """
    center = resolve_face_center(face_center)
    one = r.select_samples(sample).to(dtype=torch.float64)
    absolute = one.to_absolute(subject)
    face = canonical_face(absolute, subject)[0]
    head_pose = absolute.head_pose[0]                                               # [T, 7]
    face_xyz = canonical_to_image(face, head_pose, face_center=center)
    torso_xyz = canonical_to_image(absolute.torso[0], head_pose, face_center=center)
    return face_xyz, torso_xyz


def render_condition_images(face_xy: torch.Tensor, torso_xy: torch.Tensor | None, *,
                            style: Literal["authors", "antialiased"] = "authors", batch_size: int = 16,
                            on_batch: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Draw ``[T, 512, 512, 3]`` float images in 0..1, ``batch_size`` frames at a time.

    ``on_batch(done, total)`` is called after each batch (progress and cancellation hooks for hosts).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = face_xy.shape[0]
    chunks = []
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        chunks.append(draw_condition_images(face_xy[start:stop], None if torso_xy is None else torso_xy[start:stop],
                                            style=style))
        if on_batch is not None:
            on_batch(stop, total)
    return torch.cat(chunks)
