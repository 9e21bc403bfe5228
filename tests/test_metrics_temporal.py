import numpy as np
import pytest
import torch

from moda_core.metrics import tcm, tcm_per_frame
from moda_core.metrics.temporal import backward_flow, warp


def texture(h=64, w=64, seed=0):
    """A smooth random texture in [0.2, 0.8] that optical flow can track."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 8, w // 8, 3))
    import cv2
    return 0.2 + 0.6 * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def moving_video(frames=5, step=1.0):
    base = texture(96, 96)
    import cv2
    out = []
    for t in range(frames):
        m = np.float32([[1, 0, step * t], [0, 1, 0]])
        out.append(cv2.warpAffine(base, m, (96, 96), borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)[:, 16:80, 16:80]


def test_identical_static_videos_score_one():
    still = np.repeat(texture()[None], 4, axis=0)
    assert tcm(still, still) == 1.0
    assert tcm(still, still, flow_from="each") == 1.0
    zeros = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    assert tcm(zeros, zeros) == 1.0


def test_identical_moving_videos_score_one():
    video = moving_video()
    assert tcm(video, video) == 1.0
    assert tcm(torch.from_numpy(video), video, flow_from="each") == 1.0


def test_flicker_against_a_static_reference_scores_exp_minus_one():
    still = np.repeat(texture()[None], 5, axis=0)
    flicker = still + np.array([0.0, 0.1, 0.0, 0.1, 0.0])[:, None, None, None]
    terms = tcm_per_frame(flicker, still)
    assert terms.shape == (4,)
    assert terms == pytest.approx(np.exp(-1.0), abs=1e-4)    # E_O ~ 0 (Farneback jitter), ratio ~ 0
    assert tcm(flicker, still, absolute=False) == pytest.approx(np.e, abs=1e-3)
    assert tcm(still, flicker) < 1e-3                                       # frozen vs moving reference
    assert tcm(flicker, still) < tcm(still, still)


def test_flow_and_warp_follow_a_shift():
    video = moving_video(frames=2, step=2.0)
    flow = backward_flow(video[1], video[0])
    assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(-2.0, abs=0.25)
    assert np.median(np.abs(flow[8:-8, 8:-8, 1])) < 0.25
    residual = np.abs(warp(video[0], flow) - video[1])[8:-8, 8:-8].mean()
    assert residual < 0.25 * np.abs(video[0] - video[1])[8:-8, 8:-8].mean()


def test_bad_inputs_raise():
    one = np.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="at least 2 frames"):
        tcm(one, one)
    with pytest.raises(ValueError, match="differ in shape"):
        tcm(np.zeros((3, 32, 32, 3)), np.zeros((4, 32, 32, 3)))
    with pytest.raises(ValueError, match="flow_from"):
        tcm(np.zeros((3, 32, 32, 3)), np.zeros((3, 32, 32, 3)), flow_from="generated")
    with pytest.raises(ValueError, match="must be frames"):
        tcm(np.zeros((3, 32, 32)), np.zeros((3, 32, 32)))
