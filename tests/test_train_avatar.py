"""train_avatar / `moda train avatar`: files and report, reproducible weights, stop-and-resume, --init, errors."""
from __future__ import annotations

import errno
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from moda_core.checkpoints import save_model
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.renderer import RendererConfig, RenderGenerator
from moda_core.render_settings import METADATA_KEY, RenderSettings
from moda_core.subject import Subject
from moda_core.tpe import TPEConfig
from moda_core.train.avatar import AvatarConfig, AvatarError, AvatarInterrupted, train_avatar
from moda_core.train.datasets import load_sample, neutral_frame, read_frame
from test_preprocess_video import _write_clip
from test_train_common import _seeded, sample_dir  # noqa: F401  (fixtures)

STEPS = 4
TINY = AvatarConfig(steps=STEPS, preset="tiny", batch_size=2, preview_every=2, perceptual=False, checkpoint_every=2,
                    device="cpu")
REPORT_KEYS = {"steps", "psnr", "ssim", "sharpness", "stopped_by", "seed", "init", "preset", "image_size", "seconds",
               "curve", "perceptual"}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "renderer.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference_run(sample_dir, tmp_path_factory):
    """One uninterrupted tiny run of STEPS steps, with what its callbacks received."""
    out = tmp_path_factory.mktemp("avatar") / "may"
    steps, previews = [], []
    result = train_avatar(sample_dir, out, TINY, progress=lambda step, total, losses: steps.append((step, total,
                                                                                                   dict(losses))),
                          on_preview=lambda step, image: previews.append((step, image)), log=lambda line: None)
    return result, steps, previews


