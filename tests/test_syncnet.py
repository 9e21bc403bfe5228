"""SyncNet lip-sync scoring: network layout, weight loading, MFCC front end, crops, offset search, end to end."""
import numpy as np
import pytest
import torch
from torch import nn

from moda_core.metrics import mfcc as mfcc_module
from moda_core.metrics.syncnet import (MAX_OFFSET, MIN_FRAMES, NO_WEIGHTS_REASON, OUTSIDE_GREY, crop_face,
                                       crop_faces, frame_indices_at, load_syncnet, score_crops, score_frames,
                                       score_video, sync_search, syncnet_confidence)
from moda_core.models.syncnet import SyncNet, SyncNetConfig

CONV_INDICES = (0, 4, 8, 11, 14, 18)
AUDIO_KERNELS = [(3, 3)] * 5 + [(5, 4)]
LIP_KERNELS = [(5, 7, 7), (1, 5, 5), (1, 3, 3), (1, 3, 3), (1, 3, 3), (1, 6, 6)]


def expected_layout(config: SyncNetConfig) -> dict[str, tuple[int, ...]]:
    """syncnet_v2.model's keys and shapes for ``config`` (published sizes for the default config)."""
    shapes = {}
    for tower, kernels, channels, first in (("netcnnaud", AUDIO_KERNELS, config.audio_channels, 1),
                                           ("netcnnlip", LIP_KERNELS, config.lip_channels, 3)):
        previous = first
        for index, kernel, width in zip(CONV_INDICES, kernels, channels):
            shapes[f"{tower}.{index}.weight"] = (width, previous, *kernel)
            shapes[f"{tower}.{index}.bias"] = (width,)
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{tower}.{index + 1}.{name}"] = (width,)
            shapes[f"{tower}.{index + 1}.num_batches_tracked"] = ()
            previous = width
    for head, width in (("netfcaud", config.audio_channels[-1]), ("netfclip", config.lip_channels[-1])):
        shapes.update({f"{head}.0.weight": (config.hidden, width), f"{head}.0.bias": (config.hidden,),
                       f"{head}.3.weight": (config.embed_dim, config.hidden), f"{head}.3.bias": (config.embed_dim,)})
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{head}.1.{name}"] = (config.hidden,)
        shapes[f"{head}.1.num_batches_tracked"] = ()
    return shapes


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = SyncNet(SyncNetConfig.tiny())
    for module in net.modules():          # non-trivial BatchNorm statistics, so loading them matters
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("config", [SyncNetConfig(), SyncNetConfig.tiny()], ids=["published", "tiny"])
def test_state_dict_layout_matches_published_weights(config):
    net = SyncNet(config)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected_layout(config)


def test_published_size_embeds_to_1024():
    net = SyncNet().eval()
    assert sum(p.numel() for p in net.parameters()) == 13_631_616
    with torch.no_grad():
        assert net.embed_audio(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert net.embed_lips(torch.randn(1, 3, 5, 224, 224)).shape == (1, 1024)
    with pytest.raises(ValueError, match=r"audio input must have shape \[B, 1, 13, 20\]"):
        net.embed_audio(torch.randn(2, 1, 13, 21))
    with pytest.raises(ValueError, match="lip input"):
        net.embed_lips(torch.randn(2, 3, 5, 112, 112))


def test_config_validation():
    with pytest.raises(ValueError, match="audio_channels must be 6 positive ints"):
        SyncNetConfig(audio_channels=(1, 2, 3))
    with pytest.raises(ValueError, match="embed_dim"):
        SyncNetConfig(embed_dim=0)
    assert SyncNetConfig.from_dict(SyncNetConfig.tiny().to_dict()) == SyncNetConfig.tiny()


# ----------------------------------------------------------------------------------------------- loading
def test_load_legacy_file_without_batch_counters(tmp_path, tiny_net):
    legacy = {k: v for k, v in tiny_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "syncnet_v2.model"
    torch.save(legacy, path)
    loaded = load_syncnet(path)
    assert loaded.config == SyncNetConfig.tiny() and not loaded.training
    mfcc_in = torch.randn(3, 1, 13, 20)
    with torch.no_grad():
        assert torch.equal(loaded.embed_audio(mfcc_in), tiny_net.embed_audio(mfcc_in))


def test_load_safetensors_and_module_prefix(tmp_path, tiny_net):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_net.state_dict().items()}
    save_file(state, tmp_path / "syncnet.safetensors")
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "wrapped.pth")
    clip = torch.rand(1, 3, 5, 224, 224) * 255
    with torch.no_grad():
        want = tiny_net.embed_lips(clip)
        for name in ("syncnet.safetensors", "wrapped.pth"):
            assert torch.equal(load_syncnet(tmp_path / name).embed_lips(clip), want)


