"""Your own avatar: a talking video (or a prepared sample folder) -> a renderer trained on that person.

:func:`train_avatar` prepares the clip (``out_dir/sample``), trains the renderer on the clip's first 80 % (from
scratch at a preset size, or fine-tuning a given renderer file) for a fixed number of optimiser steps, scores
it on the last 20 % (held out) and writes::

    out_dir/renderer.safetensors   the renderer after the last step (records its TPE and face centre)
    out_dir/subject.safetensors    the person (reference image, template, mean pose and torso)
    out_dir/preview.png            a held-out frame: ground truth | render
    out_dir/report.json            steps, psnr, ssim, sharpness, stopped_by, seed, init, preset, image_size,
                                   seconds, perceptual, curve (held-out PSNR/SSIM every ``preview_every`` steps) ...
    out_dir/report.md              the same as a short human summary
    out_dir/sample/                the prepared clip (when the source is a video)
    out_dir/train/                 the resumable run (runs/renderer/last/, losses.csv, avatar_run.json, curve.json)

Reproducible: the step budget alone decides the model. The same inputs, seed and steps give bit-identical
weights on the same kind of machine (device type and library versions), and stopping at step k (``should_stop``,
Ctrl-C, ``minutes``) then running again with the same ``out_dir`` resumes and ends with the same weights as one
uninterrupted run. ``minutes`` only stops early, and the report says so (``stopped_by = "minutes"``).

Choices (documented here once):

* Audio: the renderer does not use it, but a sample folder holds the clip's speech (for MODA fine-tuning and
  sync scores later), so a video without an audio track is refused with a clear message.
* Starting renderer (``init``): its own stored config is used; its image size must be the preset's (else one
  error naming both and the preset that fits), and its TPE layout must be the avatar's (the 13-channel authors'
  form). Its TPE settings (offset, scale) carry over; the face centre recorded in the result is the one the
  training conditions were drawn with (the sample's canonicalisation centre).
* The renderer trains with TPE jitter (:class:`.datasets.RenderFrames`) so audio longer than the clip works.
* Distillation (``teacher``): a trained renderer of the same person (e.g. a paper-size avatar) whose output the
  new renderer also learns, with weight ``distill_weight`` (default 50, the colour term's). The teacher must have
  the preset's image size and TPE layout; a scratch run takes the teacher's TPE settings (a fine-tune: the
  starting renderer's and the teacher's must agree).
* Perceptual (VGG19) term: ``perceptual=None`` uses it when the VGG19 weights are on this machine (``vgg19``,
  ``models_dir/vgg19-dcbb9e9d.pth`` or the torch hub cache); nothing is downloaded.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from moda_core.fileio import atomic_write
from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.tpe import TPEConfig
from moda_core.train.loop import TrainingCancelled, saved_step

HELD_OUT_FRACTION = 0.2
MIN_SECONDS = 2.0           # at 30 fps: 48 frames train, 12 are held out
TPE_JITTER = 9000           # frames (5 minutes at 30 fps), as the quickstart
CURVE_FRAMES = 16           # held-out frames (evenly spaced) scored at every preview
FACE_CHECK_FRAMES = 5       # frames looked at for several faces before preparing a video
VGG19_FILE = "vgg19-dcbb9e9d.pth"
RUN_KEYS = ("seed", "preset", "init", "batch_size", "lr", "perceptual", "fps", "teacher",
            "distill_weight")                                                    # what a resume must keep
DISTILL_WEIGHT = 50.0       # default weight of the L1 to the teacher's render (the colour term's)

ProgressCallback = Callable[[int, int, Mapping[str, float]], None]
PreviewCallback = Callable[[int, np.ndarray], None]


class AvatarError(ValueError):
    """A bad input or a failed write: the message says which and what to do."""


class AvatarInterrupted(TrainingCancelled):
    """``should_stop()`` returned True: the state is saved; ``train_avatar`` with the same ``out_dir`` resumes."""

    def __init__(self, step: int, out_dir: Path, message: str | None = None):
        super().__init__(message or f"avatar training stopped at step {step}; the state is saved in "
                         f"{out_dir / 'train'}: run it again with the same output folder to continue")
        self.step = step
        self.out_dir = out_dir


@dataclass(frozen=True)
class AvatarConfig:
    """What :func:`train_avatar` trains and for how long (module docstring)."""

    steps: int = 3000                 # optimiser steps in total (the budget; resuming counts earlier steps)
    init: Path | None = None          # renderer .safetensors to fine-tune from (any renderer file), else scratch
    preset: str = "full"              # renderer size: "full" (512, paper), "small" (256), "tiny" (64, tests)
    minutes: float | None = None      # optional cap: stops early and says so (report: stopped_by="minutes")
    seed: int = 0
    batch_size: int = 4
    preview_every: int = 100          # steps between previews and held-out scores (the curve)
    perceptual: bool | None = None    # VGG19 term; None: on when its weights are on this machine
    device: str = "auto"
    models_dir: Path | None = None    # MediaPipe models (default samples/models); also searched for VGG19
    lr: float | None = None           # Adam learning rate; None: 1e-3 from scratch, 1e-4 fine-tuning or warp-refine
    vgg19: Path | None = None         # VGG19 weights file (torchvision's vgg19-dcbb9e9d.pth)
    checkpoint_every: int = 500       # steps between resumable states (also saved on stop and at the end)
    fps: float = 30.0                 # frame rate a video is prepared at
    teacher: Path | None = None       # renderer .safetensors to distil from (same size and TPE layout)
    distill_weight: float | None = None   # L1 to the teacher's render; None: DISTILL_WEIGHT with a teacher

    def __post_init__(self):
        from moda_core.train.presets import PRESETS

        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0 (or None for no cap), got {self.minutes}")
        for name in ("batch_size", "preview_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.distill_weight is not None and (self.teacher is None or not self.distill_weight > 0):
            raise ValueError(f"distill_weight ({self.distill_weight}) needs a teacher renderer and must be > 0")

    @property
    def distillation(self) -> float:
        """The weight of the distillation term (0 without a teacher)."""
        if self.teacher is None:
            return 0.0
        return DISTILL_WEIGHT if self.distill_weight is None else float(self.distill_weight)


@dataclass
class AvatarResult:
    """The written files and the held-out scores (``report`` = the contents of report.json)."""

    out_dir: Path
    renderer: Path
    subject: Path
    preview: Path
    report: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.report["steps"]

    @property
    def stopped_by(self) -> str:
        return self.report["stopped_by"]


# ----------------------------------------------------------------------------------------------- the source
def _is_sample(path: Path) -> bool:
    return path.is_dir() and (path / "sample.json").is_file()


def _check_video(video: Path, config: AvatarConfig) -> None:
    """Before preparing: sound, length and exactly one face (a few frames looked at)."""
    from moda_core.preprocess import FaceLandmarks, probe_video, read_frames

    info = probe_video(video)
    if not info.has_audio:
        raise AvatarError(f"{video} has no audio track. The renderer does not need sound, but the avatar's sample "
                          "keeps the clip's speech (for lip-sync training and scores): use the original clip with "
                          "its sound")
    if info.duration < MIN_SECONDS:
        raise AvatarError(f"{video} is {info.duration:.2f} s long; an avatar needs at least {MIN_SECONDS:g} s of "
                          f"talking video (the last {HELD_OUT_FRACTION:.0%} is held out to score it), 5 s or more "
                          "for a usable result")
    wanted = set(np.linspace(0, max(info.num_frames - 1, 0), FACE_CHECK_FRAMES).round().astype(int).tolist())
    counts = []
    with FaceLandmarks(config.models_dir, video=False, max_faces=2) as landmarker:
        for _, source, rgb in read_frames(video, info.fps):
            if source in wanted:
                wanted.discard(source)
                counts.append(len(landmarker.detect(rgb)))
            if not wanted:
                break
    if counts and max(counts) == 0:
        raise AvatarError(f"no face found in {video} ({len(counts)} frames looked at); use a clip where one "
                          "person's face is visible")
    several = sum(c > 1 for c in counts)
    if several * 2 > len(counts):
        raise AvatarError(f"{video} shows several faces ({several} of {len(counts)} frames looked at); an avatar is "
                          "one person: crop the video to that person")


def _sample_folder(source: Path, out: Path, config: AvatarConfig, log: Callable[[str], None],
                   prepare_progress, should_stop) -> Path:
    """The prepared sample of ``source``: the folder itself, ``out/sample`` when already made, else prepared."""
    from moda_core.preprocess import prepare_video_sample

    if source.is_dir():
        if not _is_sample(source):
            raise AvatarError(f"{source} is a folder without sample.json; give a talking video or a folder made by "
                              "`moda prepare video`")
        return source
    if not source.is_file():
        raise AvatarError(f"{source} not found; give a talking video file or a prepared sample folder")
    sample_dir = out / "sample"
    if _is_sample(sample_dir):
        made_from = json.loads((sample_dir / "sample.json").read_text()).get("source", {}).get("file")
        if made_from != source.name:
            raise AvatarError(f"{sample_dir} was prepared from {made_from}, not {source.name}; use another output "
                              "folder for another video")
        log(f"avatar: reusing the prepared clip {sample_dir}")
        return sample_dir
    _check_video(source, config)

    def progress(stage: str, done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise AvatarInterrupted(0, out, f"avatar: stopped while preparing {source}; nothing was kept, run it "
                                            "again to start over")
        if prepare_progress is not None:
            prepare_progress(stage, done, total)

    tic = time.monotonic()
    summary = prepare_video_sample(source, sample_dir, fps=config.fps, models_dir=config.models_dir,
                                   progress=progress)
    log(f"avatar: prepared {summary.num_frames} frames at {summary.fps:g} fps from {source} in "
        f"{time.monotonic() - tic:.0f} s")
    return sample_dir


# ----------------------------------------------------------------------------------------------- the renderer
def _preset_name(image_size: int) -> str:
    from moda_core.train.presets import PRESETS, preset_config

    names = [p for p in PRESETS if preset_config("renderer", p).image_size == image_size]
    return f"preset {names[0]!r}" if names else "no preset (another size)"


def _starting_renderer(config: AvatarConfig, log: Callable[[str], None] = print):
    """(generator, TPE settings) from the preset (random, seeded) or the ``init`` file (checked)."""
    from moda_core.checkpoints import describe_checkpoint, load_model
    from moda_core.render_settings import RenderSettings
    from moda_core.train.presets import preset_config

    wanted = preset_config("renderer", config.preset)
    torch.manual_seed(config.seed)
    if config.init is None:
        from moda_core.checkpoints import build_model

        return build_model("renderer", wanted), TPEConfig()
    init = Path(config.init)
    if not init.is_file():
        raise AvatarError(f"starting renderer {init} not found")
    try:
        stored = describe_checkpoint(init)
    except (ValueError, OSError) as err:
        raise AvatarError(f"cannot read the starting renderer {init}: {err}") from None
    if stored.kind != "renderer":
        raise AvatarError(f"{init} holds a {stored.kind} network, not a renderer; give a renderer .safetensors")
    size = stored.config.image_size
    if size != wanted.image_size:
        raise AvatarError(f"the starting renderer {init} is {size} px ({_preset_name(size)}) but preset "
                          f"{config.preset!r} trains {wanted.image_size} px; pick the preset of that size or "
                          "another starting renderer")
    settings = RenderSettings.of_weight_file(init)
    expected = TPEConfig()
    file_channels = stored.config.in_channels - 6
    if (settings.tpe.form, settings.tpe.num_frequencies) != (expected.form, expected.num_frequencies) \
            or file_channels != expected.channels:
        raise AvatarError(f"the starting renderer {init} takes a {file_channels}-channel TPE ({settings.tpe.form} "
                          f"form, {settings.tpe.num_frequencies} frequencies); avatars use the "
                          f"{expected.channels}-channel {expected.form} form: start from scratch or from another "
                          "renderer")
    if tuple(settings.face_center) != tuple(CANONICALISATION_FACE_CENTER):
        log(f"avatar: {init} was made with face centre {tuple(settings.face_center)}; the fine-tuned renderer is "
            f"trained and recorded with the sample's {tuple(CANONICALISATION_FACE_CENTER)}")
    return load_model(init, kind="renderer").train(), settings.tpe


def _teacher_renderer(config: AvatarConfig, student, tpe: TPEConfig, log: Callable[[str], None]):
    """(teacher renderer or None, the TPE settings to train with): the ``teacher`` file loaded and checked."""
    from moda_core.checkpoints import load_model
    from moda_core.render_settings import RenderSettings

    if config.teacher is None:
        return None, tpe
    path = Path(config.teacher)
    if not path.is_file():
        raise AvatarError(f"teacher renderer {path} not found")
    try:
        teacher = load_model(path, kind="renderer")
        settings = RenderSettings.of_weight_file(path)
    except (ValueError, OSError) as err:
        raise AvatarError(f"cannot load the teacher renderer {path}: {err}") from None
    theirs, mine = teacher.config, student.config
    if (theirs.image_size, theirs.in_channels) != (mine.image_size, mine.in_channels):
        raise AvatarError(f"the teacher renderer {path} is {theirs.image_size} px with {theirs.in_channels} input "
                          f"channels but preset {config.preset!r} trains {mine.image_size} px with "
                          f"{mine.in_channels}; distil from a renderer of that size and TPE layout")
    expected = TPEConfig()
    if (settings.tpe.form, settings.tpe.num_frequencies) != (expected.form, expected.num_frequencies):
        raise AvatarError(f"the teacher renderer {path} takes a {settings.tpe.form}-form TPE with "
                          f"{settings.tpe.num_frequencies} frequencies; avatars use the {expected.form} form with "
                          f"{expected.num_frequencies}: distil from another renderer")
    if config.init is not None and settings.tpe != tpe:
        raise AvatarError(f"the teacher renderer {path} was trained with TPE {settings.tpe} but the starting "
                          f"renderer {config.init} with {tpe}; pick a teacher and a starting renderer that agree")
    if tuple(settings.face_center) != tuple(CANONICALISATION_FACE_CENTER):
        log(f"avatar: the teacher {path} was made with face centre {tuple(settings.face_center)}; it is given the "
            f"conditions drawn with the sample's {tuple(CANONICALISATION_FACE_CENTER)}")
    return teacher, settings.tpe


def find_vgg19(config: AvatarConfig) -> Path | None:
    """The VGG19 weights file on this machine (``config.vgg19``, ``models_dir``, the torch hub cache), or None."""
    candidates = [config.vgg19] if config.vgg19 is not None else []
    if config.models_dir is not None:
        candidates.append(Path(config.models_dir) / VGG19_FILE)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE)
    return next((Path(c) for c in candidates if Path(c).is_file()), None)


def _perceptual(config: AvatarConfig):
    """(PerceptualLoss or None, a sentence for the report)."""
    from moda_core.train.losses import PerceptualLoss

    if config.perceptual is False:
        return None, "off (perceptual=False)"
    path = find_vgg19(config)
    if path is None:
        if config.perceptual:
            raise AvatarError(f"the perceptual term needs the VGG19 weights ({VGG19_FILE}): put the file in "
                              f"{Path(torch.hub.get_dir()) / 'checkpoints'} or the models folder, or pass its path "
                              "(vgg19 / --vgg19); or turn the term off")
        return None, f"off (no {VGG19_FILE} on this machine)"
    try:
        return PerceptualLoss.from_file(path), f"on (VGG19 from {path})"
    except (OSError, RuntimeError, ValueError) as err:
        raise AvatarError(f"cannot load the VGG19 weights {path}: {err}") from None


# ----------------------------------------------------------------------------------------------- scoring
@torch.no_grad()
def _render_frames(renderer, frames, indices) -> tuple[np.ndarray, np.ndarray]:
    """Renders and real frames (float [N, S, S, 3] in 0..1) of the items ``indices`` of ``frames``."""
    from moda_core.models.renderer import render

    was_training = renderer.training
    renderer.eval()
    renders, reals = [], []
    device = next(renderer.parameters()).device
    for first in range(0, len(indices), 8):
        items = [frames[i] for i in indices[first:first + 8]]
        x = torch.stack([item["input"] for item in items]).to(device)
        renders.append(((render(renderer, x).clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 1).float().cpu())
        reals.append(((torch.stack([item["target"] for item in items]) + 1.0) / 2.0).permute(0, 2, 3, 1))
    renderer.train(was_training)
    return torch.cat(renders).numpy(), torch.cat(reals).numpy()


def _preview_image(render: np.ndarray, real: np.ndarray) -> np.ndarray:
    """uint8 [S, 2S, 3]: ground truth | render."""
    return (np.concatenate([real, render], axis=1) * 255.0).round().clip(0, 255).astype(np.uint8)


def _held_out_scores(renders: np.ndarray, reals: np.ndarray, frames, sample) -> dict[str, float]:
    """PSNR, SSIM and sharpness ratio (face region) of every held-out frame (``renders``, ``reals``: all items of
    ``frames``, as :func:`_render_frames` gives them)."""
    from moda_core.metrics import psnr, ssim
    from moda_core.metrics.sharpness import sharpness_ratio
    from moda_core.projection import project_repr

    held = frames.frames
    truth = sample.repr.slice_time(held.start, held.stop)
    points = project_repr(truth, sample.subject, face_center="canonical")[0][..., :2].numpy()
    sharp = sharpness_ratio(renders, reals, reference_points=points)
    return {"psnr": psnr(renders, reals), "ssim": ssim(renders, reals), "sharpness": sharp.value,
            "sharpness_median": sharp.details["median"]}


# ----------------------------------------------------------------------------------------------- files
def _write_json(path: Path, data) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=1)))


def write_png(path: Path, image: np.ndarray) -> None:
    """An RGB uint8 image as a PNG, atomically."""
    def write(tmp: str) -> None:
        if not cv2.imwrite(tmp, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(errno.EIO, f"cannot write {path}")
    atomic_write(path, write)


def _copy(source: Path, path: Path) -> None:
    atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))


def _check_run(train_dir: Path, run: dict) -> None:
    """A resumed run must have been started with the same settings (else its steps mean something else)."""
    path = train_dir / "avatar_run.json"
    if path.is_file() and (train_dir / "runs" / "renderer").exists():
        before = json.loads(path.read_text())
        changed = [k for k in RUN_KEYS if before.get(k) != run.get(k)]
        if changed:
            what = ", ".join(f"{k} {before.get(k)!r} -> {run.get(k)!r}" for k in changed)
            raise AvatarError(f"{train_dir.parent} holds an avatar run with other settings ({what}); run again with "
                              "the same settings to continue it, or use another output folder")
    _write_json(path, run)


def _markdown(report: dict) -> str:
    lines = [f"# Avatar {report['name']}", "",
             f"- {report['steps']} steps (stopped by {report['stopped_by']}), seed {report['seed']}, "
             f"{report['image_size']} px ({report['preset']}), "
             f"{'fine-tuned from ' + report['init'] if report['init'] else 'from scratch'}"
             + (f", distilled from {report['teacher']} (weight {report['distill_weight']:g})"
                if report.get("teacher") else ""),
             f"- held-out ({report['held_out_frames']} frames, the clip's last {HELD_OUT_FRACTION:.0%}): "
             f"PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f}, sharpness ratio {report['sharpness']:.3f}",
             f"- perceptual term: {report['perceptual_note']}",
             f"- {report['seconds']:.0f} s of training in this run on {report['device']}"]
    if report["stopped_by"] == "minutes":
        lines.append(f"- stopped early by the {report['minutes']:g}-minute cap; run again to reach "
                     f"{report['steps_budget']} steps")
    lines += ["", "| step | PSNR dB | SSIM |", "|---:|---:|---:|"]
    lines += [f"| {p['step']} | {p['psnr']:.2f} | {p['ssim']:.4f} |" for p in report["curve"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- main
def train_avatar(source: str | os.PathLike, out_dir: str | os.PathLike, config: AvatarConfig = AvatarConfig(), *,
                 progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
                 on_preview: PreviewCallback | None = None, log: Callable[[str], None] = print,
                 prepare_progress: Callable[[str, int, int], None] | None = None) -> AvatarResult:
    """Train a renderer of the person in ``source`` (a talking video file or a prepared sample folder) into
    ``out_dir`` (files in the module docstring); running it again with the same ``out_dir`` resumes.

    ``progress(step, total, losses)`` after every step; ``on_preview(step, image)`` (uint8 [S, 2S, 3], held-out
    ground truth | render) every ``preview_every`` steps and at the end; ``should_stop()`` polled during
    preparation and after every step: True saves the state and raises :class:`AvatarInterrupted`.
    ``prepare_progress(stage, done, total)`` while a video is prepared. Bad inputs and a full disk raise
    :class:`AvatarError` (the last good checkpoint is kept).
    """
    from moda_core.metrics import psnr, ssim
    from moda_core.models.discriminators import MultiscaleDiscriminator
    from moda_core.train.datasets import load_sample, neutral_frame, split_range, with_reference_frame
    from moda_core.train.loop import LoopConfig, run_training
    from moda_core.train.presets import preset_config
    from moda_core.train.renderer_trainer import RendererTask, RendererTrainConfig

    source, out = Path(source), Path(out_dir)
    train_dir = out / "train"
    run_dir = train_dir / "runs" / "renderer"
    try:
        out.mkdir(parents=True, exist_ok=True)
        sample_dir = _sample_folder(source, out, config, log, prepare_progress, should_stop)
        sample = load_sample(sample_dir)
        if sample.num_frames / sample.fps < MIN_SECONDS:
            raise AvatarError(f"{sample_dir} holds {sample.num_frames / sample.fps:.2f} s; an avatar needs at least "
                              f"{MIN_SECONDS:g} s (the last {HELD_OUT_FRACTION:.0%} is held out)")
        # the reference crop: the most neutral training frame (eyes open, usual pose, mouth closed)
        reference_frame = neutral_frame(sample.repr, split_range(sample.num_frames, "train", HELD_OUT_FRACTION))
        sample = with_reference_frame(sample, reference_frame)
        generator, tpe = _starting_renderer(config, log)
        teacher, tpe = _teacher_renderer(config, generator, tpe, log)
        perceptual, perceptual_note = _perceptual(config)
        # fine-tuning, and a warp-refine net (it starts as the warp renderer; 1e-3 made it worse in 40 steps), 1e-4
        lr = config.lr or (1e-4 if config.init is not None or generator.config.warped_reference else 1e-3)
        train_dir.mkdir(exist_ok=True)
        run = {"source": str(source), "sample": str(sample_dir), "seed": config.seed, "preset": config.preset,
               "init": str(Path(config.init).resolve()) if config.init else None, "batch_size": config.batch_size,
               "lr": lr, "perceptual": perceptual is not None, "fps": sample.fps,
               "teacher": str(Path(config.teacher).resolve()) if config.teacher else None,
               "distill_weight": config.distillation}
        _check_run(train_dir, run)
        discriminator = MultiscaleDiscriminator(preset_config("renderer_discriminator", config.preset))
        train_config = RendererTrainConfig(val_fraction=HELD_OUT_FRACTION, tpe=tpe, tpe_jitter=TPE_JITTER,
                                           face_center=CANONICALISATION_FACE_CENTER, lr=lr,
                                           perceptual_weight=10.0 if perceptual is not None else 0.0,
                                           models_dir=str(config.models_dir) if config.models_dir else None,
                                           distill_weight=config.distillation)
        task = RendererTask(generator, discriminator, [sample], train_config, perceptual=perceptual, teacher=teacher)
        held_out = task.val_set.datasets[0]
        task.val_set = None                  # scored here (curve, report); the weights are the last step's
        curve_items = sorted(set(np.linspace(0, len(held_out) - 1, min(CURVE_FRAMES, len(held_out)))
                                 .round().astype(int).tolist()))
        preview_item = len(held_out) // 2

        done = saved_step(run_dir)
        curve_path = train_dir / "curve.json"
        curve = [p for p in json.loads(curve_path.read_text())
                 if done is not None and p["step"] <= done] if curve_path.is_file() else []
        if done:
            log(f"avatar: resuming at step {done} of {config.steps} from {run_dir / 'last'}")
        last_preview: list[np.ndarray] = []
        last_losses: dict[str, float] = {}

        def preview(step: int, renders: np.ndarray | None = None, reals: np.ndarray | None = None) -> None:
            """Curve point and preview image of ``step`` (``renders``/``reals`` of curve_items, else rendered)."""
            if renders is None:
                renders, reals = _render_frames(task.networks["renderer"], held_out, curve_items)
            point = {"step": step, "psnr": psnr(renders, reals), "ssim": ssim(renders, reals),
                     **{k: float(v) for k, v in last_losses.items()}}
            curve[:] = [p for p in curve if p["step"] < step] + [point]
            _write_json(curve_path, curve)
            middle = curve_items.index(min(curve_items, key=lambda i: abs(i - preview_item)))
            image = _preview_image(renders[middle], reals[middle])
            last_preview[:] = [image]
            if on_preview is not None:
                on_preview(step, image)

        def on_step(step: int, losses: Mapping[str, float]) -> None:
            last_losses.clear()
            last_losses.update(losses)
            if progress is not None:
                progress(step, config.steps, losses)
            if step % config.preview_every == 0 and step < config.steps:   # the last step: from the final scoring
                preview(step)
            if should_stop is not None and should_stop():
                raise AvatarInterrupted(step, out)

        loop = LoopConfig(max_steps=config.steps, max_minutes=config.minutes, batch_size=config.batch_size,
                          val_every=10 ** 9, seed=config.seed, device=config.device, progress=False,
                          save_every=config.checkpoint_every)
        tic = time.monotonic()
        result = run_training(task, train_dir, loop, on_step=on_step)
        seconds = time.monotonic() - tic
        renderer = task.networks["renderer"]
        renders, reals = _render_frames(renderer, held_out, list(range(len(held_out))))     # once, for both
        if not curve or curve[-1]["step"] != result.step or not last_preview:
            preview(result.step, renders[curve_items], reals[curve_items])
        scores = _held_out_scores(renders, reals, held_out, sample)
        stopped_by = result.stopped_by or "steps"
        if stopped_by == "minutes":
            log(f"avatar: stopped by the {config.minutes:g}-minute cap at step {result.step} of {config.steps}; "
                "run again with the same output folder to continue")
        report = {"name": sample.subject.name or source.stem, "steps": result.step, "steps_budget": config.steps,
                  **scores, "stopped_by": stopped_by, "minutes": config.minutes, "seed": config.seed,
                  "init": str(config.init) if config.init else None, "preset": config.preset,
                  "teacher": str(config.teacher) if config.teacher else None,
                  "distill_weight": config.distillation,
                  "image_size": renderer.config.image_size, "seconds": round(seconds, 2),
                  "device": str(next(renderer.parameters()).device), "batch_size": config.batch_size, "lr": lr,
                  "perceptual": perceptual is not None, "perceptual_note": perceptual_note,
                  "held_out_frames": len(held_out), "train_frames": len(task.train_set), "fps": sample.fps,
                  "source": str(source), "sample": str(sample_dir), "tpe": asdict(tpe),
                  "face_center": list(CANONICALISATION_FACE_CENTER), "reference_frame": reference_frame,
                  "losses": dict(last_losses), "curve": curve}
        if not all(math.isfinite(report[k]) for k in ("psnr", "ssim", "sharpness")):
            log("avatar: warning: a held-out score is not finite; the training diverged (try a smaller lr)")
        _copy(result.weights["renderer"], out / "renderer.safetensors")
        sample.subject.save(out / "subject.safetensors")        # with the reference frame trained on
        write_png(out / "preview.png", last_preview[0])
        _write_json(out / "report.json", report)
        atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(_markdown(report)))
        shutil.rmtree(run_dir / "best", ignore_errors=True)       # a copy of renderer.safetensors
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        step = saved_step(run_dir)
        kept = (f"the last good checkpoint (step {step}) is kept in {run_dir / 'last'}" if step is not None
                else "no checkpoint was saved yet")
        raise AvatarError(f"disk full while writing in {out}: {kept}; free some space and run again with the same "
                          "output folder to continue") from None
    log(f"avatar: {report['steps']} steps, held-out PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f}, "
        f"sharpness ratio {report['sharpness']:.3f}; wrote {out / 'renderer.safetensors'}, "
        f"{out / 'subject.safetensors'}, {out / 'preview.png'}, {out / 'report.json'}")
    return AvatarResult(out, out / "renderer.safetensors", out / "subject.safetensors", out / "preview.png", report)


__all__ = ["AvatarConfig", "AvatarError", "AvatarInterrupted", "AvatarResult", "train_avatar", "find_vgg19", "write_png",
           "HELD_OUT_FRACTION", "MIN_SECONDS"]
