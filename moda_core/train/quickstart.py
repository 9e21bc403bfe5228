"""``moda quickstart``: the bundled talking clip -> a small trained subject model -> a talking video, offline.

Stages (each prints one summary line with its time):

1. prepare   the clip (``samples/talking.mp4``) -> a sample folder (MediaPipe models from ``samples/models``);
2. moda      a small MODA (2-layer wav2vec2 trained from scratch, :mod:`.presets` ``small``);
3. faco      a small FaCo-Net;
4. renderer  a reduced renderer (256 px, ngf 16) for this person; videos are upscaled to 512;
5. eval      held-out PSNR / SSIM of the renderer: ground-truth conditions of the clip's last 20 % of frames;
6. animate   ``samples/speech.wav`` -> ``<out>/<clip>-<audio>.mp4`` (512x512) with the trained models;
7. warp      a photo of another person (``samples/portrait.jpg``) says the same speech with the trained MODA and
             FaCo-Net and the warp renderer (no renderer training) -> ``<out>/<photo>-<audio>-warp.mp4``.

Training is budgeted in optimiser steps (``max_steps``), so the same inputs and seed give the same models on
any machine of a kind; the counts are what the earlier 8-minute budget reached on an idle 2-core CPU
(``benchmarks/bench_quickstart_steps.py``). ``minutes`` is an optional cap on all training (MODA and FaCo-Net get
fixed shares, the renderer the rest): it stops early and says so. With converted authors' weights (``moda.safetensors`` / ``faco.safetensors`` in
``weights`` or in the output folder, not from an earlier quickstart run) those stages are not trained.
Running it again on the same folder reuses the prepared sample and continues each run from its last state.

Choices for a 5 s clip, unlike the authors' pipeline: training and inference use the same TPE (offset 0) and
face centre (256, 232, 128); the renderer trains with TPE jitter (:class:`.datasets.RenderFrames`) because
frames past the clip's 150 would otherwise get TPE values it never saw; the VGG19 perceptual term is used on
GPUs only (on a CPU it would cost several times the rest of a step).
"""
from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.pipeline import WEIGHT_FILES
from moda_core.tpe import TPEConfig
from moda_core.train.datasets import split_range
from moda_core.train.loop import LoopConfig, TrainResult
from moda_core.train.presets import preset_config

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "samples"
OUTPUT_SIZE = 512
HELD_OUT_FRACTION = 0.2   # the trainers' default val_fraction: the last 20 % of the clip
TPE_JITTER = 9000          # frames (5 minutes at 30 fps): audio up to that length stays within trained TPE values
QUICKSTART_STEPS = {"moda": 560, "faco": 2000, "renderer": 320}
"""Steps per stage: about what 8 minutes of training reached on an idle 2-core CPU (module docstring)."""


@dataclass(frozen=True)
class QuickstartConfig:
    """Inputs, budget and output of :func:`run_quickstart`."""

    out_dir: Path = Path("moda-quickstart")
    video: Path = SAMPLES_DIR / "talking.mp4"
    audio: Path = SAMPLES_DIR / "speech.wav"
    photo: Path | None = SAMPLES_DIR / "portrait.jpg"   # animated with the warp renderer at the end (None: skip)
    models_dir: Path = SAMPLES_DIR / "models"     # face_landmarker.task, selfie_segmenter.tflite
    weights: Path | None = None                   # folder with converted authors' moda/faco .safetensors
    minutes: float | None = None                  # optional cap on all training together (stops early)
    stage_shares: dict[str, float] = field(default_factory=lambda: {"moda": 0.12, "faco": 0.06})   # of the cap
    max_steps: dict[str, int] = field(default_factory=lambda: dict(QUICKSTART_STEPS))   # the budget
    val_every: dict[str, int] = field(default_factory=lambda: {"moda": 10, "faco": 5, "renderer": 1})   # epochs
    batch_size: int = 4
    fps: float = 30.0
    device: str = "auto"                          # auto: cuda when available, else cpu
    precision: str = "fp32"                       # renderer training; "bf16" is faster on CPUs with AVX-512 BF16
    seed: int = 0
    progress: bool = True


@dataclass
class QuickstartResult:
    weights_dir: Path
    video: Path
    subject: Path
    psnr: float
    ssim: float
    seconds: dict[str, float]                     # per stage
    warp_video: Path | None = None                # the photo animated with the warp renderer


def _given_weights(config: QuickstartConfig, kind: str) -> Path | None:
    """Converted weights for ``kind`` that an earlier quickstart run did not produce, or None."""
    if (config.out_dir / "runs" / kind).exists():
        return None
    for folder in (config.weights, config.out_dir):
        if folder is not None and (folder / WEIGHT_FILES[kind]).is_file():
            return folder / WEIGHT_FILES[kind]
    return None


