"""Replaying a recorded VAE draw, and saving the condition images and frames as PNG (tiny random networks)."""
import numpy as np
import pytest
import torch
from PIL import Image

from moda_core.checkpoints import save_model
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.pipeline import AnimateOptions, MODAModels, condition_batches, predict_motion, render_stream
from moda_core.recorded_noise import NoiseFileError, RecordedNoise
from moda_core.smoothing import smooth_motion
from moda_core.subject import Subject

RATE = 16000


@pytest.fixture(scope="module")
def models() -> MODAModels:
    torch.manual_seed(1)
    return MODAModels(MODANet(MODAConfig.tiny()).eval(), FaCoNet(FaCoConfig.tiny()).eval(),
                      RenderGenerator(RendererConfig.tiny()).eval())


@pytest.fixture(scope="module")
def subject(parity_dir) -> Subject:
    from safetensors import safe_open

    folder = parity_dir / "pipeline"
    with safe_open(str(folder / "pipeline_cathy.safetensors"), framework="pt") as handle:
        means = {k: handle.get_tensor(f"subject.{k}").clone() for k in ("templete", "headmotion", "shoulder")}
    image = np.array(Image.open(folder / "cathy_reference.png").convert("RGB"))
    return Subject(reference_image=image, template=means["templete"], mean_head_pose=means["headmotion"],
                   mean_torso=means["shoulder"], means_float64=True, name="cathy")


@pytest.fixture(scope="module")
def speech(data_dir):
    from moda_core.preprocess import load_audio
    wave, _ = load_audio(data_dir / "audio" / "en_hdtf_radio31.wav")
    return wave


