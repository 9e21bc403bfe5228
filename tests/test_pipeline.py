"""End-to-end animation on tiny random networks with real shared inputs."""
import numpy as np
import pytest
import torch

from moda_core.checkpoints import save_model
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.pipeline import (AnimateOptions, MODAModels, WeightsNotFoundError, animate, predict_motion,
                                render_stream)
from moda_core.video import read_video_info


@pytest.fixture(scope="module")
def models() -> MODAModels:
    torch.manual_seed(0)
    return MODAModels(MODANet(MODAConfig.tiny()).eval(), FaCoNet(FaCoConfig.tiny()).eval(),
                      RenderGenerator(RendererConfig.tiny()).eval())


@pytest.fixture(scope="module")
def subject(data_dir):
    from moda_core.preprocess import subject_from_photo
    subject, _ = subject_from_photo(data_dir / "portraits" / "obama.jpg", models_dir=data_dir / "models")
    return subject


@pytest.fixture(scope="module")
def speech(data_dir):
    from moda_core.preprocess import load_audio
    wave, rate = load_audio(data_dir / "audio" / "en_hdtf_radio31.wav")
    assert rate == 16000
    return wave[: int(2.5 * rate)]


def test_photo_and_speech_to_mp4(models, subject, speech, tmp_path):
    out = tmp_path / "talk.mp4"
    result = animate(models, speech, subject, out, AnimateOptions(output_size=512, seed=3))
    info = read_video_info(out)
    expected = 2.5 * 30
    assert abs(info["frames"] - expected) <= 1 and result.frames == info["frames"]
    assert (info["width"], info["height"]) == (512, 512) and info["fps"] == pytest.approx(30.0)
    assert info["audio_seconds"] == pytest.approx(2.5, abs=0.15)      # AAC pads its last packet
    assert result.repr.face is not None and result.repr.is_offset
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]


def test_seeds_reproduce_and_diversify(models, subject, speech):
    options = AnimateOptions(smoothing=False)
    first = predict_motion(models.moda, speech, subject, seed=11, num_samples=2)
    again = predict_motion(models.moda, speech, subject, seed=11, num_samples=2)
    other = predict_motion(models.moda, speech, subject, seed=12, num_samples=1)
    assert torch.equal(first.head_pose, again.head_pose) and torch.equal(first.mouth, again.mouth)
    assert not torch.allclose(first.head_pose[0], first.head_pose[1])           # two samples differ
    assert torch.equal(other.head_pose[0], first.head_pose[1])                   # seed 12 == sample 1 of seed 11
    frames_a = torch.cat(list(render_stream(models, first, subject, options)))
    frames_b = torch.cat(list(render_stream(models, again, subject, options)))
    assert torch.equal(frames_a, frames_b)


def test_noise_only_reaches_the_probabilistic_branch(models, subject, speech):
    """The specific (short) branch is deterministic; the seed changes only the VAE branch's half."""
    from moda_core.models.audio_encoder import frames_for_samples, normalise_waveform
    wave = torch.from_numpy(speech)
    frames = frames_for_samples(wave.numel(), 30)
    with torch.no_grad():
        feats = models.moda.encode_audio(normalise_waveform(wave)[None], frames)
        style = subject.style_vector()[None]
        a = models.moda(feats, style, generator=torch.Generator().manual_seed(1))
        b = models.moda(feats, style, generator=torch.Generator().manual_seed(2))
    hidden = models.moda.config.hidden_size
    assert torch.equal(a.temporal_feature[..., :hidden], b.temporal_feature[..., :hidden])
    assert not torch.allclose(a.temporal_feature[..., hidden:], b.temporal_feature[..., hidden:])


def test_paste_back_has_source_size(models, subject, speech, tmp_path):
    options = AnimateOptions(paste_back=True, batch_size=4)
    r = predict_motion(models.moda, speech[:8000], subject)
    frames = next(iter(render_stream(models, r.replace(face=None), subject, options)))
    width, height = subject.source_size
    assert frames.shape[1:] == (height, width, 3)
    # far from the face the photo is untouched
    source = subject.source_image.float() / 255
    assert torch.allclose(frames[0, -5:, :5], source[-5:, :5], atol=1e-6)


def test_debug_layout_and_silence(models, subject, tmp_path):
    silent = np.zeros(16000, np.float32)
    result = animate(models, silent, subject, tmp_path / "debug.mp4", AnimateOptions(layout="debug"))
    info = read_video_info(tmp_path / "debug.mp4")
    size = models.render_size
    assert (info["width"], info["height"]) == (3 * size, size)
    assert result.frames == 30            # exact count; the authors' float64 int(16000 / (16000 / 30)) is 29
    authors = animate(models, silent, subject, None, AnimateOptions(frame_count="authors"))
    assert authors.frames == 29


def test_too_short_audio_and_bad_output(models, subject, tmp_path):
    with pytest.raises(ValueError, match="shorter than one frame"):
        animate(models, np.zeros(100, np.float32), subject, tmp_path / "x.mp4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        animate(models, np.zeros(16000, np.float32), subject, tmp_path / "missing" / "x.mp4")


def test_interrupted_run_leaves_no_partial_file(models, subject, speech, tmp_path):
    def interrupt(stage, done, total):
        if stage == "render" and done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animate(models, speech, subject, tmp_path / "cut.mp4", AnimateOptions(batch_size=4), progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_missing_weights_message(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        MODAModels.load(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "moda.safetensors") in message and "moda convert" in message


def test_cli_animate_and_render(models, subject, speech, tmp_path, data_dir):
    from scipy.io import wavfile

    from moda_core.cli import main
    weights = tmp_path / "weights"
    weights.mkdir()
    for kind in ("moda", "faco", "renderer"):
        save_model(getattr(models, kind), weights / f"{kind}.safetensors")
    subject.save(tmp_path / "subject.safetensors")
    wavfile.write(tmp_path / "speech.wav", 16000, speech[:16000])
    code = main(["animate", "--subject", str(tmp_path / "subject.safetensors"), "--audio", str(tmp_path / "speech.wav"),
                 "--weights", str(weights), "--out", str(tmp_path / "a.mp4"), "--save-repr", str(tmp_path / "r.npz"),
                 "--samples", "2", "--sample", "1"])
    assert code == 0 and read_video_info(tmp_path / "a.mp4")["frames"] == 30   # 1 s at 30 fps
    code = main(["render", "--repr", str(tmp_path / "r.npz"), "--subject", str(tmp_path / "subject.safetensors"),
                 "--weights", str(weights), "--out", str(tmp_path / "b.mp4"), "--sample", "1"])
    assert code == 0 and read_video_info(tmp_path / "b.mp4")["audio_seconds"] is None
    assert main(["animate", "--subject", str(tmp_path / "subject.safetensors"), "--audio",
                 str(tmp_path / "speech.wav"), "--weights", str(tmp_path), "--out", str(tmp_path / "c.mp4")]) == 2


def test_motion_progress_reports_every_window_and_can_stop(models, subject):
    long_audio = np.random.default_rng(0).standard_normal(16000 * 25).astype(np.float32) * 0.1   # 2 windows
    events = []
    predict_motion(models.moda, long_audio, subject, num_samples=2, progress=lambda *e: events.append(e))
    assert events == [("motion", 1, 4), ("motion", 2, 4), ("motion", 3, 4), ("motion", 4, 4)]

    def cancel(stage, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_motion(models.moda, long_audio, subject, progress=cancel)
