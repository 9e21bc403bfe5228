"""Head-pose edits: gain, offset, smoothing, clamping, freezing, keyframes and blending with another R.

Axes (R.head_pose last dim): ``yaw, pitch, roll`` in degrees, ``tx, ty, tz`` in image px (``x, y, z`` are
accepted for them), ``scale`` (canonicalisation scale, unitless). Every edit works on offset R (values relative
to the subject's mean pose) and absolute R alike, edits every sample, and returns a new R in which only
``head_pose`` changed. ``ease_in_frames`` / ``ease_out_frames`` fade the edit in at the start and out at the
end (see :func:`moda_core.editing.keyframes.ease_weights`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from moda_core.editing.keyframes import check_number, ease_weights, keyframe_curve, parse_names
from moda_core.editing.timing import loop
from moda_core.geometry import HEAD_POSE_AXES
from moda_core.repr import TalkingRepr
from moda_core.smoothing import smooth_time
from moda_core.subject import Subject

AXIS_ALIASES = {"x": "tx", "y": "ty", "z": "tz"}
HOLD_MODES = ("first", "mean", "rest", "value")
KEYFRAME_MODES = ("replace", "add")
FIT_MODES = ("loop", "hold", "stretch")


def parse_axes(axes: str | Sequence[str], param: str = "axes") -> list[int]:
    """``"yaw, pitch"`` / ``"all"`` / ``["x", "scale"]`` -> indices into the 7 head-pose values."""
    names = parse_names(axes, HEAD_POSE_AXES, param=param, aliases=AXIS_ALIASES)
    return [HEAD_POSE_AXES.index(n) for n in names]


def _with_pose(r: TalkingRepr, pose: torch.Tensor, ease_in_frames: float, ease_out_frames: float) -> TalkingRepr:
    if ease_in_frames or ease_out_frames:
        w = ease_weights(r.num_frames, ease_in_frames, ease_out_frames).to(pose)[None, :, None]
        pose = r.head_pose + w * (pose - r.head_pose)
    return r.replace(head_pose=pose)


def _per_axis(values: dict[str, float]) -> torch.Tensor:
    return torch.tensor([check_number(name, values[name]) for name in HEAD_POSE_AXES], dtype=torch.float64)


def scale_head_pose(r: TalkingRepr, *, yaw: float = 1.0, pitch: float = 1.0, roll: float = 1.0, tx: float = 1.0,
                    ty: float = 1.0, tz: float = 1.0, scale: float = 1.0, ease_in_frames: float = 0,
                    ease_out_frames: float = 0) -> TalkingRepr:
    """Multiply each axis' motion around its temporal mean (per sample): 2 doubles it, 0 holds the mean,
    1 leaves the axis exactly as it was."""
    gains = _per_axis(dict(yaw=yaw, pitch=pitch, roll=roll, tx=tx, ty=ty, tz=tz, scale=scale))
    mean = r.head_pose.mean(dim=1, keepdim=True)
    pose = torch.where(gains == 1, r.head_pose, mean + gains.to(r.head_pose) * (r.head_pose - mean))
    return _with_pose(r, pose, ease_in_frames, ease_out_frames)


def offset_head_pose(r: TalkingRepr, *, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, tx: float = 0.0,
                     ty: float = 0.0, tz: float = 0.0, scale: float = 0.0, ease_in_frames: float = 0,
                     ease_out_frames: float = 0) -> TalkingRepr:
    """Add a constant per axis (degrees for yaw/pitch/roll, px for tx/ty/tz, scale units for scale)."""
    offsets = _per_axis(dict(yaw=yaw, pitch=pitch, roll=roll, tx=tx, ty=ty, tz=tz, scale=scale))
    return _with_pose(r, r.head_pose + offsets.to(r.head_pose), ease_in_frames, ease_out_frames)


def smooth_head_pose(r: TalkingRepr, sigma_frames: float, axes: str | Sequence[str] = "all", *,
                     ease_in_frames: float = 0, ease_out_frames: float = 0) -> TalkingRepr:
    """Gaussian smoothing in time (sigma in frames; 0 = none) of the chosen axes."""
    sigma = check_number("sigma_frames", sigma_frames, 0)
    idx = parse_axes(axes)
    pose = r.head_pose.clone()
    pose[..., idx] = smooth_time(r.head_pose[..., idx], sigma)
    return _with_pose(r, pose, ease_in_frames, ease_out_frames)


def clamp_head_pose(r: TalkingRepr, axes: str | Sequence[str], minimum: float = -float("inf"),
                    maximum: float = float("inf"), *, ease_in_frames: float = 0,
                    ease_out_frames: float = 0) -> TalkingRepr:
    """Limit the chosen axes to ``[minimum, maximum]`` (the axis' units; offsets when R holds offsets)."""
    low, high = float(minimum), float(maximum)
    if low != low or high != high or low > high:
        raise ValueError(f"clamp needs minimum <= maximum (not NaN), got minimum={minimum}, maximum={maximum}")
    idx = parse_axes(axes)
    pose = r.head_pose.clone()
    pose[..., idx] = r.head_pose[..., idx].clamp(low, high)
    return _with_pose(r, pose, ease_in_frames, ease_out_frames)


def freeze_head_pose(r: TalkingRepr, axes: str | Sequence[str] = "all", hold: str = "first", value: float = 0.0,
                     subject: Subject | None = None, *, ease_in_frames: float = 0,
                     ease_out_frames: float = 0) -> TalkingRepr:
    """Hold the chosen axes still.

    ``hold``: ``first`` (the first frame's pose), ``mean`` (the temporal mean), ``rest`` (the subject's mean
    pose: 0 on offset R, ``subject.mean_head_pose`` on absolute R, which then needs ``subject``) or ``value``
    (``value`` on every chosen axis, in that axis' units).
    """
    if hold not in HOLD_MODES:
        raise ValueError(f"hold must be one of {', '.join(HOLD_MODES)}, got {hold!r}")
    idx = parse_axes(axes)
    pose = r.head_pose.clone()
    if hold == "first":
        held = r.head_pose[:, :1, idx]
    elif hold == "mean":
        held = r.head_pose[:, :, idx].mean(dim=1, keepdim=True)
    elif hold == "value":
        held = torch.tensor(check_number("value", value), dtype=pose.dtype)
    elif r.is_offset:
        held = torch.tensor(0.0, dtype=pose.dtype)
    elif subject is None:
        raise ValueError("hold='rest' on absolute R needs the subject (its mean head pose)")
    else:
        held = subject.mean_head_pose.to(pose)[idx]
    pose[..., idx] = held.to(pose.device)
    return _with_pose(r, pose, ease_in_frames, ease_out_frames)


def keyframe_head_pose(r: TalkingRepr, axis: str, keyframes: str, *, interpolation: str = "linear",
                       mode: str = "replace", unit: str = "s", ease_in_frames: float = 0,
                       ease_out_frames: float = 0) -> TalkingRepr:
    """Drive one axis by keyframes like ``"0s: 0, 1.5s: 10, 3s: -5"`` (see :mod:`.keyframes`).

    ``mode``: ``replace`` sets the axis to the curve, ``add`` adds the curve to the existing motion. Values
    are in the axis' units (offsets when R holds offsets). Before the first / after the last key the curve
    holds its end values.
    """
    i = _one_axis(axis, mode)
    curve = keyframe_curve(keyframes, r.fps, r.num_frames, interpolation=interpolation, param="keyframes", unit=unit)
    return drive_head_pose_axis(r, HEAD_POSE_AXES[i], curve, mode, ease_in_frames, ease_out_frames)


def _one_axis(axis: str, mode: str) -> int:
    """Index of the one head-pose axis ``axis`` names, after checking ``mode`` is a keyframe mode."""
    if mode not in KEYFRAME_MODES:
        raise ValueError(f"mode must be one of {', '.join(KEYFRAME_MODES)}, got {mode!r}")
    names = parse_names(axis, HEAD_POSE_AXES, param="axis", aliases=AXIS_ALIASES)
    if len(names) != 1:
        raise ValueError(f"axis must name exactly one head-pose axis, got {axis!r}")
    return HEAD_POSE_AXES.index(names[0])


def drive_head_pose_axis(r: TalkingRepr, axis: str, values, mode: str = "replace", ease_in_frames: float = 0,
                         ease_out_frames: float = 0) -> TalkingRepr:
    """Drive one axis by per-frame ``values`` ``[T]`` (numpy or torch, the axis' units; every sample).

    ``mode``: ``replace`` sets the axis to ``values``, ``add`` adds them to the existing motion.
    """
    i = _one_axis(axis, mode)
    target = torch.as_tensor(values).to(r.head_pose)
    pose = r.head_pose.clone()
    pose[..., i] = target if mode == "replace" else r.head_pose[..., i] + target
    return _with_pose(r, pose, ease_in_frames, ease_out_frames)


def _fit_pose(other: TalkingRepr, fps: float, num_frames: int, fit: str) -> torch.Tensor:
    """``other``'s head pose at ``fps`` and exactly ``num_frames`` long."""
    if fit == "stretch":
        return other.resample(other.fps * num_frames / other.num_frames).head_pose[:, :num_frames]
    other = other.resample(fps) if other.fps != fps else other
    if other.num_frames >= num_frames:
        return other.head_pose[:, :num_frames]
    if fit == "loop":
        crossfade = min(round(0.5 * fps), other.num_frames // 2)
        return loop(other, num_frames, unit="f", crossfade=crossfade).head_pose
    tail = other.head_pose[:, -1:].expand(-1, num_frames - other.num_frames, -1)
    return torch.cat([other.head_pose, tail], dim=1)


def blend_head_pose(r: TalkingRepr, other: TalkingRepr, weight: float = 1.0, axes: str | Sequence[str] = "all", *,
                    motion_only: bool = False, fit: str = "loop", ease_in_frames: float = 0,
                    ease_out_frames: float = 0) -> TalkingRepr:
    """Replace (``weight`` 1) or mix (0..1) the chosen axes with another R's head pose, e.g. a real video's.

    ``other`` is resampled to R's fps and fitted to R's length: ``loop`` (repeat with a 0.5 s crossfade),
    ``hold`` (hold its last frame) or ``stretch`` (resample it to R's duration); longer tracks are cut.
    ``motion_only`` takes ``other``'s motion around its own temporal mean and puts it around R's mean, so R's
    framing stays (needed when one R holds offsets and the other absolute values, or the subjects differ).
    ``other`` has one sample or as many as R.
    """
    w = check_number("weight", weight, 0.0, 1.0)
    if fit not in FIT_MODES:
        raise ValueError(f"fit must be one of {', '.join(FIT_MODES)}, got {fit!r}")
    if other.num_samples not in (1, r.num_samples):
        raise ValueError(f"the other R has {other.num_samples} samples; give 1 or {r.num_samples}")
    if other.is_offset != r.is_offset and not motion_only:
        raise ValueError("one R holds offsets and the other absolute values: convert one (to_absolute / to_offsets)"
                         " or set motion_only")
    idx = parse_axes(axes)
    source = _fit_pose(other, r.fps, r.num_frames, fit).to(r.head_pose)
    if motion_only:
        source = source - source.mean(dim=1, keepdim=True) + r.head_pose.mean(dim=1, keepdim=True)
    pose = r.head_pose.clone()
    pose[..., idx] = torch.lerp(r.head_pose[..., idx], source[..., idx].expand_as(r.head_pose[..., idx]), w)
    return _with_pose(r, pose, ease_in_frames, ease_out_frames)
