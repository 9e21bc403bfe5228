import pytest
import torch

from moda_core.editing import (blend_head_pose, clamp_head_pose, ease_edit, freeze_head_pose, keyframe_head_pose,
                               offset_head_pose, scale_head_pose, smooth_head_pose)
from test_editing_support import make_talking, subject, template  # noqa: F401  (fixtures)

OTHER_TRACKS = ("mouth", "eyes", "torso", "face")


def assert_only_head_pose_changed(before, after):
    for name in OTHER_TRACKS:
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    assert (after.fps, after.is_offset, after.num_frames) == (before.fps, before.is_offset, before.num_frames)


@pytest.fixture(scope="module")
def talking(template):
    return make_talking(template, seconds=6, samples=2, face=True)


def test_gain_scales_motion_around_the_mean(talking):
    edited = scale_head_pose(talking, yaw=2.0, ty=0.0)
    mean = talking.head_pose.mean(dim=1, keepdim=True)
    assert torch.allclose(edited.head_pose[..., 0] - mean[..., 0], 2 * (talking.head_pose[..., 0] - mean[..., 0]),
                          atol=1e-4)
    assert torch.allclose(edited.head_pose[..., 4], mean[..., 4].expand(-1, talking.num_frames), atol=1e-4)
    assert torch.equal(edited.head_pose[..., 1], talking.head_pose[..., 1])
    assert_only_head_pose_changed(talking, edited)


def test_offset_and_clamp(talking):
    edited = offset_head_pose(talking, pitch=5.0, scale=0.1)
    assert torch.allclose(edited.head_pose[..., 1], talking.head_pose[..., 1] + 5, atol=1e-5)
    assert torch.allclose(edited.head_pose[..., 6], talking.head_pose[..., 6] + 0.1, atol=1e-6)
    clamped = clamp_head_pose(talking, "yaw, roll", -1.0, 3.0)
    assert float(clamped.head_pose[..., [0, 2]].min()) == -1.0 and float(clamped.head_pose[..., [0, 2]].max()) == 3.0
    assert torch.equal(clamped.head_pose[..., 1], talking.head_pose[..., 1])
    assert_only_head_pose_changed(talking, clamped)
    with pytest.raises(ValueError, match="minimum <= maximum"):
        clamp_head_pose(talking, "yaw", 3.0, -1.0)


def test_smoothing_reduces_jitter_on_chosen_axes(talking):
    noisy = talking.replace(head_pose=talking.head_pose + torch.randn_like(talking.head_pose))
    smoothed = smooth_head_pose(noisy, 3.0, axes="x,y")
    jitter = lambda pose: pose.diff(dim=1).abs().mean(dim=(0, 1))       # noqa: E731
    assert (jitter(smoothed.head_pose)[3:5] < 0.3 * jitter(noisy.head_pose)[3:5]).all()
    assert torch.equal(smoothed.head_pose[..., [0, 1, 2, 5, 6]], noisy.head_pose[..., [0, 1, 2, 5, 6]])


@pytest.mark.parametrize("hold", ["first", "mean", "rest", "value"])
def test_freeze_gives_zero_variance(talking, subject, hold):
    frozen = freeze_head_pose(talking, "yaw,pitch,roll", hold=hold, value=4.0, subject=subject)
    assert float(frozen.head_pose[..., :3].var(dim=1).max()) == 0.0
    expected = {"first": talking.head_pose[:, 0, :3], "mean": talking.head_pose[..., :3].mean(dim=1),
                "rest": subject.mean_head_pose[:3].expand(2, 3), "value": torch.full((2, 3), 4.0)}[hold]
    assert torch.allclose(frozen.head_pose[:, 5, :3], expected, atol=1e-5)
    assert torch.equal(frozen.head_pose[..., 3:], talking.head_pose[..., 3:])
    assert_only_head_pose_changed(talking, frozen)


def test_freeze_rest_on_offsets_is_zero_and_absolute_needs_subject(talking, subject):
    frozen = freeze_head_pose(talking.to_offsets(subject), hold="rest")
    assert float(frozen.head_pose.abs().max()) == 0.0
    with pytest.raises(ValueError, match="needs the subject"):
        freeze_head_pose(talking, hold="rest")


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
def test_keyframes_hit_their_values(talking, interpolation):
    edited = keyframe_head_pose(talking, "yaw", "0s: 0, 1.5s: 10, 3s: -5, 150f: 2", interpolation=interpolation)
    yaw = edited.head_pose[..., 0]
    for frame, value in [(0, 0.0), (45, 10.0), (90, -5.0), (150, 2.0), (179, 2.0)]:
        assert torch.allclose(yaw[:, frame], torch.tensor(value), atol=1e-5), frame
    assert float(yaw[:, :91].max()) == pytest.approx(10.0, abs=1e-5)          # no overshoot, also for cubic
    assert torch.equal(edited.head_pose[..., 1:], talking.head_pose[..., 1:])


