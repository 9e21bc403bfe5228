import pytest
import torch

from moda_core.editing import (add_blinks, add_blinks_at, blink_rate, detect_blinks, eye_openness, remove_blinks,
                               scale_eye_openness, set_eye_openness, shift_gaze)
from moda_core.landmarks import eye_indices
from test_editing_support import make_talking, subject, template  # noqa: F401  (fixtures)

BROW_IDS = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
BROWS = torch.tensor([i for i, p in enumerate(eye_indices().tolist()) if p in BROW_IDS])
EYE_SET = torch.from_numpy(eye_indices())


def assert_only_eyes_changed(before, after):
    for name in ("mouth", "head_pose", "torso"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    if before.face is not None:
        others = torch.ones(478, dtype=torch.bool)
        others[EYE_SET] = False
        assert torch.equal(before.face[:, :, others], after.face[:, :, others])
        assert torch.allclose(after.face[:, :, EYE_SET] - before.face[:, :, EYE_SET], after.eyes - before.eyes, atol=1e-4)


@pytest.fixture(scope="module")
def minute(template):
    """60 s at 30 fps with 5 blinks (5 per minute)."""
    return make_talking(template, seconds=60, blinks_at=(3.0, 15.2, 27.0, 40.5, 52.3))


def test_blinks_raise_the_rate_to_the_target(minute):
    assert blink_rate(minute) == [pytest.approx(5.0)]
    for target in (12, 20, 30):
        blinking = add_blinks(minute, target, seed=target)
        assert abs(blink_rate(blinking)[0] - target) <= 1, target
        assert set(detect_blinks(minute)[0]) <= set(detect_blinks(blinking)[0])         # existing ones kept
        assert torch.equal(blinking.eyes[:, :, BROWS], minute.eyes[:, :, BROWS])
        assert_only_eyes_changed(minute, blinking)
    assert torch.equal(add_blinks(minute, 20, seed=1).eyes, add_blinks(minute, 20, seed=1).eyes)
    assert not torch.equal(add_blinks(minute, 20, seed=1).eyes, add_blinks(minute, 20, seed=2).eyes)
    assert torch.equal(add_blinks(minute, 3).eyes, minute.eyes)                          # already above target


def test_blink_shape_is_natural(template):
    still = make_talking(template, seconds=3)
    openness = eye_openness(add_blinks_at(still, "1.5s")).mean(-1)[0]
    base = eye_openness(still).mean(-1)[0]
    closure = 1 - openness / base
    assert float(closure[45]) == pytest.approx(1.0, abs=0.02)                             # shut at 1.5 s
    shut = (closure > 0.05).nonzero().flatten()
    duration_ms = (int(shut[-1]) - int(shut[0]) + 1) * 1000 / 30
    assert 250 <= duration_ms <= 400
    assert int(shut[-1]) - 45 > 45 - int(shut[0])                                          # opens slower
    x_moved = add_blinks_at(still, "1.5s").eyes[..., 0] - still.eyes[..., 0]
    assert float(x_moved.abs().max()) == 0.0                                               # x kept


def test_remove_blinks(minute, subject):
    clean = remove_blinks(minute)
    assert blink_rate(clean) == [0.0]
    assert torch.equal(clean.eyes[:, :, BROWS], minute.eyes[:, :, BROWS])
    open_frames = slice(200, 400)                                                          # no blink there
    assert torch.equal(clean.eyes[:, open_frames], minute.eyes[:, open_frames])
    assert_only_eyes_changed(minute, clean)
    offsets = remove_blinks(minute.to_offsets(subject), subject)
    assert torch.allclose(offsets.to_absolute(subject).eyes, clean.eyes, atol=1e-3)
    assert blink_rate(remove_blinks(add_blinks(minute, 25, seed=4))) == [0.0]


def test_offsets_and_face_follow(template, subject):
    r = make_talking(template, seconds=4, face=True, samples=2)
    offsets = r.to_offsets(subject)
    edited = add_blinks_at(offsets, "1s, 3s", subject=subject)
    assert edited.is_offset
    assert torch.allclose(edited.to_absolute(subject).eyes, add_blinks_at(r, "1s, 3s").eyes, atol=1e-3)
    assert_only_eyes_changed(offsets, edited)
    assert len(detect_blinks(edited, subject)[1]) == 2
    with pytest.raises(ValueError, match="needs the subject"):
        add_blinks(offsets, 10)


def test_openness_gain_and_blink_depth(minute):
    base = eye_openness(minute)
    wider = eye_openness(scale_eye_openness(minute, gain=1.2))
    assert torch.allclose(wider, 1.2 * base, atol=1e-5)
    calm = scale_eye_openness(minute, blink_depth=0.0)
    assert blink_rate(calm) == [0.0]
    level = base.median(dim=1, keepdim=True).values
    assert torch.allclose(eye_openness(calm), level.expand_as(base), atol=1e-5)
    half = eye_openness(scale_eye_openness(minute, blink_depth=0.5))
    assert torch.allclose(half, level + 0.5 * (base - level), atol=1e-5)
    assert scale_eye_openness(minute) is minute
    assert_only_eyes_changed(minute, calm)


def test_set_openness_opens_a_closed_eye_into_the_usual_shape(template):
    r = make_talking(template, seconds=2, blinks_at=(1.0,))
    target = eye_openness(r).median(dim=1, keepdim=True).values.expand(-1, r.num_frames, -1)
    opened = set_eye_openness(r, target)
    assert torch.allclose(eye_openness(opened), target, atol=1e-5)
    assert torch.allclose(opened.eyes[0, 30], r.eyes[0, 0], atol=0.2)                   # the shut frame, reopened


def test_gaze_offset_moves_only_irises(template):
    r = make_talking(template, seconds=1, face=True)
    moved = shift_gaze(r, dx=3.0, dy=-1.5)
    delta = moved.eyes - r.eyes
    iris = torch.tensor([p for p, i in enumerate(eye_indices().tolist()) if i >= 468])
    assert torch.allclose(delta[:, :, iris], torch.tensor([3.0, -1.5, 0.0]), atol=1e-4)
    others = torch.ones(60, dtype=torch.bool)
    others[iris] = False
    assert torch.equal(moved.eyes[:, :, others], r.eyes[:, :, others])
    assert torch.allclose(moved.face[:, :, 468:] - r.face[:, :, 468:], torch.tensor([3.0, -1.5, 0.0]), atol=1e-4)
    assert torch.equal(moved.face[:, :, :468], r.face[:, :, :468])
    assert torch.equal(moved.mouth, r.mouth)


def test_invalid_eye_arguments(minute):
    with pytest.raises(ValueError, match="per_minute must be between 0"):
        add_blinks(minute, -3)
    with pytest.raises(ValueError, match="times: time '70s' is outside the clip"):
        add_blinks_at(minute, "1s, 70s")
    with pytest.raises(ValueError, match="depth must be between 0 and 1"):
        add_blinks_at(minute, "1s", depth=2)
    with pytest.raises(ValueError, match="dx must be a finite number"):
        shift_gaze(minute, dx=float("inf"))
