"""``moda train avatar VIDEO_OR_SAMPLE --out DIR``: a renderer of one person for a fixed number of steps."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register_avatar(stages) -> None:
    """Add the ``avatar`` stage to ``moda train``'s sub-parsers."""
    parser = stages.add_parser(
        "avatar", help="your own avatar: a talking video -> a renderer of that person (steps budget, reproducible)",
        description="Prepares the talking video (or uses a folder made by `moda prepare video`), trains a renderer "
                    "of that person on the clip's first 80 % for --steps optimiser steps (from scratch, or "
                    "fine-tuning --init), scores it on the last 20 % and writes DIR/renderer.safetensors, "
                    "subject.safetensors, preview.png (ground truth | render) and report.json / report.md. The same "
                    "inputs, --seed and --steps give the same weights; Ctrl-C saves the state and running the same "
                    "command again continues it. To animate it, put DIR/renderer.safetensors beside moda.safetensors "
                    "and faco.safetensors in a weights folder: moda animate --weights THAT_FOLDER --subject "
                    "DIR/subject.safetensors --audio SPEECH --out OUT.mp4")
    parser.add_argument("source", type=Path, help="talking video (with its sound) or a prepared sample folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (running again resumes there)")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps in total (the budget)")
    parser.add_argument("--init", type=Path, default=None,
                        help="renderer .safetensors to fine-tune from (e.g. a converted authors' renderer or "
                             "another avatar); default: from scratch")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="renderer .safetensors to distil from (a trained renderer of the same person, e.g. a "
                             "paper-size avatar, of the preset's image size): the new renderer also learns its output")
    parser.add_argument("--distill-weight", type=float, default=None,
                        help="weight of the L1 to the teacher's render (default 50 with --teacher, the colour "
                             "term's)")
    parser.add_argument("--preset", choices=["full", "small", "tiny", "fast"], default="full",
                        help="renderer size: full = 512 px (paper), small = 256 px, tiny = 64 px (tests), "
                             "fast = 512 px compact real-time layout that refines the warp renderer's frames")
    parser.add_argument("--minutes", type=float, default=None,
                        help="optional time cap: stops early (state saved, report says so); run again to continue")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per step")
    parser.add_argument("--preview-every", type=int, default=100,
                        help="steps between previews (DIR/preview.png) and held-out scores (the report's curve)")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default 1e-3 from scratch, 1e-4 with --init or --preset fast)")
    perceptual = parser.add_mutually_exclusive_group()
    perceptual.add_argument("--perceptual", dest="perceptual", action="store_true", default=None,
                            help="require the VGG19 perceptual term (default: used when its weights are here)")
    perceptual.add_argument("--no-perceptual", dest="perceptual", action="store_false",
                            help="skip the VGG19 perceptual term (by default it is used when its weights are here)")
    parser.add_argument("--vgg19", type=Path, default=None, help="VGG19 weights file (vgg19-dcbb9e9d.pth)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, ...")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder with the MediaPipe models (default samples/models)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_avatar)


def run_avatar(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import (ArgumentError, check_device, check_input_file, check_input_folder,
                                      check_output_folder)

    if not args.source.is_dir():
        check_input_file(args.source, "VIDEO_OR_SAMPLE")
    check_input_file(args.init, "--init")
    check_input_file(args.teacher, "--teacher")
    if args.distill_weight is not None and (args.teacher is None or not args.distill_weight > 0):
        raise ArgumentError(f"--distill-weight {args.distill_weight:g}: needs --teacher and must be > 0")
    check_input_file(args.vgg19, "--vgg19")
    check_input_folder(args.models, "--models")
    check_device(args.device)
    check_output_folder(args.out, "--out")
    from tqdm import tqdm

    from moda_core.cli.progress import StageProgress
    from moda_core.train.avatar import AvatarConfig, train_avatar, write_png

    config = AvatarConfig(steps=args.steps, init=args.init, preset=args.preset, minutes=args.minutes, seed=args.seed,
                          batch_size=args.batch_size, preview_every=args.preview_every, perceptual=args.perceptual,
                          device=args.device, models_dir=args.models, lr=args.lr, vgg19=args.vgg19,
                          teacher=args.teacher, distill_weight=args.distill_weight)
    bar = None

    def progress(step: int, total: int, losses) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=step - 1, desc="avatar", unit="step", dynamic_ncols=True,
                       disable=args.no_progress)
        bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
        bar.update(step - bar.n)

    try:
        with StageProgress(disable=args.no_progress) as prepare:
            result = train_avatar(args.source, args.out, config, progress=progress, prepare_progress=prepare,
                                  on_preview=lambda step, image: write_png(args.out / "preview.png", image),
                                  log=lambda line: (bar.write(line) if bar is not None else print(line)))
    except KeyboardInterrupt:
        print(f"moda train avatar: the state is saved in {args.out / 'train'}; run the same command again to "
              "continue", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    report = result.report
    print(f"moda train avatar: {report['steps']} steps (stopped by {report['stopped_by']}), held-out PSNR "
          f"{report['psnr']:.2f} dB, SSIM {report['ssim']:.4f}, sharpness ratio {report['sharpness']:.3f}; "
          f"{result.renderer}, {result.subject}, {result.preview}, {args.out / 'report.json'}")
    return 0
