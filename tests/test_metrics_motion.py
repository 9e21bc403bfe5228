import numpy as np
import pytest
import torch

from moda_core import TalkingRepr
from moda_core.landmarks import eye_indices
from moda_core.metrics import blink_rate, diversity, eye_openness_series, head_pose_stats
from moda_core.editing.eyes import EYE_CORNERS, LOWER_LIDS, UPPER_LIDS, blink_rate as editing_blink_rate
from moda_core.metrics.motion import count_blinks


def make_r(samples=1, frames=10, fps=25.0, mouth=None, eyes=None, head_pose=None):
    shape = (samples, frames)
    return TalkingRepr(mouth=torch.zeros(*shape, 40, 3) if mouth is None else torch.as_tensor(mouth).float(),
                       eyes=torch.zeros(*shape, 60, 3) if eyes is None else torch.as_tensor(eyes).float(),
                       head_pose=torch.zeros(*shape, 7) if head_pose is None else torch.as_tensor(head_pose).float(),
                       torso=torch.zeros(*shape, 18, 3), fps=fps)


def eyes_with_openness(openness: np.ndarray) -> np.ndarray:
    """[T, 60, 3] eye points whose lid gap is ``openness`` x eye width (width 30 px)."""
    pos = {int(m): i for i, m in enumerate(eye_indices())}
    eyes = np.zeros((len(openness), 60, 3))
    for x0, (a, b), uppers, lowers in zip((300.0, 180.0), EYE_CORNERS, UPPER_LIDS, LOWER_LIDS):
        eyes[:, pos[a], :2] = (x0, 200.0)
        eyes[:, pos[b], :2] = (x0 + 30.0, 200.0)
        for k, (up, low) in enumerate(zip(uppers, lowers)):
            x = x0 + 30.0 * (k + 1) / 8
            eyes[:, pos[up], 0] = eyes[:, pos[low], 0] = x
            eyes[:, pos[up], 1] = 200.0 - 15.0 * openness
            eyes[:, pos[low], 1] = 200.0 + 15.0 * openness
    return eyes


def test_diversity_identical_and_known_spread():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 6, 100, 3))
    assert diversity(np.repeat(base, 3, axis=0)) == 0.0
    c = np.array([-2.0, 0.0, 5.0, 1.0])
    spread = base + c[:, None, None, None]
    assert diversity(spread) == pytest.approx(np.var(c))
    assert diversity(spread, dims=3) == pytest.approx(np.var(c))
    r = make_r(samples=4, frames=6, mouth=spread[:, :, :40], eyes=spread[:, :, 40:])
    assert diversity(r) == pytest.approx(np.var(c), rel=1e-5)
    assert diversity(torch.as_tensor(spread[..., 0])) == pytest.approx(np.var(c))    # [S, T, F] features
    only_x = base.repeat(2, 0)
    only_x[1, ..., 0] += 2.0                                             # x spread var 1, y none
    assert diversity(only_x) == pytest.approx(0.5)                       # mean over x and y


def test_diversity_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 samples"):
        diversity(np.zeros((1, 5, 40, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        diversity(make_r(samples=1))
    with pytest.raises(ValueError, match="no 'face' track"):
        diversity(make_r(samples=2), tracks=("face",))
    with pytest.raises(ValueError, match=r"\[S, T, N, D\]"):
        diversity(np.zeros((2, 5)))


def test_head_pose_range_and_speed():
    frames, fps = 11, 25.0
    pose = np.zeros((frames, 7))
    pose[:, 0] = 0.5 * np.arange(frames)                                 # yaw ramp 0.5 deg/frame
    pose[:, 4] = np.where(np.arange(frames) % 2 == 0, 2.0, -2.0)         # ty zig-zag of 4 px
    pose[:, 6] = 1.0
    stats = head_pose_stats(pose, fps=fps)
    assert stats["yaw"] == {"range": pytest.approx(5.0), "speed": pytest.approx(0.5 * fps)}
    assert stats["ty"] == {"range": pytest.approx(4.0), "speed": pytest.approx(4.0 * fps)}
    assert stats["pitch"] == {"range": 0.0, "speed": 0.0} and stats["scale"]["range"] == 0.0
    r = make_r(samples=2, frames=frames, fps=fps, head_pose=np.stack([pose, pose]))
    assert head_pose_stats(r)["yaw"]["speed"] == pytest.approx(12.5)


def test_head_pose_bad_inputs():
    with pytest.raises(ValueError, match="fps"):
        head_pose_stats(np.zeros((5, 7)))
    with pytest.raises(ValueError, match=r"\[T, 7\]"):
        head_pose_stats(np.zeros((5, 6)), fps=25)
    with pytest.raises(ValueError, match="at least 2 frames"):
        head_pose_stats(np.zeros((1, 7)), fps=25)


def test_blink_rate_from_an_openness_series():
    fps, seconds = 25.0, 6.0
    series = np.ones(int(fps * seconds))
    for start in (20, 70, 120):                                          # three 3-frame blinks in 6 s
        series[start:start + 3] = 0.1
    assert count_blinks(series) == 3
    assert blink_rate(series, fps=fps) == pytest.approx(30.0)
    assert blink_rate(np.ones(50), fps=fps) == 0.0
    assert blink_rate(np.stack([series, np.ones_like(series)]), fps=fps) == pytest.approx(15.0)


def test_blink_rate_from_eye_points():
    fps, frames = 30.0, 120                                              # 4 s
    openness = np.full(frames, 0.3)
    openness[40:44] = 0.02
    openness[90:93] = 0.05
    r = make_r(frames=frames, fps=fps, eyes=eyes_with_openness(openness)[None])
    series = eye_openness_series(r)
    assert series.shape == (1, frames)
    assert series[0] == pytest.approx(openness, abs=1e-5)
    assert blink_rate(r) == pytest.approx(2 / (4 / 60))
    assert editing_blink_rate(r) == [pytest.approx(blink_rate(r))]              # same rule as the editor


def test_blink_rate_bad_inputs():
    with pytest.raises(ValueError, match="fps"):
        blink_rate(np.ones(10))
    with pytest.raises(ValueError, match="threshold"):
        blink_rate(np.ones(10), fps=25, threshold=1.5)
    with pytest.raises(ValueError, match=r"\[T\]"):
        blink_rate(np.ones((2, 3, 4)), fps=25)
    offsets = TalkingRepr(mouth=torch.zeros(1, 4, 40, 3), eyes=torch.zeros(1, 4, 60, 3),
                          head_pose=torch.zeros(1, 4, 7), torso=torch.zeros(1, 4, 18, 3), fps=25, is_offset=True)
    with pytest.raises(ValueError, match="subject"):
        blink_rate(offsets)
