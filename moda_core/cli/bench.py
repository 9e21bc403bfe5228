"""``moda bench``: per-stage timings, frames/s, peak RSS and the renderer's share of the matmul peak."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="stage-by-stage speed profile on random weights")
    parser.add_argument("--config", choices=["paper", "tiny"], default="tiny", help="network sizes")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length (<= 20 s)")
    parser.add_argument("--frames", type=int, default=None, help="render only this many frames (paper size is slow)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="renderer precision; auto: bf16 on CPUs with AVX512-BF16/AMX and recent GPUs (else fp16 "
                             "on GPUs), fp32 otherwise")
    parser.add_argument("--backend", choices=["auto", "torch", "openvino"], default="auto",
                        help="renderer backend (auto: OpenVINO on a CPU when installed and faster, else torch)")
    parser.add_argument("--compile", action="store_true",
                        help="torch backend: torch.compile the renderer (CUDA graphs on a GPU), fixed batch size")
    parser.add_argument("--compare-authors", action="store_true",
                        help="the authors' configuration (torch fp32 renderer + their overheads) against ours (best "
                             "backend, streaming) in seconds per audio second, every backend's frames/s and share of "
                             "the matmul peak, and the fast renderer's end-to-end frames/s; --frames (default 3) "
                             "frames are timed per renderer")
    parser.add_argument("--fast-frames", type=int, default=60,
                        help="with --compare-authors: frames the fast renderer renders (default 60; its end-to-end "
                             "figure scales the per-frame stages to the whole clip)")
    parser.add_argument("--batch-size", type=int, default=4, help="frames rendered per batch")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--image", type=Path, default=SAMPLES / "portrait.jpg",
                        help="portrait photo (default: the bundled samples/portrait.jpg)")
    parser.add_argument("--audio", type=Path, default=SAMPLES / "speech.wav",
                        help="speech, repeated or cut to --seconds (default: the bundled samples/speech.wav)")
    parser.add_argument("--models", type=Path, default=SAMPLES / "models", help="MediaPipe model folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import check_device, check_input_file, check_input_folder

    check_input_file(args.image, "--image")
    check_input_file(args.audio, "--audio")
    check_input_folder(args.models, "--models")
    check_device(args.device)
    import numpy as np
    import torch

    from moda_core.bench import build_models, format_report, matmul_peak_gflops, profile_pipeline, renderer_flops
    from moda_core.preprocess import load_audio, subject_from_photo
    from moda_core.render_backends import PRECISION_DTYPES, select_backend

    for option in ("frames", "fast_frames"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")

    started = time.perf_counter()
    subject, _ = subject_from_photo(args.image, models_dir=args.models)
    preprocessing = time.perf_counter() - started
    wave, rate = load_audio(args.audio)
    wave = np.resize(wave, int(args.seconds * rate))
    models = build_models(args.config, args.device)
    if args.compare_authors:
        return _compare_authors(args, models, wave, subject, preprocessing)
    flops = renderer_flops(models.renderer)
    backend = select_backend(models.renderer, args.device, args.backend, args.precision, compile=args.compile,
                             batch_size=args.batch_size)
    peaks = {"fp32": matmul_peak_gflops(torch.float32, device=args.device)}
    if backend.precision != "fp32":
        peaks[backend.precision] = matmul_peak_gflops(PRECISION_DTYPES[backend.precision], device=args.device)
    result = profile_pipeline(models, wave, subject, batch_size=args.batch_size, max_render_frames=args.frames,
                              renderer=backend)
    print(f"moda bench: config {args.config}, {args.seconds:g} s audio, backend {backend.name}, precision "
          f"{backend.precision}, device {args.device}, {torch.get_num_threads()} threads, renderer "
          f"{models.render_size} px")
    print(f"preprocessing (photo -> subject): {preprocessing:.2f} s")
    print(format_report(result, flops, peaks, backend.precision))
    return 0


def _compare_authors(args, models, wave, subject, preprocessing: float) -> int:
    import torch

    from moda_core.bench import compare_authors, format_comparison
    from moda_core.train.presets import preset_config

    try:
        fast_config, missing = preset_config("renderer", "fast"), None
    except ValueError as err:
        fast_config, missing = None, str(err)
    print(f"moda bench --compare-authors: config {args.config}, {args.seconds:g} s audio, device {args.device}, "
          f"{torch.get_num_threads()} threads; preprocessing (photo -> subject, both sides, not counted) "
          f"{preprocessing:.2f} s", flush=True)
    figures = compare_authors(models, wave, subject, device=torch.device(args.device), frames=args.frames or 3,
                              backend=args.backend, precision=args.precision, batch_size=args.batch_size,
                              compile=args.compile, openvino=args.backend != "torch", fast_config=fast_config,
                              fast_frames=args.fast_frames, models_dir=args.models,
                              log=lambda line: print(f"moda: {line}", file=sys.stderr))
    if missing:
        figures["fast_missing"] = missing
    print(format_comparison(figures))
    return 0
