"""Temporal Gaussian smoothing of R with the authors' sigmas (moda-official-facts.md §2.5), and
:func:`fill_missing` for tracks with gaps.

``scipy.ndimage.gaussian_filter1d`` along time, ``mode='reflect'``, ``truncate=4``; sigmas in frames at the
authors' 30 fps. Head scale is not smoothed. After FaCo-Net only the 376 non-semantic face points are
smoothed (sigma 5); FaCo's mouth and eye points are left as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from moda_core.landmarks import non_semantic_indices
from moda_core.repr import TalkingRepr


@dataclass(frozen=True)
class SmoothingSigmas:
    """Sigmas in frames; 0 disables a term."""

    mouth: float = 1.5
    eyes: float = 2.0
    head_rotation: float = 4.0
    head_translation: float = 6.0
    torso: float = 4.0
    face_non_semantic: float = 5.0

    def __post_init__(self):
        for name, value in vars(self).items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"smoothing sigma {name} must be a finite number >= 0, got {value}")

    def scaled_to(self, fps: float, reference_fps: float = 30.0) -> "SmoothingSigmas":
        """The same smoothing in seconds at another frame rate."""
        k = fps / reference_fps
        return SmoothingSigmas(**{n: v * k for n, v in vars(self).items()})


def fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Track ``[T, ...]`` with frames ``found [T]`` (bool) -> float64 ``[T, ...]`` without gaps.

    Every value of a frame not found (whatever it holds, NaN included) is replaced by linear interpolation in
    frame index between the nearest found frames; before the first and after the last found frame the nearest
    found value is held. Found frames keep their values. Needs at least one found frame.
    """
    values = np.asarray(values)
    frames = np.arange(len(values))
    found = np.asarray(found, dtype=bool)
    flat = values.reshape(len(values), -1)
    filled = np.stack([np.interp(frames, frames[found], column[found]) for column in flat.T], -1)
    return filled.reshape(values.shape)


def smooth_time(values: torch.Tensor, sigma: float, axis: int = 1) -> torch.Tensor:
    """Gaussian-smooth a tensor along ``axis`` (time); sigma 0 returns it unchanged."""
    if sigma == 0 or values.shape[axis] < 2:
        return values
    array = values.detach().cpu().to(torch.float64).numpy()
    smoothed = gaussian_filter1d(array, sigma, axis=axis, mode="reflect", truncate=4.0)
    return torch.from_numpy(smoothed).to(device=values.device, dtype=values.dtype)


def smooth_motion(r: TalkingRepr, sigmas: SmoothingSigmas = SmoothingSigmas()) -> TalkingRepr:
    """Smooth MODA's outputs (mouth, eyes, head pose rotation/translation, torso) as the authors do."""
    head = r.head_pose
    head = torch.cat([smooth_time(head[..., 0:3], sigmas.head_rotation),
                      smooth_time(head[..., 3:6], sigmas.head_translation), head[..., 6:7]], dim=-1)
    return r.replace(mouth=smooth_time(r.mouth, sigmas.mouth), eyes=smooth_time(r.eyes, sigmas.eyes),
                     head_pose=head, torso=smooth_time(r.torso, sigmas.torso))


def smooth_face(r: TalkingRepr, sigmas: SmoothingSigmas = SmoothingSigmas()) -> TalkingRepr:
    """Smooth the non-semantic points of the composed face (after FaCo-Net)."""
    if r.face is None:
        raise ValueError("smooth_face needs R with a composed face; run FaCo-Net first")
    idx = torch.from_numpy(non_semantic_indices()).to(r.face.device)
    face = r.face.clone()
    face[:, :, idx] = smooth_time(r.face[:, :, idx], sigmas.face_non_semantic)
    return r.replace(face=face)