def _summary(kind: str, result: TrainResult, budget: int | None = None) -> str:
    best = f", best val loss {result.best_val:.4g} at step {result.best_step}" if result.best_val is not None else ""
    early = (f" (the --minutes cap, before the {budget}-step budget: run again to continue)"
             if result.stopped_by == "minutes" and budget is not None else "")
    return (f"{kind}: {result.step} steps ({result.epoch} epochs) in {result.seconds:.0f} s, stopped by "
            f"{result.stopped_by or 'nothing left to do'}{early}{best}")


def _check_moda_motion(path: Path, sample, steps: int, log: Callable[[str], None]) -> None:
    """Blinks, head motion and seed diversity of the trained MODA on the clip's audio, stored in its file and
    said here (and again wherever the weights are loaded) when flatter than the clip."""
    from moda_core.motion_check import motion_warning, record_sample_check

    if not path.is_file():
        return
    check = record_sample_check(path, sample, steps=steps)
    log(f"moda: {check.summary()}")
    warning = motion_warning(path, check)
    if warning:
        print(f"moda: warning: {warning}", file=sys.stderr)      # warnings go to stderr in every command


def run_quickstart(config: QuickstartConfig = QuickstartConfig(), log: Callable[[str], None] = print
                   ) -> QuickstartResult:
    """Run all stages (module docstring); returns the written files and the held-out PSNR / SSIM."""
    from moda_core.cli.progress import StageProgress
    from moda_core.pipeline import AnimateOptions, MODAModels, animate
    from moda_core.preprocess import load_audio, prepare_video_sample
    from moda_core.train.datasets import load_sample
    from moda_core.train.faco_trainer import FaCoTrainConfig, train_faco
    from moda_core.train.moda_trainer import MODATrainConfig, train_moda
    from moda_core.train.renderer_trainer import RendererTrainConfig, evaluate_renderer, train_renderer

    for path in (config.video, config.audio):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; pass --video / --audio (the bundled samples live in the "
                                    "repository's samples/ folder)")
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto"
                          else config.device)
    started = time.monotonic()
    seconds: dict[str, float] = {}

    def timed(stage: str, tic: float) -> float:
        seconds[stage] = time.monotonic() - tic
        return seconds[stage]

    # 1. prepare
    sample_dir = out / "sample"
    tic = time.monotonic()
    if (sample_dir / "sample.json").is_file():
        log(f"prepare: reusing {sample_dir}")
    else:
        with StageProgress(disable=not config.progress) as progress:
            summary = prepare_video_sample(config.video, sample_dir, fps=config.fps, models_dir=config.models_dir,
                                           progress=progress)
        log(f"prepare: {summary.num_frames} frames at {summary.fps:g} fps from {config.video} in "
            f"{timed('prepare', tic):.1f} s")
    sample = load_sample(sample_dir, fps=config.fps)
    subject_path = Path(shutil.copyfile(sample_dir / "subject.safetensors", out / "subject.safetensors"))

    # 2-4. training for the step budgets (a --minutes cap stops early)
    deadline = None if config.minutes is None else time.monotonic() + 60.0 * config.minutes
    tpe = TPEConfig()

    def loop(kind: str, minutes: float | None) -> LoopConfig:
        cap = None if minutes is None else max(minutes, 0.1)
        return LoopConfig(max_steps=config.max_steps[kind], max_minutes=cap,
                          batch_size=config.batch_size, val_every=config.val_every[kind], seed=config.seed,
                          device=str(device), progress=config.progress)

    trainers = {
        "moda": lambda minutes: train_moda(
            [sample], out, model_config=preset_config("moda", "small"), loop=loop("moda", minutes),
            config=MODATrainConfig(window=60, hop=10, fps=config.fps, lr=1e-3, train_feature_encoder=True)),
        "faco": lambda minutes: train_faco(
            [sample], out, model_config=preset_config("faco", "small"), loop=loop("faco", minutes),
            config=FaCoTrainConfig(window=30, fps=config.fps, lr=1e-3)),
    }
    for kind, train in trainers.items():
        given = _given_weights(config, kind)
        if given is not None:
            if given.parent.resolve() != out.resolve():
                shutil.copyfile(given, out / WEIGHT_FILES[kind])
            log(f"{kind}: using the given weights {given} (not trained)")
            continue
        tic = time.monotonic()
        result = train(None if config.minutes is None else config.stage_shares[kind] * config.minutes)
        timed(kind, tic)
        log(_summary(kind, result, config.max_steps[kind]))
        if kind == "moda":
            _check_moda_motion(out / WEIGHT_FILES["moda"], sample,
                               result.step if result.best_step is None else result.best_step, log)
    tic = time.monotonic()
    renderer_config = RendererTrainConfig(tpe=tpe, tpe_jitter=TPE_JITTER, lr=1e-3, precision=config.precision,
                                          perceptual_weight=10.0 if device.type == "cuda" else 0.0)
    result = train_renderer([sample], out, model_config=preset_config("renderer", "small"),
                            discriminator_config=preset_config("renderer_discriminator", "small"),
                            config=renderer_config,
                            loop=loop("renderer", None if deadline is None else (deadline - time.monotonic()) / 60.0))
    timed("renderer", tic)
    log(_summary("renderer", result, config.max_steps["renderer"]))

    # 5. held-out evaluation
    tic = time.monotonic()
    models = MODAModels.load(out, device=device)
    psnr, ssim = evaluate_renderer(models.renderer, sample, tpe=tpe, size=OUTPUT_SIZE)
    held_out = len(split_range(sample.num_frames, "val", HELD_OUT_FRACTION))
    log(f"eval: held-out renderer PSNR {psnr:.2f} dB, SSIM {ssim:.4f} on the clip's last {held_out} frames (20 %), "
        f"ground-truth conditions, rendered at {models.render_size} px, compared at {OUTPUT_SIZE} px "
        f"({timed('eval', tic):.1f} s)")

    # 6. animation
    tic = time.monotonic()
    wave, _ = load_audio(config.audio)
    video = out / f"{config.video.stem}-{config.audio.stem}.mp4"
    options = AnimateOptions(fps=config.fps, seed=config.seed, tpe=tpe, face_center=CANONICALISATION_FACE_CENTER,
                             output_size=OUTPUT_SIZE)
    with StageProgress(disable=not config.progress) as progress:
        animated = animate(models, wave, sample.subject, video, options, progress=progress,
                           mux_audio=load_audio(config.audio, target_rate=None))     # the file's own sound
    log(f"animate: {animated.frames} frames ({animated.seconds:.2f} s) of {config.audio.name} in "
        f"{timed('animate', tic):.1f} s; other audio: moda animate --weights {out} --subject {subject_path} "
        f"--audio SPEECH --out OUT.mp4 --output-size {OUTPUT_SIZE}")
    # 7. another person from a photo, warp renderer
    warp_video = None
    if config.photo is not None:
        tic = time.monotonic()
        with StageProgress(disable=not config.progress) as progress:
            warp_video = animate_photo_with_warp(models, config.photo, wave, out, config.audio.stem,
                                                 models_dir=config.models_dir, fps=config.fps, seed=config.seed,
                                                 progress=progress)
        log(f"warp: {config.photo.name} animated with the warp renderer (no training for this person) in "
            f"{timed('warp', tic):.1f} s; any photo: moda animate --renderer warp --weights {out} --image PHOTO "
            f"--audio SPEECH --out OUT.mp4")
    files = [out / WEIGHT_FILES[kind] for kind in WEIGHT_FILES] + [subject_path, video]
    for kind in WEIGHT_FILES:                          # runs/<kind>/best: copies of the weights above
        shutil.rmtree(out / "runs" / kind / "best", ignore_errors=True)
    log(f"quickstart: kept {sample_dir} (the prepared clip) and {out / 'runs'} (losses.csv, resumable state) "
        "to continue training when run again; delete them when done")
    total = time.monotonic() - started
    log(f"quickstart: done in {int(total // 60)} min {total % 60:.0f} s; wrote {', '.join(map(str, files))}")
    log(f"quickstart: videos: {video} (trained renderer, the clip's person)"
        + (f" and {warp_video} (warp renderer, {config.photo.name})" if warp_video is not None else ""))
    return QuickstartResult(out, video, subject_path, psnr, ssim, seconds, warp_video)


def animate_photo_with_warp(models, photo: Path, wave, out_dir: Path, audio_name: str, *,
                            models_dir: Path | None = None, fps: float = 30.0, seed: int = 0,
                            progress=None) -> Path:
    """``photo`` (any person) says ``wave`` (16 kHz) with ``models``' MODA and FaCo-Net and the warp renderer ->
    ``<out_dir>/<photo>-<audio_name>-warp.mp4`` (512x512 crop)."""
    from moda_core.pipeline import AnimateOptions, animate
    from moda_core.preprocess import subject_from_photo

    subject, _ = subject_from_photo(photo, models_dir=models_dir, name=Path(photo).stem)
    video = Path(out_dir) / f"{Path(photo).stem}-{audio_name}-warp.mp4"
    options = AnimateOptions(fps=fps, seed=seed, renderer="warp", face_center=CANONICALISATION_FACE_CENTER,
                             output_size=OUTPUT_SIZE, models_dir=models_dir)
    animate(models, wave, subject, video, options, progress=progress)
    return video