def test_load_names_bad_keys(tmp_path, tiny_net):
    state = dict(tiny_net.state_dict())
    state.pop("netfclip.3.bias")
    state["netextra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(ValueError, match=r"missing key\(s\): netfclip.3.bias.*unexpected key\(s\): netextra.weight"):
        load_syncnet(tmp_path / "bad.model")
    with pytest.raises(FileNotFoundError, match="syncnet_v2.model"):
        load_syncnet(tmp_path / "absent.model")
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_syncnet(tmp_path / "junk.model")


# ----------------------------------------------------------------------------------------------- MFCC
def test_mfcc_equals_python_speech_features(data_dir):
    reference = pytest.importorskip("python_speech_features")   # in the [test] extra, so CI runs it
    from moda_core.preprocess import load_audio

    wave, rate = load_audio(data_dir / "audio" / "en_hdtf_radio31.wav")
    pcm = mfcc_module.pcm16_scale(wave)
    ours = mfcc_module.mfcc(pcm, rate)
    assert ours.shape == (1 + int(np.ceil((len(pcm) - 400) / 160)), 13)
    np.testing.assert_allclose(ours, reference.mfcc(pcm, rate), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(mfcc_module.mel_filterbank(rate), reference.get_filterbanks(26, 512, rate))
    for length in (1, 399, 400, 401, 561):                      # framing edge cases, including silence
        noise = np.random.default_rng(length).normal(size=length) * 300
        np.testing.assert_allclose(mfcc_module.mfcc(noise), reference.mfcc(noise, 16000), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(mfcc_module.mfcc(np.zeros(800)), reference.mfcc(np.zeros(800), 16000))


def test_mfcc_basics():
    assert mfcc_module.pcm16_scale(np.array([-1.0, 0.5, 1.0])).tolist() == [-32768, 16384, 32767]
    bank = mfcc_module.mel_filterbank(16000)
    assert bank.shape == (26, 257) and bank.max() <= 1.0 and (bank.sum(0)[1:250] > 0).all()
    with pytest.raises(ValueError, match="non-empty mono"):
        mfcc_module.mfcc(np.zeros((2, 10)))


# ----------------------------------------------------------------------------------------------- crops
def test_crop_geometry():
    # box 100..200 (half 50, centre 150): crop rows 150-50 .. 150+50*1.8, columns 150-50*1.4 .. 150+50*1.4
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[100:240, 80:220] = (255, 0, 0)                        # RGB red exactly on the crop
    crop = crop_face(frame, 50.0, 150.0, 150.0)
    assert crop.shape == (224, 224, 3)
    assert (crop[..., 2] == 255).all() and (crop[..., :2] == 0).all()   # BGR order: red is channel 2
    outside = np.full_like(frame, 255)
    outside[100:240, 80:220] = 0
    assert crop_face(outside, 50.0, 150.0, 150.0).max() == 0
    corner = crop_face(frame, 50.0, 10.0, 10.0)                 # mostly outside the frame: grey fill
    assert (corner[:40, :40] == OUTSIDE_GREY).all()


def test_crop_faces_smooth_out_a_single_bad_box():
    frames = [np.random.default_rng(t).integers(0, 256, (300, 300, 3), dtype=np.uint8) for t in range(20)]
    boxes = np.tile([100.0, 100.0, 200.0, 200.0], (20, 1))
    wild = boxes.copy()
    wild[10] = [0, 0, 290, 290]
    np.testing.assert_array_equal(crop_faces(frames, wild)[3:17], crop_faces(frames, boxes)[3:17])
    with pytest.raises(ValueError, match=f"at least {MIN_FRAMES} frames"):
        crop_faces(frames[:5], boxes[:5])


def test_frame_indices_at_25_fps():
    np.testing.assert_array_equal(frame_indices_at(6, 30.0), [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(frame_indices_at(10, 25.0), np.arange(10))
    assert len(frame_indices_at(300, 30.0)) == 250


# ----------------------------------------------------------------------------------------------- search
def test_sync_search_finds_known_shift():
    g = torch.Generator().manual_seed(1)
    lips = torch.randn(60, 16, generator=g)
    aligned = sync_search(lips, lips.clone())
    assert aligned.offset == 0 and aligned.min_distance == pytest.approx(4e-6, abs=1e-6)
    assert aligned.confidence > 4 and aligned.distances.shape == (2 * MAX_OFFSET + 1,)
    for lag in (3, -5):
        audio = torch.roll(lips, lag, dims=0)         # audio window i + lag holds lip window i's content
        assert sync_search(lips, audio).offset == -lag
    with pytest.raises(ValueError, match="equal non-empty"):
        sync_search(lips, lips[:10])


class LoudnessNet(nn.Module):
    """Hand-made embeddings: mean brightness of each clip frame vs log energy of its 4 MFCC steps, both
    standardised. They agree only when the windows line up, so the search must recover the true lag."""

    def __init__(self):
        super().__init__()
        self.unit = nn.Parameter(torch.ones(()))

    @staticmethod
    def _standardise(x):
        return (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-3)

    def embed_lips(self, clips):
        return self._standardise(clips.mean(dim=(1, 3, 4))) * self.unit

    def embed_audio(self, cepstra):
        return self._standardise(cepstra[:, 0, 0].reshape(len(cepstra), 5, 4).mean(2)) * self.unit


def loudness_clip(lag: int, frames: int = 80, fps: float = 25.0, seed: int = 0):
    """Frames whose brightness follows a random on/off pattern; audio loudness follows it ``lag`` frames later."""
    pattern = np.random.default_rng(seed).integers(0, 2, frames + abs(lag))
    video = np.stack([np.full((224, 224, 3), 40 + 170 * pattern[t + max(0, lag)], np.uint8) for t in range(frames)])
    per_frame = int(16000 / fps)
    noise = np.random.default_rng(seed + 1).normal(size=frames * per_frame) * 0.01
    gain = np.repeat(0.05 + 3.0 * pattern[np.arange(frames) + max(0, lag) - lag], per_frame)
    return video, noise * gain


@pytest.mark.parametrize("lag", [0, 2, -3])
def test_end_to_end_alignment_recovers_a_known_lag(lag):
    video, wave = loudness_clip(lag)
    score = score_frames(LoudnessNet(), video, mfcc_module.pcm16_scale(wave), fps=25.0, crop=False)
    assert score.offset == -lag and score.confidence > 0.5 and score.windows == 75


def test_end_to_end_at_30_fps_is_resampled_to_25():
    lag, fps = 2, 30.0
    pattern = np.random.default_rng(3).integers(0, 2, 40).repeat(6)          # 0.2 s steps at 30 fps
    video = np.stack([np.full((224, 224, 3), 40 + 170 * p, np.uint8) for p in pattern])
    audio_pattern = np.roll(pattern[::6].repeat(5), lag)                      # the same steps at 25 fps, late
    wave = np.random.default_rng(4).normal(size=len(audio_pattern) * 640) * 0.01
    wave *= np.repeat(0.05 + 3.0 * audio_pattern, 640)
    score = score_frames(LoudnessNet(), video, mfcc_module.pcm16_scale(wave), fps=fps, crop=False)
    assert score.windows == 195 and score.offset == -lag


def test_score_crops_checks_lengths(tiny_net):
    with pytest.raises(ValueError, match=r"crops must be \[T, 224, 224, 3\]"):
        score_crops(tiny_net, np.zeros((10, 64, 64, 3), np.uint8), np.zeros(16000))
    with pytest.raises(ValueError, match="more than 5 frames with audio"):
        score_crops(tiny_net, np.zeros((10, 224, 224, 3), np.uint8), np.zeros(2000))


# ----------------------------------------------------------------------------------------------- real video
def test_real_video_with_mediapipe_crops(data_dir, tiny_net):
    seen = []
    score = score_video(tiny_net, data_dir / "video" / "may_5s.mp4", models_dir=data_dir / "models",
                        progress=lambda done, total: seen.append((done, total)))
    assert score.windows == 120 and -MAX_OFFSET <= score.offset <= MAX_OFFSET
    assert np.isfinite(score.distances).all() and score.confidence >= 0 and score.min_distance > 0
    assert seen[-1] == (120, 120) and len(seen) == 6
    rows = score.rows()
    assert [r.name for r in rows] == ["Sync", "Sync-D", "Sync offset"]
    assert rows[0].details["min_distance"] == score.min_distance and rows[2].value == score.offset


def test_syncnet_confidence_rows(tmp_path, data_dir, tiny_net):
    from moda_core.preprocess import load_audio
    from moda_core.preprocess.video import read_frames

    video = data_dir / "video" / "vr_woman_7s.mp4"                         # 30 fps
    frames = np.stack([rgb for _, _, rgb in read_frames(video, 30.0, max_seconds=2.0)])
    wave, rate = load_audio(video)
    skipped = syncnet_confidence(frames, wave, rate, fps=30.0)
    assert [r.skipped for r in skipped] == [NO_WEIGHTS_REASON] * 3
    path = tmp_path / "syncnet_v2.model"
    torch.save(tiny_net.state_dict(), path)
    rows = syncnet_confidence(torch.from_numpy(frames).float() / 255, torch.from_numpy(wave)[None, None], rate,
                              fps=30.0, weights_path=path, models_dir=data_dir / "models")
    assert [r.name for r in rows] == ["Sync", "Sync-D", "Sync offset"] and all(r.ok for r in rows)
    assert rows[0].details["windows"] == 45 and rows[0].details["crop"] == "mediapipe"
    with pytest.raises(ValueError, match="frame rate"):
        syncnet_confidence(frames, wave, rate, weights_path=path)
    with pytest.raises(ValueError, match="boxes must be"):
        syncnet_confidence(frames, wave, rate, fps=30.0, weights_path=path, boxes=np.zeros((3, 4)))
