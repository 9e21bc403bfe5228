"""Renderer throughput in fp32 vs reduced-precision autocast (and channels_last), plus the output PSNR cost.

Paper-size generator (ngf 64, 8 levels, 512x512) with random weights and BatchNorm in eval mode. The BatchNorm
running statistics are first set from one pass over the first batch, so activations have a trained-like scale
(with the default statistics the output is nearly flat and any precision looks fine). Random weights are a
pessimistic stand-in for the released checkpoint: treat the PSNR as a warning sign, not a prediction.
Usage: python benchmarks/bench_renderer_precision.py [--frames 4] [--batch-size 1] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moda_core.models.renderer import RenderGenerator, RendererConfig, render  # noqa: E402
from moda_core.tpe import temporal_positional_encoding  # noqa: E402


def psnr(output: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1], measured on the [0, 1] scale."""
    mse = ((output - reference) / 2).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def mean_level_difference(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean absolute difference in 8-bit levels after the authors' tensor2im ((y+1)/2*255, clip, truncate)."""
    def to_uint8(image: torch.Tensor) -> torch.Tensor:
        return ((image.double() + 1) / 2 * 255).clamp(0, 255).to(torch.uint8)
    return (to_uint8(output).float() - to_uint8(reference).float()).abs().mean().item()


@torch.no_grad()
def calibrate_batchnorm(model: RenderGenerator, batch: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to the batch statistics of one pass over ``batch``."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None          # cumulative average: one pass sets the exact batch statistics
    model.train()
    model(batch)
    model.eval()


def make_batches(config: RendererConfig, frames: int, batch_size: int, device: torch.device) -> list[torch.Tensor]:
    """Random condition/reference images in [-1, 1] + the real TPE for frames 0..frames-1."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, frames, batch_size):
        indices = list(range(start, min(start + batch_size, frames)))
        images = torch.rand(len(indices), 6, config.image_size, config.image_size, generator=generator) * 2 - 1
        tpe = temporal_positional_encoding(indices, config.image_size, config.image_size)
        batches.append(torch.cat([images, tpe], dim=1).to(device))
    return batches


def time_variants(models: dict[bool, RenderGenerator], batches: list[torch.Tensor],
                  variants: list[tuple[str, bool]], warmup: int) -> dict[tuple[str, bool], tuple[float, torch.Tensor]]:
    """{(precision, channels_last): (frames per second, concatenated outputs)}.

    Variants take turns batch by batch, so a change in machine load hits them all alike.
    """
    synchronize = torch.cuda.synchronize if batches[0].device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        for precision, channels_last in variants:
            render(models[channels_last], batches[0], precision=precision, channels_last=channels_last)
    seconds = dict.fromkeys(variants, 0.0)
    outputs: dict[tuple[str, bool], list[torch.Tensor]] = {variant: [] for variant in variants}
    for batch in batches:
        for precision, channels_last in variants:
            synchronize()
            start = time.perf_counter()
            output = render(models[channels_last], batch, precision=precision, channels_last=channels_last)
            synchronize()
            seconds[(precision, channels_last)] += time.perf_counter() - start
            outputs[(precision, channels_last)].append(output.cpu())
    frames = sum(batch.shape[0] for batch in batches)
    return {variant: (frames / seconds[variant], torch.cat(outputs[variant])) for variant in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4, help="frames timed per variant (default 4)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes over the first batch per variant")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.frames < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--frames and --batch-size must be >= 1, --warmup >= 0")

    device = torch.device(args.device)
    config = RendererConfig()
    torch.manual_seed(0)
    model = RenderGenerator(config).to(device).eval()
    batches = make_batches(config, args.frames, args.batch_size, device)
    calibrate_batchnorm(model, batches[0])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"renderer ngf={config.ngf} levels={config.num_levels} {config.image_size}x{config.image_size}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params; device: {name}; torch {torch.__version__}")
    print(f"frames={args.frames} batch_size={args.batch_size} warmup={args.warmup}")

    models = {False: model, True: copy.deepcopy(model).to(memory_format=torch.channels_last)}
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    variants = [(precision, channels_last) for precision in precisions for channels_last in (False, True)]
    results = time_variants(models, batches, variants, args.warmup)
    reference_fps, reference = results[("fp32", False)]
    print(f"{'precision':<10} {'channels_last':<14} {'frames/s':>10} {'speed-up':>9} {'PSNR vs fp32 (dB)':>18} "
          f"{'mean |diff| (8-bit)':>20}")
    for (precision, channels_last), (fps, output) in results.items():
        print(f"{precision:<10} {str(channels_last):<14} {fps:>10.3f} {fps / reference_fps:>8.2f}x "
              f"{psnr(output, reference):>18.2f} {mean_level_difference(output, reference):>20.3f}")


if __name__ == "__main__":
    main()
