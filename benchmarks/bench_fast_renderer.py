"""Where the renderer's FLOPs and time go, level by level, for the paper-size and the compact ("fast") layouts,
and the fast renderer's end-to-end frames/s (audio -> encoded mp4) at 512 px.

    python benchmarks/bench_fast_renderer.py [--threads 2] [--repeats 5] [--skip-paper] [--seconds 4]
                                             [--e2e-threads 1,2]

End to end includes the warp renderer's frames (the fast layout's warped reference) and is measured stage by
stage and with the stages overlapped as ``moda animate`` runs them, for each ``--e2e-threads`` torch setting.

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


def end_to_end(config: RendererConfig, seconds: float, precision: str, batch_size: int,
               thread_counts: tuple[int, ...] = (1, 2)) -> str:
    """The pipeline (wav2vec2, MODA, FaCo-Net at the authors' sizes, warp + drawing, renderer, H.264) on speech:
    stage by stage (one after another, wall and CPU time) and with the stages overlapped as ``moda animate``
    runs them (warp + drawing and H.264 in worker threads), for each torch intra-op thread count."""
    from pathlib import Path

    from moda_core.bench import end_to_end as whole_clip
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
    bench_module = sys.modules[profile_pipeline.__module__]

    def run(overlap: bool, cpu: bool) -> dict:
        if cpu:                                   # the same stages in CPU seconds of this process (all threads)
            bench_module.time = SimpleNamespace(perf_counter=time.process_time)
        try:
            return profile_pipeline(models, wave, subject, precision=precision, batch_size=batch_size,
                                    models_dir=samples / "models", overlap=overlap)
        finally:
            bench_module.time = time

    threads_before = torch.get_num_threads()
    lines = []
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            wall, cpu = run(False, False), run(False, True)
            lines += [f"--- torch {threads} thread(s), stages one after another, wall clock:",
                      format_report(wall, flops, {}, precision),
                      f"--- torch {threads} thread(s), stages one after another, CPU time of this process:",
                      format_report(cpu, flops, {}, precision)]
            overlapped, overlapped_cpu = run(True, False), run(True, True)
            frames = overlapped["frames"]
            lines += [f"--- torch {threads} thread(s), stages overlapped (as moda animate), wall clock:",
                      format_report(overlapped, flops, {}, precision),
                      f"overlapped, CPU time per frame (all threads, whole clip incl. motion): "
                      f"{overlapped_cpu['total'] / frames * 1e3:.1f} ms",
                      f"END TO END torch {threads} thread(s): one stage after another "
                      f"{whole_clip(wall)[1]:.1f} frames/s, overlapped {whole_clip(overlapped)[1]:.1f} frames/s "
                      f"(wall, {seconds:g} s of speech, {frames} frames)"]
    finally:
        torch.set_num_threads(threads_before)
    return "\n".join(lines)


VARIANTS = {             # warp-refine layouts around RendererConfig.fast() (renderer-alone cost)
    "fast (ngf 16, 6 levels)": {},
    "ngf 32 (the fast layout before)": {"ngf": 32},
    "ngf 24": {"ngf": 24},
    "5 levels": {"num_levels": 5},
    "4 levels": {"num_levels": 4},
    "ngf 24, 5 levels": {"ngf": 24, "num_levels": 5},
    "width cap 2": {"width_cap": 2},
    "outermost plain": {"plain_levels": 1},
    "space-to-depth 8, ngf 32, 5 levels": {"ngf": 32, "space_to_depth": 8, "num_levels": 5},
}


def variant_table(repeats: int, batch_size: int, threads: int) -> str:
    """Renderer alone per layout: GFLOP/frame, best CPU ms/frame on 1 thread and best wall ms/frame on
    ``threads`` threads (fp32, channels-last, TPE as values as render_batch passes them)."""
    from dataclasses import replace

    from moda_core.tpe import tpe_values

    lines = [f"{'layout':38s} {'GFLOP':>6s} {'params':>8s} {'cpu ms 1 thr':>12s} {'wall ms ' + str(threads) + ' thr':>12s}"]
    for name, changes in VARIANTS.items():
        config = replace(RendererConfig.fast(), **changes)
        _, gflop = level_flops(RenderGenerator(config).eval())
        net = prepare_for_inference(RenderGenerator(config), "fp32")
        images = (torch.rand(batch_size, 512, 512, 6) * 2 - 1).permute(0, 3, 1, 2)     # channels-last, as render_batch
        values = tpe_values(range(batch_size))
        best = {}
        for count, clock in ((1, time.process_time), (threads, time.perf_counter)):
            torch.set_num_threads(count)
            render(net, images, tpe=values)
            times = []
            for _ in range(repeats):
                start = clock()
                render(net, images, tpe=values)
                times.append((clock() - start) / batch_size * 1e3)
            best[count] = min(times)
        torch.set_num_threads(threads)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        lines.append(f"{name:38s} {gflop:6.2f} {params:7.2f}M {best[1]:12.1f} {best[threads]:12.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-paper", action="store_true", help="only the fast layout (the paper size is slow)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio seconds of the end-to-end run (0: skip)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="end-to-end precision")
    parser.add_argument("--bf16", action="store_true", help="also time the levels in bf16")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--variants", action="store_true",
                        help="also time smaller warp-refine layouts (renderer alone) next to the fast one")
    parser.add_argument("--e2e-threads", default="1,2",
                        help="torch thread counts of the end-to-end runs, comma-separated (default 1,2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions = ("fp32", "bf16") if args.bf16 else ("fp32",)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN bf16 kernels: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    if not args.skip_paper:
        print(level_table("paper-size", RendererConfig(), max(1, args.repeats // 3), precisions), flush=True)
    print(level_table("fast", RendererConfig.fast(), args.repeats, precisions), flush=True)
    if args.variants:
        print("renderer alone, smaller layouts (fp32):", flush=True)
        print(variant_table(args.repeats, args.batch_size, args.threads), flush=True)
    if args.seconds > 0:
        print(f"end to end, fast renderer, {args.precision}, {args.seconds:g} s of speech:", flush=True)
        print(end_to_end(RendererConfig.fast(), args.seconds, args.precision, args.batch_size,
                         tuple(int(n) for n in args.e2e_threads.split(","))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
