"""``moda quickstart [--out DIR]``: train a small model of the bundled talking clip and animate it, offline."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="prepare the bundled clip, train small MODA/FaCo/renderer models, animate speech",
        description="Offline end-to-end run on a CPU (about 8-10 minutes on 2 cores): prepares the bundled talking "
                    "clip, trains small models of that person for fixed step counts (the same models on any CPU), prints the held-out "
                    "PSNR/SSIM of the renderer and writes a 512x512 video of the person saying the bundled "
                    "speech, then a second one of another person (samples/portrait.jpg) with the warp renderer, "
                    "which needs no training for that person. DIR then works with `moda animate --weights DIR --subject DIR/subject.safetensors`. Running it "
                    "again on the same DIR continues training from the saved state.")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default ./moda-quickstart): weights, subject.safetensors, the video, "
                             "sample/ and runs/")
    parser.add_argument("--minutes", type=float, default=None,
                        help="optional cap on all training: stops early and says so (default: none, the step "
                             "budgets decide; about 8 minutes on an idle 2-core CPU)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="folder with converted authors' moda.safetensors / faco.safetensors: those stages "
                             "are not trained")
    parser.add_argument("--video", type=Path, default=None, help="talking clip with sound (default samples/talking.mp4)")
    parser.add_argument("--audio", type=Path, default=None, help="speech to animate (default samples/speech.wav)")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder with the MediaPipe models (default samples/models)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, ...")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                        help="renderer training precision (default fp32; bf16 is faster on GPUs and CPUs with "
                             "AVX-512 BF16)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    register_protocol(subparsers)


def run(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import check_device, check_input_file, check_input_folder, check_output_folder

    for option in ("video", "audio"):
        check_input_file(getattr(args, option), f"--{option}")
    check_input_folder(args.weights, "--weights")
    check_input_folder(args.models, "--models")
    check_device(args.device)
    check_output_folder(args.out or Path("moda-quickstart"), "--out")
    from moda_core.train.quickstart import QuickstartConfig, run_quickstart

    given = {"out_dir": args.out, "video": args.video, "audio": args.audio, "models_dir": args.models,
             "weights": args.weights, "minutes": args.minutes, "device": args.device, "precision": args.precision,
             "seed": args.seed}
    run_quickstart(QuickstartConfig(**{k: v for k, v in given.items() if v is not None},
                                    progress=not args.no_progress))
    return 0


def register_protocol(subparsers) -> None:
    parser = subparsers.add_parser(
        "protocol", help="evaluation mini-protocol: train on a clip's first 80 %%, generate and score the rest",
        description="Prepares a talking clip, trains small per-subject models on its first 80 % (like quickstart), "
                    "generates the last 20 % from the clip's own audio and prints every metric against the real "
                    "frames and the tracked motion. --renderer warp trains nothing: a neutral frame of the first "
                    "80 % is warped along the tracked motion of the last 20 %, scored with PSNR, SSIM, TCM, "
                    "sharpness ratio and landmark-follow error.")
    parser.add_argument("video", type=Path, help="talking clip with sound")
    parser.add_argument("--out", type=Path, required=True, help="output folder (weights, sample, videos)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="optional cap on all training (default: none, the quickstart's step budgets)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="folder with converted authors' moda/faco .safetensors (not trained then)")
    parser.add_argument("--models", type=Path, default=None, help="folder with the MediaPipe models")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated motion")
    parser.add_argument("--renderer", choices=["neural", "warp"], default="neural",
                        help="neural: train and generate (the default); warp: no training, ground-truth motion")
    parser.add_argument("--size", type=int, default=None,
                        help="px the frames are rendered and compared at (default: 512 warp, 256 neural)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="warp: use only the clip's first SECONDS (quick checks)")
    parser.add_argument("--syncnet", type=Path, default=None,
                        help="SyncNet weights (syncnet_v2.model or .safetensors): adds Sync, Sync-D and Sync offset")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text",
                        help="how the metric table is printed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_protocol)


def run_protocol(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import check_input_file, check_input_folder, check_output_folder

    check_input_file(args.video, "VIDEO")
    check_input_file(args.syncnet, "--syncnet")
    check_input_folder(args.weights, "--weights")
    check_input_folder(args.models, "--models")
    check_output_folder(args.out, "--out")
    if args.renderer == "warp":
        return _run_warp_protocol(args)
    from moda_core.train.protocol import run_protocol as protocol
    from moda_core.train.quickstart import QuickstartConfig

    given = {"out_dir": args.out, "video": args.video, "models_dir": args.models, "weights": args.weights,
             "minutes": args.minutes}
    result = protocol(QuickstartConfig(**{k: v for k, v in given.items() if v is not None},
                                       progress=not args.no_progress), seed=args.seed,
                      syncnet_weights=args.syncnet, **({"size": args.size} if args.size else {}))
    print({"text": result.report.to_text, "markdown": result.report.to_markdown,
           "json": result.report.to_json}[args.format]())
    return 0


def _run_warp_protocol(args: argparse.Namespace) -> int:
    from moda_core.cli.progress import StageProgress
    from moda_core.train.protocol import run_warp_protocol

    if args.size is not None and (args.size < 16 or args.size % 2):
        raise ValueError(f"--size must be an even number >= 16, got {args.size}")
    with StageProgress(disable=args.no_progress) as progress:
        result = run_warp_protocol(args.video, args.out, models_dir=args.models, size=args.size or 512,
                                   max_seconds=args.seconds, syncnet_weights=args.syncnet, progress=progress)
    print({"text": result.report.to_text, "markdown": result.report.to_markdown,
           "json": result.report.to_json}[args.format]())
    return 0
