"""Where the renderer's FLOPs and time go, level by level, for the paper-size and the compact ("fast") layouts,
and the fast renderer's end-to-end frames/s (audio -> encoded mp4) at 512 px.

    python benchmarks/bench_fast_renderer.py [--threads 2] [--repeats 5] [--skip-paper] [--seconds 4]

Random weights (speed does not depend on values). Level k is the work done at that U-Net depth only (its
down conv, residual blocks, up conv; the levels below it excluded); "io" is pixel (un)shuffle, the reference
residual and the final tanh. Times are CPU time of this process (core-ms, all threads; less disturbed by other
processes than wall time on a shared machine), best of ``--repeats`` runs, plus the best wall time of the whole
pass. bf16 runs only where oneDNN has bf16 kernels (AVX-512 BF16 / AMX); elsewhere torch falls back to slow
reference convolutions.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from moda_core.models.renderer import RendererConfig, RenderGenerator, UNetLevel, prepare_for_inference, render


def _levels(net: RenderGenerator) -> list[UNetLevel]:
    levels, level = [], net.netG.model
    while level is not None:
        levels.append(level)
        level = next((m for m in level.model if isinstance(m, UNetLevel)), None)
    return levels


def level_flops(net: RenderGenerator) -> tuple[list[float], float]:
    """(GFLOP of each level's own layers, total GFLOP) of one 1-frame forward pass."""
    cfg = net.config
    x = torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    counts = counter.get_flop_counts()
    names = {id(m): name for name, m in net.named_modules()}
    inclusive = [sum(counts.get(f"RenderGenerator.{names[id(level)]}", {}).values()) / 1e9
                 for level in _levels(net)]
    own = [inc - (inclusive[i + 1] if i + 1 < len(inclusive) else 0.0) for i, inc in enumerate(inclusive)]
    return own, counter.get_total_flops() / 1e9


def level_times(net: RenderGenerator, x: torch.Tensor, repeats: int) -> tuple[list[float], float]:
    """(CPU ms of each level's own layers, total CPU ms, total wall ms), best of ``repeats`` per entry."""
    levels = _levels(net)
    starts, inclusive = {}, defaultdict(list)

    def pre(module, _):
        starts[id(module)] = time.process_time()

    def post(module, _, __):
        inclusive[id(module)].append(time.process_time() - starts[id(module)])

    hooks = [h for level in levels for h in (level.register_forward_pre_hook(pre), level.register_forward_hook(post))]
    totals, walls = [], []
    try:
        render(net, x)                                   # warm-up (oneDNN kernel selection)
        inclusive.clear()
        for _ in range(repeats):
            start, wall = time.process_time(), time.perf_counter()
            render(net, x)
            totals.append(time.process_time() - start)
            walls.append(time.perf_counter() - wall)
    finally:
        for h in hooks:
            h.remove()
    best = [min(inclusive[id(level)]) * 1e3 for level in levels]
    own = [b - (best[i + 1] if i + 1 < len(best) else 0.0) for i, b in enumerate(best)]
    return own, min(totals) * 1e3, min(walls) * 1e3


def level_table(name: str, config: RendererConfig, repeats: int, precisions=("fp32",)) -> str:
    torch.manual_seed(0)
    flops, total_flops = level_flops(RenderGenerator(config).eval())
    x = torch.rand(1, config.in_channels, config.image_size, config.image_size) * 2 - 1
    times = {}
    for precision in precisions:
        net = prepare_for_inference(RenderGenerator(config), precision)
        times[precision] = level_times(net, x, repeats)
    internal = config.image_size // config.space_to_depth
    lines = [f"{name}: {config}", f"{'level':>5s} {'px':>5s} {'width':>5s} {'GFLOP':>7s} {'share':>6s}"
             + "".join(f" {p + ' cpu ms':>11s} {p + ' share':>10s}" for p in precisions)]
    for k, gflop in enumerate(flops, start=1):
        row = f"{k:5d} {internal >> (k - 1):5d} {config.level_width(k):5d} {gflop:7.2f} {gflop / total_flops:6.1%}"
        for p in precisions:
            own, total, _ = times[p]
            row += f" {own[k - 1]:11.1f} {own[k - 1] / total:10.1%}"
        lines.append(row)
    io_flops = total_flops - sum(flops)
    row = f"{'io':>5s} {'':5s} {'':5s} {io_flops:7.2f} {io_flops / total_flops:6.1%}"
    for p in precisions:
        own, total, _ = times[p]
        row += f" {total - sum(own):11.1f} {(total - sum(own)) / total:10.1%}"
    lines.append(row)
    row = f"{'total':>5s} {'':5s} {'':5s} {total_flops:7.2f} {'':6s}"
    for p in precisions:
        row += f" {times[p][1]:11.1f} {'':10s}"
    lines.append(row)
    for p in precisions:
        lines.append(f"{p}: {times[p][1]:.1f} CPU ms/frame ({1e3 / times[p][1]:.1f} frames/s per core), best wall "
                     f"{times[p][2]:.1f} ms ({1e3 / times[p][2]:.1f} frames/s on {torch.get_num_threads()} threads)")
    return "\n".join(lines)


def end_to_end(config: RendererConfig, seconds: float, precision: str, batch_size: int) -> str:
    """The pipeline (wav2vec2, MODA, FaCo-Net at the authors' sizes, drawing, renderer, H.264) on speech."""
    from pathlib import Path

    from moda_core.bench import format_report, profile_pipeline, renderer_flops
    from moda_core.models.faco import FaCoConfig, FaCoNet
    from moda_core.models.moda import MODAConfig, MODANet
    from moda_core.pipeline import MODAModels
    from moda_core.preprocess import load_audio, subject_from_photo

    samples = Path(__file__).resolve().parent.parent / "samples"
    torch.manual_seed(0)
    renderer = prepare_for_inference(RenderGenerator(config), precision)
    models = MODAModels(MODANet(MODAConfig()).eval(), FaCoNet(FaCoConfig()).eval(), renderer)
    subject, _ = subject_from_photo(samples / "portrait.jpg", models_dir=samples / "models")
    wave, rate = load_audio(samples / "speech.wav")
    wave = np.resize(wave, int(seconds * rate))
    flops = renderer_flops(RenderGenerator(config))
    start, cpu = time.perf_counter(), time.process_time()
    result = profile_pipeline(models, wave, subject, precision=precision, batch_size=batch_size)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    frames, threads = result["frames"], torch.get_num_threads()
    bench_module = sys.modules[profile_pipeline.__module__]
    bench_module.time = SimpleNamespace(perf_counter=time.process_time)    # the same stages in CPU seconds
    try:
        cpu_result = profile_pipeline(models, wave, subject, precision=precision, batch_size=batch_size)
    finally:
        bench_module.time = time
    return ("wall clock:\n" + format_report(result, flops, {}, precision)
            + "\nCPU time of this process (same run repeated; other processes' load mostly excluded):\n"
            + format_report(cpu_result, flops, {}, precision)
            + f"\nwall time per frame: {wall / frames * 1e3:.1f} ms ({frames / wall:.1f} frames/s end to end)"
            + f"\nCPU time per frame (all threads, PyAV encoding included): {cpu / frames * 1e3:.1f} ms; "
              f"{threads} uncontended cores at this CPU time: <= {frames * threads / cpu:.1f} frames/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-paper", action="store_true", help="only the fast layout (the paper size is slow)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio seconds of the end-to-end run (0: skip)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="end-to-end precision")
    parser.add_argument("--bf16", action="store_true", help="also time the levels in bf16")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions = ("fp32", "bf16") if args.bf16 else ("fp32",)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN bf16 kernels: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    if not args.skip_paper:
        print(level_table("paper-size", RendererConfig(), max(1, args.repeats // 3), precisions), flush=True)
    print(level_table("fast", RendererConfig.fast(), args.repeats, precisions), flush=True)
    if args.seconds > 0:
        print(f"end to end, fast renderer, {args.precision}, {args.seconds:g} s of speech:", flush=True)
        print(end_to_end(RendererConfig.fast(), args.seconds, args.precision, args.batch_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
