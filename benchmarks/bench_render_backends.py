"""Every renderer backend x precision on TRAINED weights: seconds per frame and PSNR against torch fp32.

Inputs are real: the condition images of a sample's R (e.g. the quickstart's training clip) with the subject's
reference crop and TPE, so activations have their trained scale. The reference is torch fp32 in the authors'
plain layout; each row says what was asked and what actually runs (OpenVINO runs f32 where the CPU has no
bf16/f16 support). Variants take turns frame by frame, so machine load hits them alike.
Usage: python benchmarks/bench_render_backends.py --renderer out/quickstart/renderer.safetensors \\
           --sample out/quickstart/sample [--frames 6] [--out table.txt]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moda_core.checkpoints import content_hash, load_model  # noqa: E402
from moda_core.pipeline import _to_signed, condition_batches, reference_at  # noqa: E402
from moda_core.render_backends import (OpenVINOBackend, TorchBackend, device_precisions,  # noqa: E402
                                       openvino_available)
from moda_core.render_settings import RenderSettings  # noqa: E402
from moda_core.repr import TalkingRepr  # noqa: E402
from moda_core.subject import Subject  # noqa: E402
from moda_core.tpe import temporal_positional_encoding  # noqa: E402


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1], on the [0, 1] scale."""
    mse = ((output - reference) / 2).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def renderer_inputs(renderer_file: Path, sample: Path, frames: int) -> torch.Tensor:
    """[frames, C, S, S] renderer input from the sample's R, subject and the renderer's own settings."""
    settings = RenderSettings.of_weight_file(renderer_file)
    subject = Subject.load(sample / "subject.safetensors")
    r = TalkingRepr.load(sample / "repr.safetensors")
    r = r.slice_time(0, min(frames, r.num_frames))
    size = load_model(renderer_file, kind="renderer").config.image_size
    _, conditions = next(condition_batches(r, subject, batch_size=frames, face_center=settings.face_center,
                                           size=size))
    reference = reference_at(subject, size).expand(conditions.shape[0], -1, -1, -1)
    planes = temporal_positional_encoding(torch.arange(conditions.shape[0]), size, size, settings.tpe)
    return torch.cat([_to_signed(conditions), _to_signed(reference), planes], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer", type=Path, required=True, help="trained renderer .safetensors")
    parser.add_argument("--sample", type=Path, required=True, help="sample folder with repr/subject .safetensors")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--cache-dir", type=Path, default=None, help="OpenVINO IR cache (default ~/.cache/moda)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()

    x = renderer_inputs(args.renderer, args.sample, args.frames)
    weights = content_hash(args.renderer)

    def fresh():
        return load_model(args.renderer, kind="renderer").eval()

    variants = {"torch fp32 plain": TorchBackend(fresh(), "fp32", channels_last=False)}
    for precision in ("fp32", "bf16", "fp16"):
        variants[f"torch {precision}"] = TorchBackend(fresh(), precision)
    if openvino_available():
        for precision in ("fp32", "bf16", "fp16"):
            variants[f"openvino {precision}"] = OpenVINOBackend(fresh(), precision, weights_hash=weights,
                                                                cache_dir=args.cache_dir, log=None)
    seconds = dict.fromkeys(variants, 0.0)
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in variants}
    for backend in variants.values():
        backend(x[:1])                                               # warm-up
    for i in range(x.shape[0]):
        for name, backend in variants.items():
            start = time.perf_counter()
            outputs[name].append(backend(x[i:i + 1]))
            seconds[name] += time.perf_counter() - start
    reference = torch.cat(outputs["torch fp32 plain"])
    fast = device_precisions("cpu")
    config = variants["torch fp32 plain"].config
    lines = [f"renderer {args.renderer} ({config.image_size} px, ngf {config.ngf}, {config.num_levels} levels), "
             f"{x.shape[0]} frames of {args.sample}; CPU {torch.get_num_threads()} threads; fast bf16/fp16 "
             f"instructions: {fast['bf16']}/{fast['fp16']}",
             f"{'variant':<18} {'runs':<5} {'s/frame':>8} {'PSNR vs torch fp32 plain (dB)':>30} "
             f"{'max |diff| 8-bit':>17}"]
    for name, backend in variants.items():
        out = torch.cat(outputs[name])
        levels = ((out - reference).abs().max().item() / 2) * 255
        lines.append(f"{name:<18} {backend.precision:<5} {seconds[name] / x.shape[0]:>8.3f} "
                     f"{psnr(out, reference):>30.2f} {levels:>17.2f}")
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
