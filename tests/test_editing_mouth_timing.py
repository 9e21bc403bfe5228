import pytest
import torch

from moda_core.editing import loop, mouth_openness, scale_mouth, scale_torso, set_mouth_openness, time_shift, trim
from moda_core.landmarks import mouth_indices
from test_editing_support import make_talking, subject, template  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def talking(template):
    return make_talking(template, seconds=8, face=True, samples=2)


def test_mouth_gain_keeps_closed_lips_closed(talking, subject):
    before = mouth_openness(talking)
    closed, wide = before[0] < 1e-3, before[0] > 5
    assert closed.any() and wide.any()
    for gain in (0.5, 1.5, 2.0):
        edited = scale_mouth(talking, gain)
        after = mouth_openness(edited)
        assert float(after[:, closed].abs().max()) < 1e-3, gain                 # closed stays closed
        assert torch.allclose(after[:, wide], gain * before[:, wide], rtol=1e-4), gain
        for name in ("eyes", "head_pose", "torso"):
            assert torch.equal(getattr(edited, name), getattr(talking, name))
        index = torch.from_numpy(mouth_indices())
        assert torch.allclose(edited.face[:, :, index] - talking.face[:, :, index], edited.mouth - talking.mouth,
                              atol=1e-4)
    offsets = talking.to_offsets(subject)
    assert torch.allclose(scale_mouth(offsets, 1.5).to_absolute(subject).mouth, scale_mouth(talking, 1.5).mouth,
                          atol=1e-3)
    assert scale_mouth(talking, 1.0) is talking


def test_set_mouth_openness(talking, subject):
    target = torch.linspace(0, 20, talking.num_frames)
    edited = set_mouth_openness(talking, target)
    assert torch.allclose(mouth_openness(edited), target.expand(2, -1), atol=1e-4)
    offsets = set_mouth_openness(talking.to_offsets(subject), target, subject)
    assert torch.allclose(mouth_openness(offsets, subject), target.expand(2, -1), atol=1e-3)
    still = talking.replace(mouth=talking.mouth[:, :1].expand_as(talking.mouth).contiguous())
    with pytest.raises(ValueError, match="barely opens"):
        set_mouth_openness(still, target)


def test_torso_gain(talking):
    doubled = scale_torso(talking, 2.0)
    mean = talking.torso.mean(dim=1, keepdim=True)
    assert torch.allclose(doubled.torso - mean, 2 * (talking.torso - mean), atol=1e-4)
    assert float(scale_torso(talking, 0.0).torso.var(dim=1).max()) < 1e-8
    assert torch.equal(doubled.mouth, talking.mouth) and torch.equal(doubled.head_pose, talking.head_pose)


def test_trim(talking):
    cut = trim(talking, 1.0, 3.5)
    assert cut.num_frames == 75 and torch.equal(cut.head_pose, talking.head_pose[:, 30:105])
    assert trim(talking, 2.0).num_frames == 180
    assert torch.equal(trim(talking, 0, -1.0).mouth, talking.mouth[:, :210])
    assert torch.equal(trim(talking, 10, 20, unit="f").face, talking.face[:, 10:20])
    with pytest.raises(ValueError, match="leaves no frames"):
        trim(talking, 9.0)
    with pytest.raises(ValueError, match="start must be >= 0"):
        trim(talking, -1.0)


def test_time_shift(talking):
    delayed = time_shift(talking, 5)
    assert torch.equal(delayed.mouth[:, 5:], talking.mouth[:, :-5])
    assert torch.equal(delayed.mouth[:, :5], talking.mouth[:, :1].expand(-1, 5, -1, -1))
    advanced = time_shift(talking, -4)
    assert torch.equal(advanced.torso[:, :-4], talking.torso[:, 4:])
    assert torch.equal(advanced.torso[:, -4:], talking.torso[:, -1:].expand(-1, 4, -1, -1))
    head_only = time_shift(talking, 3, tracks="head_pose")
    assert torch.equal(head_only.head_pose[:, 3:], talking.head_pose[:, :-3])
    assert torch.equal(head_only.mouth, talking.mouth) and torch.equal(head_only.face, talking.face)
    with pytest.raises(ValueError, match="tracks: unknown name 'lips'"):
        time_shift(talking, 1, tracks="lips")
    with pytest.raises(ValueError, match="whole number"):
        time_shift(talking, 1.5)


def test_loop_with_crossfade(talking):
    short = trim(talking, 0, 2.0)                                              # 60 frames
    plain = loop(short, 150, unit="f")
    assert plain.num_frames == 150 and torch.equal(plain.mouth[:, 60:120], short.mouth)
    faded = loop(short, 5.0, crossfade=0.5)                                    # 15-frame seams
    assert faded.num_frames == 150
    assert torch.equal(faded.head_pose[:, :45], short.head_pose[:, :45])     # first pass untouched
    assert torch.equal(faded.head_pose[:, 60:90], short.head_pose[:, 15:45])  # later passes after the fade
    seam_jump = (short.head_pose[:, 0] - short.head_pose[:, -1]).abs().amax()
    steps = faded.head_pose.diff(dim=1).abs().amax()
    assert float(steps) < 0.5 * float(seam_jump)
    assert loop(short, 30, unit="f").num_frames == 30
    with pytest.raises(ValueError, match="crossfade must be 0 to half"):
        loop(short, 10.0, crossfade=1.5)
