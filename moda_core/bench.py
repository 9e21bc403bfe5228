"""Stage-by-stage speed profile of the pipeline (``moda bench``).

Random weights are fine for speed. Every figure comes from one run on one machine; the renderer's
achieved GFLOP/s is reported against a matrix-multiply peak measured in the same run, so the ratio does
not depend on the machine.
"""
from __future__ import annotations

import resource
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from moda_core.models.audio_encoder import SAMPLE_RATE, frames_for_samples, normalise_waveform


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, stage: str):
        start = time.perf_counter()
        yield
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Best-of GFLOP/s of a square matrix multiply (2 n^3 flops)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def renderer_flops(renderer: torch.nn.Module) -> int:
    """Floating-point operations of one renderer forward pass (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    size, channels = renderer.config.image_size, renderer.config.in_channels
    x = torch.zeros(1, channels, size, size, device=next(renderer.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        renderer(x)
    return counter.get_total_flops()


def build_models(config: str, device: str = "cpu"):
    """Random-weight networks: ``"paper"`` (authors' sizes) or ``"tiny"``."""
    from moda_core.models.faco import FaCoConfig, FaCoNet
    from moda_core.models.moda import MODAConfig, MODANet
    from moda_core.models.renderer import RendererConfig, RenderGenerator
    from moda_core.pipeline import MODAModels

    if config not in ("paper", "tiny"):
        raise ValueError(f"config must be 'paper' or 'tiny', got {config!r}")
    pick = (lambda cls: cls()) if config == "paper" else (lambda cls: cls.tiny())
    torch.manual_seed(0)
    models = MODAModels(MODANet(pick(MODAConfig)), FaCoNet(pick(FaCoConfig)), RenderGenerator(pick(RendererConfig)))
    for net in (models.moda, models.faco, models.renderer):
        net.to(device).eval()
    return models


@torch.no_grad()
def profile_pipeline(models, wave: np.ndarray, subject, *, precision: str = "fp32", batch_size: int = 4,
                     max_render_frames: int | None = None) -> dict:
    """Time each stage of ``animate`` on ``wave`` (16 kHz mono); returns a dict of figures."""
    from moda_core.pipeline import compose_face, condition_batches, motion_repr, reference_at, render_batch
    from moda_core.smoothing import smooth_motion
    from moda_core.video import VideoWriter

    times = StageTimes()
    device = models.device
    fps = 30.0
    num_frames = frames_for_samples(len(wave), fps)
    inputs = normalise_waveform(torch.from_numpy(np.asarray(wave, np.float32))).to(device)
    style = subject.style_vector().to(device)
    if num_frames > models.moda.config.max_seq_len:
        raise ValueError(f"bench audio must fit one MODA window ({models.moda.config.max_seq_len} frames at 30 fps)")
    with times.measure("audio features (wav2vec2)"):
        features = models.moda.encode_audio(inputs[None], num_frames)
    with times.measure("MODA"):
        out = models.moda(features, style[None], generator=torch.Generator().manual_seed(0))
    r = smooth_motion(motion_repr([out], fps))
    with times.measure("FaCo-Net + smoothing"):
        r = compose_face(models.faco, r, subject)
    if max_render_frames is not None:
        r = r.slice_time(0, min(max_render_frames, r.num_frames))
    size = models.render_size
    reference = reference_at(subject, size)
    rendered = 0
    with tempfile.TemporaryDirectory() as scratch, \
            VideoWriter(Path(scratch) / "bench.mp4", fps, audio=(wave, SAMPLE_RATE)) as writer:
        batches = condition_batches(r, subject, batch_size=batch_size, size=size)
        while True:
            with times.measure("projection + drawing"):
                item = next(batches, None)
            if item is None:
                break
            start, conditions = item
            with times.measure("renderer"):
                frames = render_batch(models.renderer, conditions, reference, start, precision=precision)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            with times.measure("video encoding"):
                writer.write(frames)
            rendered += frames.shape[0]
    return {"frames": rendered, "motion_frames": num_frames, "times": times.seconds, "total": times.total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def format_report(result: dict, flops_per_frame: int, peaks: dict[str, float], precision: str) -> str:
    times, total = result["times"], result["total"]
    lines = [f"{'stage':28s} {'seconds':>9s} {'share':>7s}"]
    for stage, seconds in times.items():
        lines.append(f"{stage:28s} {seconds:9.3f} {seconds / total:7.1%}")
    render_s = times.get("renderer", 0.0)
    frames = result["frames"]
    lines.append(f"{'total':28s} {total:9.3f}")
    lines.append(f"frames rendered: {frames}; end to end {frames / total:.2f} frames/s; "
                 f"renderer alone {frames / max(render_s, 1e-9):.2f} frames/s")
    lines.append(f"everything but the renderer: {(total - render_s) / total:.1%} of wall time (target <= 10%)")
    achieved = flops_per_frame * frames / max(render_s, 1e-9) / 1e9
    lines.append(f"renderer: {flops_per_frame / 1e9:.1f} GFLOP/frame, achieved {achieved:.1f} GFLOP/s")
    for name, peak in peaks.items():
        lines.append(f"matmul peak {name}: {peak:.1f} GFLOP/s -> renderer ({precision}) at {achieved / peak:.1%} of it")
    lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)
