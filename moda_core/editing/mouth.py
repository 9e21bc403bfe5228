"""Mouth and torso edits: mouth openness measure, amplitude gain that keeps closed lips closed, torso gain.

Mouth openness = lower inner-lip centre y - upper inner-lip centre y (MediaPipe 14 and 13), canonical px (y
down, eyes 120 px apart): ~0 with closed lips, slightly negative when they press together. Mouth edits also
move the same points of ``R.face`` when it is present (better: edit before FaCo-Net composes the face).
"""
from __future__ import annotations

import torch

from moda_core.editing.eyes import absolute_points, add_point_delta
from moda_core.editing.keyframes import check_number
from moda_core.landmarks import mouth_indices
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
CLOSED_QUANTILE = 0.05            # frames this closed (or more) make the closed reference pose


def _inner_lip_gap(mouth: torch.Tensor) -> torch.Tensor:
    positions = mouth_indices().tolist()
    return mouth[..., positions.index(LOWER_INNER_LIP), 1] - mouth[..., positions.index(UPPER_INNER_LIP), 1]


def mouth_openness(r: TalkingRepr, subject: Subject | None = None) -> torch.Tensor:
    """Inner-lip opening per frame ``[S, T]`` in canonical px (needs ``subject`` on offset R)."""
    return _inner_lip_gap(absolute_points(r, "mouth", subject, "mouth openness"))


def _mean_pose_where(mouth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean mouth pose ``[S, 40, 3]`` over the frames in ``mask`` ``[S, T]``."""
    weights = mask.to(mouth)[..., None, None]
    return (mouth * weights).sum(dim=1) / weights.sum(dim=1)


def _reference_poses(mouth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the mean of the most closed and of the most open 5 % of frames, ``[S, 40, 3]`` each.

    Works on offsets too: offsets and absolute openness differ by a constant, so the same frames are chosen.
    """
    gap = _inner_lip_gap(mouth)
    low = torch.quantile(gap.double(), CLOSED_QUANTILE, dim=1, keepdim=True).to(gap)
    high = torch.quantile(gap.double(), 1 - CLOSED_QUANTILE, dim=1, keepdim=True).to(gap)
    return _mean_pose_where(mouth, gap <= low), _mean_pose_where(mouth, gap >= high)


def scale_mouth(r: TalkingRepr, gain: float) -> TalkingRepr:
    """Exaggerate (``gain`` > 1) or calm (< 1) lip motion: every frame's deviation from the sample's closed
    pose (mean of its most closed 5 % of frames) is multiplied by ``gain``, so closed lips stay closed."""
    gain = check_number("gain", gain, 0.0)
    if gain == 1.0:
        return r
    closed, _ = _reference_poses(r.mouth)
    return add_point_delta(r, "mouth", (gain - 1.0) * (r.mouth - closed[:, None]))


def set_mouth_openness(r: TalkingRepr, openness: torch.Tensor, subject: Subject | None = None) -> TalkingRepr:
    """Open or close the lips to the given openness ``[S, T]`` (or ``[T]``) in canonical px, by moving each
    frame along the sample's own closed -> open direction (mean of its most open minus most closed frames)."""
    current = mouth_openness(r, subject)
    target = torch.as_tensor(openness).to(current).expand_as(current)
    if not torch.isfinite(target).all():
        raise ValueError("mouth openness targets contain NaN or infinite values")
    closed, opened = _reference_poses(r.mouth)
    direction = opened - closed
    span = _inner_lip_gap(direction)                                          # [S] px
    if (span < 0.5).any():
        sample = int(torch.nonzero(span < 0.5)[0])
        raise ValueError(f"the mouth of sample {sample} barely opens ({float(span[sample]):.2f} px); "
                         "cannot derive an opening direction")
    step = ((target - current) / span[:, None])[..., None, None]
    return add_point_delta(r, "mouth", step * direction[:, None])


def scale_torso(r: TalkingRepr, gain: float) -> TalkingRepr:
    """Multiply shoulder motion around each sample's mean torso by ``gain`` (0 = still, 2 = double)."""
    gain = check_number("gain", gain, 0.0)
    mean = r.torso.mean(dim=1, keepdim=True)
    return r.replace(torso=mean + gain * (r.torso - mean))
