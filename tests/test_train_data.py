"""Training datasets over sample folders, and the loss functions."""
from __future__ import annotations

import warnings

import pytest
import torch

from moda_core.landmarks import mouth_indices
from moda_core.models.audio_encoder import SAMPLE_RATE
from moda_core.tpe import AUTHORS_TRAIN_OFFSET, TPEConfig, tpe_values
from moda_core.train import MotionWindows, PerceptualLoss, RenderFrames, VGG19Features, load_sample, load_vgg19
from moda_core.train.datasets import split_range
from moda_core.train.losses import feature_matching_loss, kl_divergence, lsgan_loss
from test_train_common import _seeded, offline_vgg, sample, sample_dir  # noqa: F401  (fixtures)


def test_load_sample_normalises_audio_and_matches_frames(sample):
    assert sample.fps == 30.0 and sample.num_frames == 90
    assert sample.audio.shape == (round(90 * SAMPLE_RATE / 30),)
    assert abs(float(sample.audio.mean())) < 1e-4 and abs(float(sample.audio.std()) - 1.0) < 1e-3
    offsets = sample.offsets()
    template = sample.subject.template
    torch.testing.assert_close(offsets["lip"].reshape(90, 40, 3) + template[torch.from_numpy(mouth_indices())],
                               sample.repr.mouth[0])
    torch.testing.assert_close(offsets["head"] + sample.subject.mean_head_pose, sample.repr.head_pose[0])
    assert offsets["face"].shape == (90, 1434)


def test_load_sample_resamples_to_the_training_fps(sample_dir):
    assert load_sample(sample_dir, fps=25.0).num_frames == 75


def test_split_is_by_time():
    assert split_range(100, "train", 0.2) == range(0, 80)
    assert split_range(100, "val", 0.2) == range(80, 100)
    with pytest.raises(ValueError):
        split_range(100, "train", 1.0)


def test_motion_windows_shapes_and_coverage(sample):
    train = MotionWindows([sample], "train", 30, hop=10)
    assert train.window == 30 and len(train) == 5                      # starts 0, 10, ..., 40 of 72 train frames
    item = train[0]
    assert item["audio"].shape == (16000,) and item["subject"].shape == (1434,)
    assert {k: tuple(v.shape) for k, v in item.items() if k not in ("audio", "subject")} == {
        "lip": (30, 120), "eye": (30, 180), "head": (30, 7), "torso": (30, 54), "face": (30, 1434)}
    val = MotionWindows([sample], "val", 600)
    assert val.window == 18 and len(val) == 1                          # clamped to the 18 validation frames
    torch.testing.assert_close(val[0]["lip"], sample.offsets()["lip"][72:90])
    first = round(72 * SAMPLE_RATE / 30)
    torch.testing.assert_close(val[0]["audio"], sample.audio[first:first + val.audio_length])


def test_render_frames_inputs(sample):
    frames = RenderFrames(sample, "val", 64, tpe=TPEConfig(offset=AUTHORS_TRAIN_OFFSET))
    assert len(frames) == 18
    item = frames[3]
    assert item["input"].shape == (19, 64, 64) and item["target"].shape == (3, 64, 64)
    assert int(item["index"]) == 75
    torch.testing.assert_close(item["input"][6:, 0, 0], tpe_values([75], TPEConfig(offset=AUTHORS_TRAIN_OFFSET))[0])
    assert item["input"][:6].min() >= -1 and item["input"][:6].max() <= 1 and item["input"][:3].max() > 0
    mask = item["mouth"][0]
    assert 0.01 < mask.mean() < 0.2                                     # a box around the lips, not the image
    rows = mask.any(1).nonzero().flatten().float().mean() / 64
    assert 0.5 < rows < 0.9                                             # in the lower half of the face crop


def test_render_frames_tpe_jitter_shifts_the_index(sample):
    frames = RenderFrames(sample, "train", 64, tpe=TPEConfig(), tpe_jitter=9000)
    seen = {round(float(frames[0]["input"][6, 0, 0]) * 1000) for _ in range(8)}   # channel 6 = v = t / 1000
    assert len(seen) > 1 and all(0 <= t < 9000 for t in seen)


def test_kl_and_lsgan():
    zeros = torch.zeros(2, 5, 8)
    assert kl_divergence(zeros, zeros) == 0
    assert kl_divergence(zeros + 1, zeros) > 0
    assert lsgan_loss(torch.ones(3), True) == 0 and lsgan_loss(torch.zeros(3), False) == 0
    multiscale = [[torch.randn(1, 2, 4, 4), torch.ones(1, 1, 3, 3)], [torch.randn(1, 2, 2, 2), torch.ones(1, 1, 2, 2)]]
    assert lsgan_loss(multiscale, True) == 0
    assert feature_matching_loss(multiscale, multiscale) == 0


def test_vgg19_loads_torchvision_layout_strictly(tmp_path):
    reference = VGG19Features()
    published = {k: torch.randn_like(v) for k, v in reference.state_dict().items()}
    published["classifier.0.weight"] = torch.zeros(4, 4)                # torchvision's head is dropped
    torch.save(published, tmp_path / "vgg19-test.pth")
    model = load_vgg19(f"file://{tmp_path / 'vgg19-test.pth'}", model_dir=str(tmp_path / "hub"))
    assert all(torch.equal(model.state_dict()[k], published[k]) for k in reference.state_dict())
    features = model(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1] for f in features] == [64, 128, 256, 512, 512]
    torch.save({"features.0.weight": published["features.0.weight"]}, tmp_path / "vgg19-bad.pth")
    with pytest.raises(RuntimeError):
        load_vgg19(f"file://{tmp_path / 'vgg19-bad.pth'}", model_dir=str(tmp_path / "hub"))


def test_perceptual_loss_offline_warns_once_and_skips(offline_vgg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = PerceptualLoss()
        results = [loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)) for _ in range(3)]
    assert [str(w.message).split(":")[0] for w in caught] == ["perceptual loss disabled"]
    assert not loss.available and results == [None, None, None]