def test_keyframes_add_mode_and_json(talking):
    spec = '[{"t": 0, "value": 0}, {"frame": 30, "value": 4}, {"t": 2, "value": 0}]'
    edited = keyframe_head_pose(talking, "tz", spec, mode="add")
    added = edited.head_pose[..., 5] - talking.head_pose[..., 5]
    assert torch.allclose(added[:, 30], torch.tensor(4.0), atol=1e-5)
    assert torch.allclose(added[:, 15], torch.tensor(2.0), atol=1e-5)
    assert float(added[:, 60:].abs().max()) < 1e-5


def test_ease_in_out_ramps_the_edit(talking):
    eased = offset_head_pose(talking, yaw=10.0, ease_in_frames=10, ease_out_frames=20)
    added = (eased.head_pose[0, :, 0] - talking.head_pose[0, :, 0])
    assert float(added[0]) == 0.0 and float(added[-1]) == 0.0
    assert float(added[5]) == pytest.approx(5.0, abs=1e-4)                   # smoothstep midpoint
    assert torch.allclose(added[10:-20], torch.tensor(10.0), atol=1e-4)
    assert (added[:11].diff() >= 0).all() and (added[-21:].diff() <= 0).all()
    generic = ease_edit(talking, offset_head_pose(talking, yaw=10.0), 10, 20)
    assert torch.allclose(generic.head_pose, eased.head_pose, atol=1e-5)
    assert_only_head_pose_changed(talking, generic)


def test_blend_with_another_pose_track(template, talking):
    other = make_talking(template, seconds=2, fps=25.0, seed=3)
    other = other.replace(head_pose=other.head_pose.flip(-1).contiguous())
    replaced = blend_head_pose(talking, other, weight=1.0, axes="yaw", fit="hold")
    resampled = other.resample(30.0).head_pose[0, :, 0]
    assert torch.allclose(replaced.head_pose[:, :60, 0], resampled.expand(2, -1), atol=1e-5)
    assert torch.allclose(replaced.head_pose[:, 60:, 0], resampled[-1].expand(2, 120), atol=1e-5)
    half = blend_head_pose(talking, other, weight=0.5, fit="stretch")
    stretched = other.resample(90.0).head_pose                       # 50 frames -> 180
    assert torch.allclose(half.head_pose, (talking.head_pose + stretched) / 2, atol=1e-4)
    assert torch.equal(blend_head_pose(talking, other, weight=0.0).head_pose, talking.head_pose)
    looped = blend_head_pose(talking, other, fit="loop")
    assert looped.head_pose.shape == talking.head_pose.shape
    assert float(looped.head_pose.diff(dim=1).abs().max()) < 3 * float(other.head_pose.diff(dim=1).abs().max())
    assert_only_head_pose_changed(talking, looped)


def test_blend_motion_only_keeps_framing_across_offsets(talking, subject):
    other = make_talking(subject.template, seconds=6, seed=5)
    offsets = talking.to_offsets(subject)
    with pytest.raises(ValueError, match="motion_only"):
        blend_head_pose(offsets, other)
    moved = blend_head_pose(offsets, other, motion_only=True)
    assert torch.allclose(moved.head_pose.mean(dim=1), offsets.head_pose.mean(dim=1), atol=1e-4)
    assert torch.allclose(moved.head_pose.std(dim=1)[0], other.head_pose.std(dim=1)[0], atol=1e-4)


@pytest.mark.parametrize("call,message", [
    (lambda r: scale_head_pose(r, yaw=float("nan")), "yaw must be a finite number"),
    (lambda r: smooth_head_pose(r, 2.0, axes="yaw, nod"), "axes: unknown name 'nod'"),
    (lambda r: smooth_head_pose(r, -1.0), "sigma_frames must be between 0"),
    (lambda r: freeze_head_pose(r, hold="last"), "hold must be one of"),
    (lambda r: keyframe_head_pose(r, "yaw,pitch", "0: 1"), "exactly one"),
    (lambda r: keyframe_head_pose(r, "yaw", "0s: 1", mode="multiply"), "mode must be one of"),
    (lambda r: blend_head_pose(r, r, weight=1.5), "weight must be between 0 and 1"),
])
def test_invalid_arguments_are_named(talking, call, message):
    with pytest.raises(ValueError, match=message):
        call(talking)
