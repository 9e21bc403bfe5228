"""``moda train moda|faco|renderer SAMPLE... --out DIR``: train or fine-tune one stage on prepared sample folders.

Several GPUs: ``torchrun --nproc_per_node N -m moda_core.cli train ...`` runs the same command with
DistributedDataParallel (``--batch-size`` is per process).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

# paper §3.5: (200, 300, 100) epochs for MODA, FaCo-Net, renderer
_DEFAULT_EPOCHS = {"moda": 200, "faco": 300, "renderer": 100}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", nargs="+", type=Path, help="sample folders from `moda prepare video`")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: best weights <kind>.safetensors, runs/<stage>/ (losses.csv, resumable "
                             "state)")
    parser.add_argument("--preset", choices=["full", "small", "tiny", "fast"], default="full",
                        help="network size: full = the authors', small = quickstart's, tiny = tests, fast = the "
                             "compact real-time 512 px renderer (other stages: full)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from these weights (.safetensors, e.g. converted authors' weights) to fine-tune")
    budget = parser.add_argument_group("budget (the first one reached stops; default: the paper's epochs)")
    budget.add_argument("--steps", type=int, default=None, help="optimiser steps in total")
    budget.add_argument("--epochs", type=int, default=None, help="passes over the training windows/frames")
    budget.add_argument("--minutes", type=float, default=None, help="wall-clock minutes for this run")
    parser.add_argument("--batch-size", type=int, default=4, help="items per step (per process with torchrun)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="last fraction of every clip (by time) kept for validation")
    parser.add_argument("--val-every", type=int, default=1, help="epochs between validations and checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and noise")
    parser.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda, ...")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT/runs/<stage>/last exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train or fine-tune MODA, FaCo-Net or the renderer on sample folders",
        description="Train one stage on folders made by `moda prepare video`. Ctrl-C saves a resumable state; "
                    "run the same command again to continue. Several GPUs: torchrun --nproc_per_node N "
                    "-m moda_core.cli train ...")
    stages = parser.add_subparsers(dest="stage", required=True)

    moda = stages.add_parser("moda", help="audio -> motion network (paper eq. 9-11)")
    _common(moda)
    moda.add_argument("--window", type=int, default=600, help="frames per training window (20 s at 30 fps)")
    moda.add_argument("--hop", type=int, default=None, help="frames between window starts (default window/3)")
    moda.add_argument("--fps", type=float, default=30.0, help="frame rate the samples are resampled to")
    moda.add_argument("--loss", choices=["l1", "l2_velocity"], default="l1",
                      help="l1: the paper's multi-task L1 + KL; l2_velocity: the authors' code (pair with "
                           "--kl-weight 0)")
    moda.add_argument("--kl-weight", type=float, default=1.0, help="weight of the VAE KL term")
    moda.add_argument("--train-feature-encoder", action="store_true",
                      help="also train wav2vec2's CNN (frozen by default, as the authors do)")
    moda.set_defaults(func=_run_moda)

    faco = stages.add_parser("faco", help="facial composer network (paper eq. 12-13)")
    _common(faco)
    faco.add_argument("--window", type=int, default=64, help="frames per item")
    faco.add_argument("--fps", type=float, default=30.0, help="frame rate the samples are resampled to")
    faco.add_argument("--l1-weight", type=float, default=10.0, help="lambda of eq. 13")
    faco.set_defaults(func=_run_faco)

    renderer = stages.add_parser("renderer", help="renderer for one subject (supplementary B)")
    _common(renderer)
    renderer.add_argument("--tpe-offset", choices=["authors", "inference"], default="authors",
                          help="authors: train with v = 1 + t/1000 as the authors did (inference uses t/1000); "
                               "inference: train with t/1000 so training and inference agree")
    renderer.add_argument("--tpe-jitter", type=int, default=0,
                          help="random TPE frame offset in [0, N) in training, so a renderer trained on a short clip "
                               "also works on longer audio (0: the authors' training)")
    renderer.add_argument("--no-perceptual", action="store_true", help="skip the VGG19 perceptual term")
    renderer.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                          help="bf16: autocast forward passes (GPUs, CPUs with AVX-512 BF16)")
    renderer.set_defaults(func=_run_renderer)

    from moda_core.cli.train_avatar import register_avatar
    register_avatar(stages)


def _check(args) -> None:
    """Sample folders, --init, --out (a real write) and --device, before heavy imports and any work."""
    from moda_core.cli.checks import check_device, check_input_file, check_input_folder, check_output_folder

    for sample in args.samples:
        check_input_folder(sample, "SAMPLES")
    check_input_file(args.init, "--init")
    check_device(args.device)
    check_output_folder(args.out, "--out")


def slow_hint(args, stage: str) -> str:
    """What to do when the first timed step shows that the budget allows less than an epoch."""
    if args.init is not None:
        return "Fine-tuning this network needs a GPU (--device cuda) or a longer --minutes"
    if args.preset != "full":
        return "Give a longer --minutes or use a GPU (--device cuda)"
    smaller = ("--preset small (the quickstart's 256 px renderer: 1/60 of the operations per frame)"
               if stage == "renderer" else "--preset small (the quickstart's size)")
    return f"The paper-size network is slow here: try {smaller}, a GPU (--device cuda) or a longer --minutes"


def _loop(args, stage: str):
    from moda_core.train.loop import LoopConfig

    budget_given = any(v is not None for v in (args.steps, args.epochs, args.minutes))
    return LoopConfig(max_steps=args.steps, max_epochs=args.epochs if budget_given else _DEFAULT_EPOCHS[stage],
                      max_minutes=args.minutes, batch_size=args.batch_size, val_every=args.val_every, seed=args.seed,
                      device=args.device, num_workers=args.workers, resume=not args.no_resume,
                      progress=not args.no_progress, slow_hint=slow_hint(args, stage))


def _model_config(args, kind: str):
    from moda_core.train.presets import preset_config

    return None if args.init is not None else preset_config(kind, args.preset)


def _report(stage: str, result) -> int:
    if int(os.environ.get("RANK", "0")) != 0:            # torchrun: rank 0 reports
        return 0
    best = f", best val loss {result.best_val:.4g} at step {result.best_step}" if result.best_val is not None else ""
    print(f"moda train {stage}: {result.step} steps, {result.epoch} epochs in {result.seconds:.0f} s{best}; "
          f"weights: {', '.join(str(p) for p in result.weights.values())}")
    return 0


def _run_moda(args) -> int:
    _check(args)
    from moda_core.train.moda_trainer import MODATrainConfig, train_moda

    config = MODATrainConfig(window=args.window, hop=args.hop, fps=args.fps, val_fraction=args.val_fraction,
                             loss=args.loss, kl_weight=args.kl_weight, lr=args.lr,
                             train_feature_encoder=args.train_feature_encoder)
    result = train_moda(args.samples, args.out, model_config=_model_config(args, "moda"), config=config,
                        loop=_loop(args, "moda"), init=args.init)
    _report("moda", result)
    if int(os.environ.get("RANK", "0")) == 0 and "moda" in result.weights:
        _motion_check(result.weights["moda"], args.samples[0], args.fps,
                      result.step if result.best_step is None else result.best_step)
    return 0


def _motion_check(path, sample_dir, fps: float, steps: int) -> None:
    """Blinks, head motion and seed diversity of the trained MODA on the first sample's first 20 s, stored in
    the weight file (``moda animate`` and the loader node warn about flat motion)."""
    from moda_core.motion_check import motion_warning, record_sample_check
    from moda_core.train.datasets import load_sample

    check = record_sample_check(path, load_sample(sample_dir, fps=fps), steps=steps)
    print(f"moda train moda: {check.summary()}")
    warning = motion_warning(path)
    if warning:
        print(f"moda: warning: {warning}", file=sys.stderr)


def _run_faco(args) -> int:
    _check(args)
    from moda_core.train.faco_trainer import FaCoTrainConfig, train_faco

    config = FaCoTrainConfig(window=args.window, fps=args.fps, val_fraction=args.val_fraction,
                             l1_weight=args.l1_weight, lr=args.lr)
    return _report("faco", train_faco(args.samples, args.out, model_config=_model_config(args, "faco"),
                                      config=config, loop=_loop(args, "faco"), init=args.init))


def _run_renderer(args) -> int:
    _check(args)
    from moda_core.tpe import AUTHORS_TRAIN_OFFSET, TPEConfig
    from moda_core.train.presets import preset_config
    from moda_core.train.renderer_trainer import RendererTrainConfig, train_renderer

    tpe = TPEConfig(offset=AUTHORS_TRAIN_OFFSET if args.tpe_offset == "authors" else 0.0)
    config = RendererTrainConfig(val_fraction=args.val_fraction, tpe=tpe, tpe_jitter=args.tpe_jitter, lr=args.lr,
                                 precision=args.precision)
    if args.no_perceptual:
        config = replace(config, perceptual_weight=0.0)
    result = train_renderer(args.samples, args.out, model_config=_model_config(args, "renderer"),
                            discriminator_config=preset_config("renderer_discriminator", args.preset),
                            config=config, loop=_loop(args, "renderer"), init=args.init)
    return _report("renderer", result)