def seeded_draws(seed: int, window_frames: list[int], latent: int) -> list[torch.Tensor]:
    """What a generator seeded with ``seed`` draws, window after window: [1, frames, latent] each."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((1, frames, latent), generator=generator) for frames in window_frames]


def test_replay_equals_the_seeded_run(models, subject, speech, tmp_path):
    """Several windows (1 s windows every 0.5 s here, to stay fast; 20 s / 10 s in use): window after window
    the recorded draw replaces exactly what the seeded generator would have drawn."""
    from moda_core.models.audio_encoder import normalise_waveform
    from moda_core.models.moda import generate_motion

    latent = models.moda.config.hidden_size
    inputs = normalise_waveform(torch.from_numpy(speech[: int(1.9 * RATE)]))   # windows of 30, 30 and 27 frames
    style = subject.style_vector()
    windows = dict(window_seconds=1.0, hop_seconds=0.5)
    seeded = generate_motion(models.moda, inputs, style, generator=torch.Generator().manual_seed(5), **windows)
    noise = RecordedNoise(tuple(seeded_draws(5, [30, 30, 27], latent)), source="three.safetensors")
    replayed = generate_motion(models.moda, inputs, style, noise_fn=noise.window_noise(0), **windows)
    for track in ("lip", "eye", "head", "torso"):
        assert torch.equal(getattr(replayed, track), getattr(seeded, track)), track
    shifted = RecordedNoise((noise.windows[0], noise.windows[1], -noise.windows[2]))
    changed = generate_motion(models.moda, inputs, style, noise_fn=shifted.window_noise(0), **windows)
    assert torch.equal(changed.head[:30], seeded.head[:30]) and not torch.equal(changed.head[30:], seeded.head[30:])
    with pytest.raises(NoiseFileError, match="three.safetensors: holds 2 window"):
        generate_motion(models.moda, inputs, style, noise_fn=RecordedNoise(noise.windows[:2], "three.safetensors")
                        .window_noise(0), **windows)

    # through predict_motion (one window here), two samples, from a file: sample i replays seed 5 + i
    wave = speech[: RATE // 2]                                                  # 15 frames
    seeded = predict_motion(models.moda, wave, subject, seed=5, num_samples=2)
    draws = torch.cat([seeded_draws(seed, [15], latent)[0] for seed in (5, 6)])
    path = RecordedNoise((draws,)).save(tmp_path / "noise.safetensors")
    replayed = predict_motion(models.moda, wave, subject, seed=999, num_samples=2, noise=path)
    for track in ("mouth", "eyes", "head_pose", "torso"):
        assert torch.equal(getattr(replayed, track), getattr(seeded, track)), track
    assert replayed.meta["noise"] == "noise.safetensors"
    swapped = predict_motion(models.moda, wave, subject, num_samples=2, noise=[draws.flip(0)])
    assert torch.equal(swapped.mouth[1], seeded.mouth[0]) and torch.equal(swapped.head_pose[0], seeded.head_pose[1])
    assert not torch.equal(swapped.head_pose[0], seeded.head_pose[0])        # the replayed draw is what counts


def test_noise_that_does_not_match_the_audio_is_refused(models, subject, speech, tmp_path):
    latent = models.moda.config.hidden_size
    wave = speech[: int(2.5 * RATE)]                                            # one window of 75 frames
    right = seeded_draws(0, [75], latent)[0]
    cases = {"short.safetensors": ([right[:, :74]], r"of \[74\] frames, but this audio has 1 window\(s\) of \[75\]"),
             "two.safetensors": ([right, right], "holds 2 window"),
             "samples.safetensors": ([right.expand(2, -1, -1)], "holds 2 sample"),
             "latent.safetensors": ([right[..., :16]], "latent size 16")}
    for name, (windows, message) in cases.items():
        path = RecordedNoise(tuple(windows)).save(tmp_path / name)
        with pytest.raises(NoiseFileError, match=message) as err:
            predict_motion(models.moda, wave, subject, noise=path)
        assert name in str(err.value)


def test_noise_file_errors(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(NoiseFileError, match="not found"):
        RecordedNoise.load(tmp_path / "missing.safetensors")
    save_file({"noise.1": torch.zeros(1, 4, 8)}, tmp_path / "gap.safetensors")
    with pytest.raises(NoiseFileError, match=r"noise.0 .. noise.0.*'noise.1'"):
        RecordedNoise.load(tmp_path / "gap.safetensors")
    save_file({"noise.0": torch.zeros(4, 8)}, tmp_path / "flat.safetensors")
    with pytest.raises(NoiseFileError, match=r"\[samples, frames, latent\]"):
        RecordedNoise.load(tmp_path / "flat.safetensors")
    save_file({"noise.0": torch.zeros(1, 4, 8), "noise.1": torch.zeros(2, 4, 8)}, tmp_path / "mixed.safetensors")
    with pytest.raises(NoiseFileError, match="samples and latent size must agree"):
        RecordedNoise.load(tmp_path / "mixed.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(NoiseFileError, match="cannot read noise file"):
        RecordedNoise.load(tmp_path / "junk.safetensors")


def test_render_stream_hook_and_png_stages(models, subject, speech, tmp_path):
    from moda_core.frame_files import StageSaver

    r = predict_motion(models.moda, speech[: RATE // 5], subject, seed=2)      # 6 frames
    options = AnimateOptions(batch_size=4)
    saver = StageSaver(tmp_path / "cond", tmp_path / "frames")
    frames = torch.cat(list(render_stream(models, r, subject, options, on_batch=saver)))
    conditions = torch.cat([c for _, c in condition_batches(r, subject, batch_size=4, size=frames.shape[1])])
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"{i:06d}.png" for i in range(r.num_frames)] == sorted(p.name for p in
                                                                          (tmp_path / "cond").iterdir())
    for index in (0, 4, r.num_frames - 1):
        saved = np.array(Image.open(tmp_path / "frames" / f"{index:06d}.png"))
        assert np.array_equal(saved, (frames[index] * 255).round().to(torch.uint8).numpy())
        condition = np.array(Image.open(tmp_path / "cond" / f"{index:06d}.png"))
        assert np.array_equal(condition.astype(np.float32) / 255, conditions[index].numpy())     # lossless
    truncated = StageSaver(frames_dir=tmp_path / "trunc", quantize="truncate")
    truncated(0, conditions[:1], frames[:1])
    assert np.array_equal(np.array(Image.open(tmp_path / "trunc" / "000000.png")),
                          (frames[0] * 255).to(torch.uint8).numpy())


def test_cli_noise_and_saved_stages(models, subject, speech, tmp_path, capsys):
    from scipy.io import wavfile

    from moda_core.cli import main
    from moda_core.video import read_video_info

    weights = tmp_path / "weights"
    weights.mkdir()
    for kind in ("moda", "faco", "renderer"):
        save_model(getattr(models, kind), weights / f"{kind}.safetensors")
    subject.save(tmp_path / "subject.safetensors")
    wavfile.write(tmp_path / "speech.wav", RATE, speech[: RATE // 5])          # 6 frames
    noise = RecordedNoise((torch.randn(2, 6, models.moda.config.hidden_size),))
    noise.save(tmp_path / "noise.safetensors")
    common = ["--subject", str(tmp_path / "subject.safetensors"), "--audio", str(tmp_path / "speech.wav"),
              "--weights", str(weights), "--output-size", "0"]
    code = main(["animate", *common, "--out", str(tmp_path / "a.mp4"), "--noise", str(tmp_path / "noise.safetensors"),
                 "--sample", "1", "--save-repr", str(tmp_path / "r.safetensors"),
                 "--save-condition", str(tmp_path / "cond"), "--save-frames", str(tmp_path / "frames")])
    assert code == 0 and read_video_info(tmp_path / "a.mp4")["frames"] == 6
    assert len(list((tmp_path / "frames").glob("*.png"))) == len(list((tmp_path / "cond").glob("*.png"))) == 6
    from moda_core.repr import TalkingRepr
    saved = TalkingRepr.load(tmp_path / "r.safetensors")
    expected = predict_motion(models.moda, speech[: RATE // 5], subject, num_samples=2, noise=noise)
    assert saved.num_samples == 2 and torch.equal(saved.head_pose[:, :, 6], expected.head_pose[:, :, 6])

    # --save-noise writes the seeded draw; replaying it gives the same motion
    code = main(["animate", *common, "--out", str(tmp_path / "s.mp4"), "--seed", "4", "--samples", "2",
                 "--save-noise", str(tmp_path / "drawn.safetensors"), "--save-repr", str(tmp_path / "s.npz")])
    drawn = RecordedNoise.load(tmp_path / "drawn.safetensors")
    assert code == 0 and drawn.window_frames() == [6] and drawn.num_samples == 2
    seeded = smooth_motion(predict_motion(models.moda, speech[: RATE // 5], subject, seed=4, num_samples=2))
    assert torch.equal(TalkingRepr.load(tmp_path / "s.npz").mouth, seeded.mouth)
    assert torch.equal(drawn.windows[0], torch.cat(RecordedNoise.from_seed(4, [6], 2, drawn.latent_size).windows))

    short = RecordedNoise((torch.randn(2, 5, models.moda.config.hidden_size),))
    short.save(tmp_path / "short.safetensors")
    code = main(["animate", *common, "--out", str(tmp_path / "b.mp4"), "--noise", str(tmp_path / "short.safetensors"),
                 "--save-frames", str(tmp_path / "b_frames")])
    err = capsys.readouterr().err
    assert code == 2 and "short.safetensors" in err and "[5] frames" in err
    assert not (tmp_path / "b.mp4").exists() and not list((tmp_path / "b_frames").iterdir())


def test_condition_and_frames_in_one_folder_is_refused(tmp_path, capsys):
    from moda_core.cli import main
    from moda_core.frame_files import StageSaver

    with pytest.raises(ValueError, match="would overwrite each other"):
        StageSaver(tmp_path / "stages", tmp_path / "stages" / ".." / "stages")
    for name in ("subject.safetensors", "speech.wav"):
        (tmp_path / name).write_bytes(b"not read: the arguments are checked first")
    code = main(["animate", "--subject", str(tmp_path / "subject.safetensors"), "--audio", str(tmp_path / "speech.wav"),
                 "--out", str(tmp_path / "a.mp4"), "--save-condition", str(tmp_path / "stages"),
                 "--save-frames", str(tmp_path / "stages")])
    assert code == 2 and "--save-condition and --save-frames both name" in capsys.readouterr().err
    assert not (tmp_path / "stages").exists() and not (tmp_path / "a.mp4").exists()