def test_library_writes_the_files_and_a_report(reference_run, sample_dir):
    result, steps, previews = reference_run
    out = result.out_dir
    for name in ("renderer.safetensors", "subject.safetensors", "preview.png", "report.json", "report.md"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert (report["steps"], report["stopped_by"], report["preset"], report["image_size"]) == (STEPS, "steps",
                                                                                                "tiny", 64)
    assert report["init"] is None and report["perceptual"] is False and report["held_out_frames"] == 18
    assert all(math.isfinite(report[k]) for k in ("psnr", "ssim", "sharpness", "seconds"))
    assert 5.0 < report["psnr"] < 60.0 and 0.0 < report["ssim"] <= 1.0 and report["sharpness"] > 0.0
    assert [p["step"] for p in report["curve"]] == [2, 4]
    assert all(math.isfinite(p["psnr"]) and "g" in p for p in report["curve"])
    assert [s[:2] for s in steps] == [(k, STEPS) for k in range(1, STEPS + 1)]
    assert {"g", "color", "mouth", "gan", "fm", "d"} <= set(steps[0][2])
    assert [p[0] for p in previews] == [2, 4]
    assert previews[-1][1].shape == (64, 128, 3) and previews[-1][1].dtype == np.uint8
    png = cv2.cvtColor(cv2.imread(str(out / "preview.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, previews[-1][1])                   # ground truth | render of a held-out frame
    settings = RenderSettings.of_weight_file(out / "renderer.safetensors")
    assert settings.tpe == TPEConfig() and settings.face_center == (256.0, 232.0, 128.0)
    # the subject keeps the clip's template and pose; its reference crop is the most neutral training frame
    saved, prepared = Subject.load(out / "subject.safetensors"), Subject.load(sample_dir / "subject.safetensors")
    assert torch.equal(saved.template, prepared.template) and torch.equal(saved.mean_head_pose, prepared.mean_head_pose)
    index = report["reference_frame"]
    assert 0 <= index < 72 and index == neutral_frame(load_sample(sample_dir).repr, range(0, 72))
    assert np.array_equal(saved.reference_image.numpy(), read_frame(load_sample(sample_dir), index, 512).numpy())
    assert "PSNR" in (out / "report.md").read_text()


def test_same_seed_and_steps_give_identical_weights(reference_run, sample_dir, tmp_path):
    again = train_avatar(sample_dir, tmp_path / "again", TINY, log=lambda line: None)
    assert _same(_weights(again.out_dir), _weights(reference_run[0].out_dir))
    from moda_core.train.avatar import _starting_renderer

    seeds = [_starting_renderer(replace(TINY, seed=seed))[0].state_dict() for seed in (0, 0, 1)]
    assert _same(seeds[0], seeds[1]) and not _same(seeds[0], seeds[2])


def test_stop_then_resume_equals_an_uninterrupted_run(reference_run, sample_dir, tmp_path):
    out = tmp_path / "stopped"
    seen = []

    def stop_after_one() -> bool:
        seen.append(1)
        return len(seen) == 1                                      # polled after step 1

    with pytest.raises(AvatarInterrupted, match="same output folder"):
        train_avatar(sample_dir, out, TINY, should_stop=stop_after_one, log=lambda line: None)
    state = torch.load(out / "train" / "runs" / "renderer" / "last" / "state.pt", weights_only=True)
    assert (state["step"], state["epoch_step"]) == (1, 1)         # inside the first epoch (36 steps)
    assert not (out / "report.json").exists() and not (out / "renderer.safetensors").exists()
    logs = []
    resumed = train_avatar(sample_dir, out, TINY, log=logs.append)
    assert any("resuming at step 1" in line for line in logs)
    assert resumed.steps == STEPS
    assert _same(_weights(out), _weights(reference_run[0].out_dir))
    assert [p["step"] for p in resumed.report["curve"]] == [2, 4]
    again = train_avatar(sample_dir, out, TINY, log=lambda line: None)         # budget reached: nothing to do
    assert again.steps == STEPS and _same(_weights(out), _weights(reference_run[0].out_dir))
    with pytest.raises(AvatarError, match="seed 0 -> 3"):
        train_avatar(sample_dir, out, replace(TINY, seed=3), log=lambda line: None)


def test_init_starts_from_the_given_renderer(sample_dir, tmp_path):
    torch.manual_seed(7)
    start = tmp_path / "start.safetensors"
    save_model(RenderGenerator(RendererConfig.tiny()), start,
               extra_metadata={METADATA_KEY: RenderSettings(tpe=TPEConfig(offset=1000.0)).to_json()})
    from moda_core.train.avatar import _starting_renderer

    generator, tpe = _starting_renderer(replace(TINY, init=start))
    assert _same(generator.state_dict(), load_file(str(start))) and tpe.offset == 1000.0   # weights at step 0
    logs = []
    result = train_avatar(sample_dir, tmp_path / "tuned", replace(TINY, steps=1, init=start), log=logs.append)
    assert result.report["init"] == str(start) and result.report["lr"] == 1e-4
    assert any("face centre (256.0, 235.0, 128.0)" in line for line in logs)   # the file's; trained with 232
    assert RenderSettings.of_weight_file(result.renderer).face_center == (256.0, 232.0, 128.0)
    assert RenderSettings.of_weight_file(result.renderer).tpe.offset == 1000.0             # TPE carried over
    tuned = _weights(result.out_dir)
    assert not _same(tuned, load_file(str(start)))
    with pytest.raises(AvatarError, match=r"64 px \(preset 'tiny'\).*'small' trains 256 px"):
        train_avatar(sample_dir, tmp_path / "bad", replace(TINY, init=start, preset="small"), log=lambda line: None)
    paper = tmp_path / "paper.safetensors"
    save_model(RenderGenerator(replace(RendererConfig.tiny(), in_channels=18)), paper,
               extra_metadata={METADATA_KEY: RenderSettings(tpe=TPEConfig.paper()).to_json()})
    with pytest.raises(AvatarError, match="12-channel TPE"):
        train_avatar(sample_dir, tmp_path / "bad", replace(TINY, init=paper), log=lambda line: None)
    faco = tmp_path / "faco.safetensors"
    save_model(FaCoNet(FaCoConfig.tiny()), faco)
    with pytest.raises(AvatarError, match="not a renderer"):
        train_avatar(sample_dir, tmp_path / "bad", replace(TINY, init=faco), log=lambda line: None)
    assert not (tmp_path / "bad" / "renderer.safetensors").exists()


def test_held_out_frames_are_rendered_once_at_the_end(sample_dir, tmp_path, monkeypatch):
    import moda_core.train.avatar as avatar

    rendered, original = [], avatar._render_frames

    def counting(renderer, frames, indices):
        rendered.append(len(indices))
        return original(renderer, frames, indices)

    monkeypatch.setattr(avatar, "_render_frames", counting)
    previews = []
    result = train_avatar(sample_dir, tmp_path / "once", replace(TINY, steps=2, preview_every=1),
                          on_preview=lambda step, image: previews.append(step), log=lambda line: None)
    assert rendered == [16, 18]              # the step-1 preview; then all 18 held-out frames once (step 2 and scores)
    assert [p["step"] for p in result.report["curve"]] == [1, 2] and previews == [1, 2]


def test_teacher_distils_into_the_avatar(sample_dir, tmp_path):
    torch.manual_seed(11)
    teacher = tmp_path / "teacher.safetensors"
    save_model(RenderGenerator(RendererConfig.tiny()), teacher,
               extra_metadata={METADATA_KEY: RenderSettings(tpe=TPEConfig(offset=1000.0)).to_json()})
    one = replace(TINY, steps=1, preview_every=1)
    losses = []
    taught = train_avatar(sample_dir, tmp_path / "taught", replace(one, teacher=teacher),
                          progress=lambda step, total, terms: losses.append(dict(terms)), log=lambda line: None)
    plain = train_avatar(sample_dir, tmp_path / "plain", one, log=lambda line: None)
    assert (taught.report["teacher"], taught.report["distill_weight"]) == (str(teacher), 50.0)
    assert losses[0]["distill"] > 0 and "distilled from" in (taught.out_dir / "report.md").read_text()
    assert RenderSettings.of_weight_file(taught.renderer).tpe.offset == 1000.0     # scratch takes the teacher's TPE
    assert not _same(_weights(taught.out_dir), _weights(plain.out_dir))
    with pytest.raises(AvatarError, match=r"distill_weight 50.0 -> 10.0"):
        train_avatar(sample_dir, tmp_path / "taught", replace(one, teacher=teacher, distill_weight=10.0),
                     log=lambda line: None)
    small = tmp_path / "small.safetensors"
    save_model(RenderGenerator(RendererConfig(ngf=2, num_levels=6, image_size=128)), small)
    with pytest.raises(AvatarError, match=r"teacher renderer .* is 128 px with 19 input channels but preset 'tiny' "
                                          r"trains 64 px"):
        train_avatar(sample_dir, tmp_path / "bad", replace(one, teacher=small), log=lambda line: None)
    with pytest.raises(AvatarError, match="teacher renderer .* not found"):
        train_avatar(sample_dir, tmp_path / "bad", replace(one, teacher=tmp_path / "none.safetensors"),
                     log=lambda line: None)
    with pytest.raises(ValueError, match="needs a teacher renderer"):
        replace(one, distill_weight=10.0)


def test_cli_writes_the_files(sample_dir, tmp_path, capsys):
    from moda_core.cli import main

    out = tmp_path / "cli"
    code = main(["train", "avatar", str(sample_dir), "--out", str(out), "--steps", "2", "--preset", "tiny",
                 "--batch-size", "2", "--preview-every", "1", "--no-perceptual", "--seed", "5", "--device", "cpu",
                 "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert (report["steps"], report["seed"], [p["step"] for p in report["curve"]]) == (2, 5, [1, 2])
    assert all(math.isfinite(report[k]) for k in ("psnr", "ssim", "sharpness"))
    assert (out / "renderer.safetensors").is_file() and (out / "preview.png").is_file()
    assert "held-out PSNR" in capsys.readouterr().out
    code = main(["train", "avatar", str(sample_dir), "--out", str(tmp_path / "x"), "--init",
                 str(out / "renderer.safetensors"), "--preset", "full", "--no-progress", "--device", "cpu"])
    assert code == 2 and "preset 'full' trains 512 px" in capsys.readouterr().err
    code = main(["train", "avatar", str(sample_dir), "--out", str(tmp_path / "taught"), "--steps", "1", "--preset",
                 "tiny", "--batch-size", "2", "--no-perceptual", "--device", "cpu", "--no-progress", "--teacher",
                 str(out / "renderer.safetensors"), "--distill-weight", "20"])
    report = json.loads((tmp_path / "taught" / "report.json").read_text())
    assert code == 0 and (report["teacher"], report["distill_weight"]) == (str(out / "renderer.safetensors"), 20.0)
    code = main(["train", "avatar", str(sample_dir), "--out", str(tmp_path / "x"), "--distill-weight", "20",
                 "--no-progress"])
    assert code == 2 and "--distill-weight 20: needs --teacher" in capsys.readouterr().err


def test_video_source_reuses_its_prepared_sample(sample_dir, data_dir, tmp_path):
    out = tmp_path / "video"
    shutil.copytree(sample_dir, out / "sample")                  # as if an earlier run had prepared may_5s.mp4
    logs = []
    result = train_avatar(data_dir / "video" / "may_5s.mp4", out, replace(TINY, steps=1), log=logs.append)
    assert result.steps == 1 and any("reusing" in line for line in logs)
    with pytest.raises(AvatarError, match="prepared from may_5s.mp4, not vr_man_5s.mp4"):
        train_avatar(data_dir / "video" / "vr_man_5s.mp4", out, replace(TINY, steps=1), log=lambda line: None)


# ----------------------------------------------------------------------------------------------- bad videos
def _may_frames(data_dir: Path, count: int) -> list[np.ndarray]:
    from moda_core.preprocess import read_frames

    frames = []
    for _, _, rgb in read_frames(data_dir / "video" / "may_5s.mp4", 25.0):
        frames.append(rgb)
        if len(frames) == count:
            return frames
    return frames


@pytest.fixture()
def models(data_dir) -> AvatarConfig:
    return replace(TINY, models_dir=data_dir / "models")


def test_video_errors_are_clear_and_leave_nothing(data_dir, tmp_path, models):
    grey = [np.full((128, 128, 3), 128, np.uint8)] * 75
    cases = {
        "no audio track": _write_clip(tmp_path / "silent.mp4", grey, audio=False),
        "needs at least 2 s": _write_clip(tmp_path / "short.mp4", grey[:25], audio=True),
        "no face found": _write_clip(tmp_path / "grey.mp4", grey, audio=True),
    }
    pairs = [cv2.resize(np.concatenate([f, f[:, ::-1]], axis=1), (512, 256)) for f in _may_frames(data_dir, 50)]
    cases["several faces"] = _write_clip(tmp_path / "two.mp4", pairs, audio=True)
    for message, video in cases.items():
        out = tmp_path / f"out_{video.stem}"
        with pytest.raises(AvatarError, match=message):
            train_avatar(video, out, models, log=lambda line: None)
        assert not (out / "sample").exists() and not (out / "renderer.safetensors").exists()


def test_a_five_second_clip_passes_the_checks(data_dir, models):
    from moda_core.train.avatar import _check_video

    _check_video(data_dir / "video" / "may_5s.mp4", models)             # no error: one face, sound, 5 s


def test_disk_full_keeps_the_last_good_checkpoint(reference_run, sample_dir, tmp_path, monkeypatch):
    import moda_core.train.loop as loop

    original = loop.save_model
    calls = []

    def full_disk_after_first_checkpoint(model, path, *args, **kwargs):
        calls.append(Path(path))
        if len(calls) > 2:                                            # renderer + discriminator of step 2 succeed
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(model, path, *args, **kwargs)

    monkeypatch.setattr(loop, "save_model", full_disk_after_first_checkpoint)
    out = tmp_path / "full"
    with pytest.raises(AvatarError, match=r"disk full .* \(step 2\) is kept"):
        train_avatar(sample_dir, out, TINY, log=lambda line: None)
    run = out / "train" / "runs" / "renderer"
    assert [p.name for p in run.iterdir()] == ["last"]                 # no half-written last.new
    assert torch.load(run / "last" / "state.pt", weights_only=True)["step"] == 2
    assert not (out / "renderer.safetensors").exists()
    monkeypatch.setattr(loop, "save_model", original)
    train_avatar(sample_dir, out, TINY, log=lambda line: None)          # space again: resumes from step 2
    assert _same(_weights(out), _weights(reference_run[0].out_dir))


def test_perceptual_term_uses_local_vgg19_weights_only(tmp_path, monkeypatch):
    from moda_core.train.avatar import VGG19_FILE, _perceptual
    from moda_core.train.losses import VGG19Features

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))          # an empty hub cache
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("no download"))
    loss, note = _perceptual(replace(TINY, perceptual=None, models_dir=tmp_path))
    assert loss is None and note.startswith("off (no vgg19")
    with pytest.raises(AvatarError, match="needs the VGG19 weights"):
        _perceptual(replace(TINY, perceptual=True, models_dir=tmp_path))
    torch.manual_seed(3)
    weights = {k: v for k, v in VGG19Features().state_dict().items()}
    torch.save({**weights, "classifier.0.weight": torch.zeros(1)}, tmp_path / VGG19_FILE)   # torchvision's layout
    loss, note = _perceptual(replace(TINY, perceptual=None, models_dir=tmp_path))
    assert note == f"on (VGG19 from {tmp_path / VGG19_FILE})"
    assert _same(loss.vgg.state_dict(), weights)
    fake, real = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(loss(fake, real)) > 0 and float(loss(real, real)) == 0.0
    assert _perceptual(replace(TINY, perceptual=None, models_dir=tmp_path))[0] is not None
    assert _perceptual(replace(TINY, perceptual=False, models_dir=tmp_path))[0] is None
