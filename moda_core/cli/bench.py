"""``moda bench``: per-stage timings, frames/s, peak RSS and the renderer's share of the matmul peak."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="stage-by-stage speed profile on random weights")
    parser.add_argument("--config", choices=["paper", "tiny"], default="tiny", help="network sizes")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length (<= 20 s)")
    parser.add_argument("--frames", type=int, default=None, help="render only this many frames (paper size is slow)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                        help="renderer precision (bf16: fast on recent CPUs and GPUs)")
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
    from moda_core.models.renderer import prepare_for_inference
    from moda_core.preprocess import load_audio, subject_from_photo

    started = time.perf_counter()
    subject, _ = subject_from_photo(args.image, models_dir=args.models)
    preprocessing = time.perf_counter() - started
    wave, rate = load_audio(args.audio)
    wave = np.resize(wave, int(args.seconds * rate))
    models = build_models(args.config, args.device)
    flops = renderer_flops(models.renderer)
    prepare_for_inference(models.renderer, args.precision)
    peaks = {"fp32": matmul_peak_gflops(torch.float32, device=args.device)}
    if args.precision != "fp32":
        dtype = torch.bfloat16 if args.precision == "bf16" else torch.float16
        peaks[args.precision] = matmul_peak_gflops(dtype, device=args.device)
    result = profile_pipeline(models, wave, subject, precision=args.precision, batch_size=args.batch_size,
                              max_render_frames=args.frames)
    print(f"moda bench: config {args.config}, {args.seconds:g} s audio, precision {args.precision}, "
          f"device {args.device}, {torch.get_num_threads()} threads, renderer {models.render_size} px")
    print(f"preprocessing (photo -> subject): {preprocessing:.2f} s")
    print(format_report(result, flops, peaks, args.precision))
    return 0
