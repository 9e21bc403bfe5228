"""Stage-by-stage speed profile of the pipeline (``moda bench``).

Random weights are fine for speed. Every figure comes from one run on one machine; the renderer's
achieved GFLOP/s is reported against a matrix-multiply peak measured in the same run, so the ratio does
not depend on the machine.
"""
from __future__ import annotations

import copy
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


OVERLAPPED_STAGE = "warp + drawing + renderer + encoding, overlapped"
WARP_SETUP_STAGE = "warp renderer set-up"      # once per clip (person mask, mesh): not scaled per frame


@contextmanager
def _timed_calls(module, name: str, times: StageTimes, stage: str):
    """Time every call of ``module.name`` (a function the measured code looks up there) as ``stage``."""
    original = getattr(module, name)

    def timed(*args, **kwargs):
        with times.measure(stage):
            return original(*args, **kwargs)

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, original)


@torch.no_grad()
def profile_pipeline(models, wave: np.ndarray, subject, *, precision: str = "fp32", batch_size: int = 4,
                     max_render_frames: int | None = None, renderer=None, models_dir=None,
                     overlap: bool = False) -> dict:
    """Time each stage of ``animate`` on ``wave`` (16 kHz mono); returns a dict of figures.

    ``renderer``: a :class:`~moda_core.render_backends.RendererBackend` to render with (default: the module
    ``models.renderer`` in ``precision``). A ``warped_reference`` renderer's reference frames come from the warp
    renderer (its person mask from the MediaPipe models in ``models_dir``): its set-up and per-frame warp are
    stages of their own. ``overlap``: render as ``animate`` does with ``overlap_stages`` (warp and drawing in a
    worker thread, H.264 in another, while torch renders): one stage, :data:`OVERLAPPED_STAGE`, of wall time."""
    from moda_core import pipeline
    from moda_core.drawing import draw_condition_images
    from moda_core.pipeline import AnimateOptions, compose_face, motion_repr, reference_at, render_batch
    from moda_core.projection import project_repr
    from moda_core.render_settings import RenderSettings
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
    renderer = renderer if renderer is not None else models.renderer
    size, warped = renderer.config.image_size, renderer.config.warped_reference
    settings = RenderSettings()
    options = AnimateOptions(batch_size=batch_size, precision=precision, models_dir=models_dir,
                             overlap_stages=overlap)
    rendered = 0
    scratch = tempfile.TemporaryDirectory()
    writer = VideoWriter(Path(scratch.name) / "bench.mp4", fps, audio=(wave, SAMPLE_RATE), background=overlap)
    try:
        if overlap:                                     # animate's own streaming code, timed as a whole
            stream_models = copy.copy(models)
            stream_models.renderer_backend, stream_models.render_settings = renderer, settings
            with _timed_calls(pipeline, "reference_warp", times, WARP_SETUP_STAGE), \
                    times.measure(OVERLAPPED_STAGE):
                for frames in pipeline.render_stream(stream_models, r, subject, options):
                    writer.write(frames)
                    rendered += frames.shape[0]
                writer.close()                          # the encoder's last frames and the audio
            times.seconds[OVERLAPPED_STAGE] -= times.seconds.get(WARP_SETUP_STAGE, 0.0)
        else:
            with times.measure("projection + drawing"):
                face, torso = project_repr(r, subject, face_center=settings.face_center)
            if warped:
                with times.measure(WARP_SETUP_STAGE):
                    warp = pipeline.reference_warp(subject, size, settings.face_center, models_dir)
                face_xy, torso_xy = face[..., :2].numpy(), torso[..., :2].numpy()
            else:
                reference = reference_at(subject, size)
            for start in range(0, r.num_frames, batch_size):
                stop = min(start + batch_size, r.num_frames)
                with times.measure("projection + drawing"):
                    conditions = draw_condition_images(face[start:stop, :, :2], torso[start:stop, :, :2], size=size,
                                                       as_uint8=warped)
                if warped:
                    with times.measure("warp (reference frames)"):
                        reference = torch.from_numpy(warp.render_points(face_xy[start:stop], torso_xy[start:stop]))
                with times.measure("renderer"):
                    frames = render_batch(renderer, conditions, reference, start, tpe=settings.tpe,
                                          precision=precision)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                with times.measure("video encoding"):
                    writer.write(frames)
                rendered += frames.shape[0]
            with times.measure("video encoding"):
                writer.close()                          # the encoder's lookahead frames and the audio
    except BaseException:
        writer.abort()
        raise
    finally:
        scratch.cleanup()
    return {"frames": rendered, "motion_frames": num_frames, "times": times.seconds, "total": times.total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def format_report(result: dict, flops_per_frame: int, peaks: dict[str, float], precision: str) -> str:
    times, total, frames = result["times"], result["total"], result["frames"]
    lines = [f"{'stage':48s} {'seconds':>9s} {'share':>7s} {'ms/frame':>9s}"]
    for stage, seconds in times.items():
        per_frame = "" if stage in FIXED_STAGES else f"{seconds / max(frames, 1) * 1e3:9.1f}"
        lines.append(f"{stage:48s} {seconds:9.3f} {seconds / total:7.1%} {per_frame}")
    lines.append(f"{'total':48s} {total:9.3f}")
    if "renderer" not in times:                  # overlapped stages: no renderer-alone figure
        lines.append(f"frames rendered: {frames}; end to end {frames / total:.2f} frames/s (stages overlapped)")
        lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
        return "\n".join(lines)
    render_s = times["renderer"]
    lines.append(f"frames rendered: {frames}; end to end {frames / total:.2f} frames/s; "
                 f"renderer alone {frames / max(render_s, 1e-9):.2f} frames/s")
    lines.append(f"everything but the renderer: {(total - render_s) / total:.1%} of wall time (target <= 10%)")
    achieved = flops_per_frame * frames / max(render_s, 1e-9) / 1e9
    lines.append(f"renderer: {flops_per_frame / 1e9:.1f} GFLOP/frame, achieved {achieved:.1f} GFLOP/s")
    for name, peak in peaks.items():
        lines.append(f"matmul peak {name}: {peak:.1f} GFLOP/s -> renderer ({precision}) at {achieved / peak:.1%} of it")
    lines.append(f"peak RSS: {result['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- --compare-authors
# The authors' inference on this kind of 2-core CPU (shared/reference/performance-anchors.md, 8 s audio column):
# everything but their renderer, which the comparison measures now.
AUTHORS_FIXED_SECONDS = 13.5          # two Python start-ups, model building and loading
AUTHORS_PER_AUDIO_SECOND = (0.25 + 0.43 + 1.4) / 8   # audio load + wav2vec2/MODA/FaCo + mux, per audio second
AUTHORS_PER_FRAME = (2.1 + 1.1) / 240                # draw + write the feature video + extract PNGs, per frame


def backend_variants(device: torch.device, openvino: bool = True) -> tuple[list[tuple[str, str]], list[str]]:
    """([(backend, precision)] worth timing on ``device``, [why others are skipped]): fp32 and the precisions the
    device runs fast, on torch and (CPU, when installed) OpenVINO in the precisions its CPU plug-in offers."""
    from moda_core.render_backends import device_precisions, openvino_available

    fast = device_precisions(device)
    variants = [("torch", p) for p, ok in fast.items() if ok]
    skipped = [f"torch {p}: skipped, no fast {p} on this device" for p, ok in fast.items() if not ok]
    if device.type == "cpu" and openvino and openvino_available():
        import openvino as ov

        offered = {c.lower() for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")}
        for precision, capability in (("fp32", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")):
            if capability in offered:
                variants.append(("openvino", precision))
            else:
                skipped.append(f"openvino {precision}: skipped, not offered by OpenVINO on this CPU")
    elif device.type == "cpu" and openvino:
        skipped.append("openvino: skipped, not installed (pip install comfyui-moda[openvino])")
    return variants, skipped


def make_backend(renderer: torch.nn.Module, backend: str, precision: str, cache_dir=None, compile: bool = False,
                 batch_size: int | None = None, weights_hash: str | None = None):
    """A backend over a copy of ``renderer`` (backends prepare their module in place)."""
    from moda_core.render_backends import OpenVINOBackend, TorchBackend

    model = copy.deepcopy(renderer)
    if backend == "openvino":
        return OpenVINOBackend(model, precision, weights_hash=weights_hash, cache_dir=cache_dir, log=None)
    return TorchBackend(model, precision, compile=compile, batch_size=batch_size)


def renderer_inputs(config, frames: int, batch_size: int) -> list[torch.Tensor]:
    """Random condition/reference images in [-1, 1] + the TPE of frames 0..frames-1, in batches."""
    from moda_core.models.renderer import IMAGE_CHANNELS
    from moda_core.tpe import temporal_positional_encoding

    generator = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, frames, batch_size):
        indices = list(range(start, min(start + batch_size, frames)))
        images = torch.rand(len(indices), IMAGE_CHANNELS, config.image_size, config.image_size, generator=generator) * 2 - 1
        batches.append(torch.cat([images, temporal_positional_encoding(indices, config.image_size,
                                                                       config.image_size)], dim=1))
    return batches


def interleaved_seconds_per_frame(runs: dict, batches: list[torch.Tensor], device: torch.device,
                                  between=None) -> dict:
    """{name: seconds per frame} of each ``run(batch)``; the runs take turns batch by batch (after one untimed
    call each), so a change in machine load hits them all alike. ``between()`` runs after each round (e.g. a
    matrix-multiply peak measured in the same turns)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for run in runs.values():
        run(batches[0].to(device))
    seconds = dict.fromkeys(runs, 0.0)
    for batch in batches:
        batch = batch.to(device)
        for name, run in runs.items():
            sync()
            start = time.perf_counter()
            run(batch)
            sync()
            seconds[name] += time.perf_counter() - start
        if between is not None:
            between()
    frames = sum(batch.shape[0] for batch in batches)
    return {name: total / frames for name, total in seconds.items()}


def startup_seconds() -> float:
    """Wall time of a fresh Python process importing the pipeline and the CLI (our one start-up)."""
    import subprocess
    import sys

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import moda_core.pipeline, moda_core.cli, torch"], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def save_weights(models, folder: Path) -> None:
    from moda_core.checkpoints import save_model
    from moda_core.pipeline import WEIGHT_FILES

    for kind, name in WEIGHT_FILES.items():
        save_model(getattr(models, kind), folder / name)


def load_seconds(folder: Path, backend, device, cache_dir=None) -> float:
    """Wall time of loading the three weight files of ``folder`` with ``backend``'s name and precision."""
    from moda_core.pipeline import MODAModels

    start = time.perf_counter()
    MODAModels.load(folder, device=device, precision=backend.precision, backend=backend.name, cache_dir=cache_dir)
    return time.perf_counter() - start


MOTION_STAGES = ("audio features (wav2vec2)", "MODA", "FaCo-Net + smoothing")
FIXED_STAGES = MOTION_STAGES + (WARP_SETUP_STAGE,)     # once per clip, whatever its length


def motion_seconds(times: dict[str, float]) -> float:
    """Seconds of the motion stages (whole clip) in a :func:`profile_pipeline` times dict."""
    return sum(times.get(stage, 0.0) for stage in MOTION_STAGES)


def end_to_end(result: dict, fixed: float = 0.0) -> tuple[float, float]:
    """(seconds per audio second, frames/s end to end) for the whole clip, from a run that may have rendered
    only its first frames: motion stages (whole clip) and the warp set-up as measured, per-frame stages scaled
    to every frame."""
    times, fps = result["times"], 30.0
    once = sum(times.get(stage, 0.0) for stage in FIXED_STAGES)
    per_frame = sum(s for stage, s in times.items() if stage not in FIXED_STAGES) / max(result["frames"], 1)
    frames = result["motion_frames"]
    total = fixed + once + per_frame * frames
    return total / (frames / fps), frames / total


def compare_authors(models, wave: np.ndarray, subject, *, device: torch.device, frames: int, backend: str = "auto",
                    precision: str = "auto", batch_size: int = 8, cache_dir=None, compile: bool = False,
                    openvino: bool = True, fast_config=None, fast_frames: int | None = None,
                    models_dir=None, log=print) -> dict:
    """The figures of ``moda bench --compare-authors`` (see :func:`format_comparison`), all measured in one run."""
    from moda_core.checkpoints import content_hash
    from moda_core.models.renderer import prepare_for_inference, render
    from moda_core.pipeline import WEIGHT_FILES
    from moda_core.render_backends import PRECISION_DTYPES, select_backend

    scratch = tempfile.TemporaryDirectory()
    folder = Path(scratch.name)
    save_weights(models, folder)
    weights_hash = content_hash(folder / WEIGHT_FILES["renderer"])      # as MODAModels.load keys the IR cache
    renderer = models.renderer
    config = renderer.config
    figures = {"frames": frames, "audio_seconds": len(wave) / SAMPLE_RATE, "size": config.image_size,
               "device": str(device)}
    flops = renderer_flops(renderer)
    figures["gflop_per_frame"] = flops / 1e9
    batches = renderer_inputs(config, frames, batch_size)
    best = select_backend(copy.deepcopy(renderer), device, backend, precision, weights_hash=weights_hash,
                          cache_dir=cache_dir, compile=compile, batch_size=batch_size, log=log)
    figures["ours_backend"] = f"{best.name} {best.precision}"
    authors_model = prepare_for_inference(copy.deepcopy(renderer), "fp32", channels_last=False)
    runs = {"authors": lambda x, model=authors_model: torch.cat([render(model, x[i:i + 1])
                                                                 for i in range(x.shape[0])])}
    del authors_model                                   # held by the run only; freed with it
    variants, figures["skipped"] = backend_variants(device, openvino)
    if (best.name, best.precision) not in variants:
        variants.append((best.name, best.precision))
    for name, variant_precision in variants:
        if (name, variant_precision) == (best.name, best.precision):
            runs[(name, variant_precision)] = best
            continue
        try:
            runs[(name, variant_precision)] = make_backend(renderer, name, variant_precision, cache_dir, compile,
                                                           batch_size, weights_hash)
        except Exception as err:                       # noqa: BLE001 - reported, the bench goes on
            figures["skipped"].append(f"{name} {variant_precision}: failed ({str(err).splitlines()[0][:120]})")
    peaks = {run.precision: 0.0 for key, run in runs.items() if key != "authors"}

    def measure_peaks():                                # in the same turns as the renderers; best of the rounds
        for name in peaks:
            peaks[name] = max(peaks[name], matmul_peak_gflops(PRECISION_DTYPES[name], repeats=2, device=str(device)))

    seconds = interleaved_seconds_per_frame(runs, batches, device, between=measure_peaks)
    figures["authors_renderer"] = seconds.pop("authors")
    runs.pop("authors")                                 # frees the authors' copy of the renderer
    timed = []
    for key, per_frame in seconds.items():
        runs_in = runs[key].precision
        timed.append({"backend": key[0], "precision": runs_in, "fps": 1 / per_frame,
                      "gflops": flops / per_frame / 1e9, "peak": peaks[runs_in]})
    figures["backends"], figures["peaks"] = timed, peaks
    figures["ours_renderer"] = seconds[(best.name, best.precision)]

    result = profile_pipeline(models, wave, subject, batch_size=batch_size, max_render_frames=frames,
                              renderer=best)
    runs.clear()
    figures["ours_times"] = result["times"]
    figures["ours_streaming_renderer"] = result["times"]["renderer"] / result["frames"]
    figures["ours_startup"] = startup_seconds()
    figures["ours_load"] = load_seconds(folder, best, device, cache_dir)
    scratch.cleanup()
    figures["ours_other_per_frame"] = (result["times"]["projection + drawing"]
                                       + result["times"]["video encoding"]) / result["frames"]
    audio_seconds, fps = figures["audio_seconds"], 30.0
    motion = motion_seconds(result["times"])
    figures["ours_per_audio_second"] = ((figures["ours_startup"] + figures["ours_load"] + motion) / audio_seconds
                                        + fps * (figures["ours_renderer"] + figures["ours_other_per_frame"]))
    figures["authors_per_audio_second"] = (AUTHORS_FIXED_SECONDS / audio_seconds + AUTHORS_PER_AUDIO_SECOND
                                           + fps * (AUTHORS_PER_FRAME + figures["authors_renderer"]))
    figures["speedup"] = figures["authors_per_audio_second"] / figures["ours_per_audio_second"]
    del best

    if fast_config is not None:
        from moda_core.models.renderer import RenderGenerator

        torch.manual_seed(0)
        fast = RenderGenerator(fast_config).to(device).eval()
        fast_backend = select_backend(fast, device, backend, precision, cache_dir=cache_dir, compile=compile,
                                      batch_size=batch_size, log=log)
        stages = profile_pipeline(models, wave, subject, batch_size=batch_size, max_render_frames=fast_frames,
                                  renderer=fast_backend, models_dir=models_dir)
        overlapped = profile_pipeline(models, wave, subject, batch_size=batch_size, max_render_frames=fast_frames,
                                      renderer=fast_backend, models_dir=models_dir, overlap=True)
        _, figures["fast_fps"] = end_to_end(overlapped)
        _, figures["fast_sequential_fps"] = end_to_end(stages)
        figures["fast_backend"] = f"{fast_backend.name} {fast_backend.precision}"
        figures["fast_frames"] = stages["frames"]
        figures["fast_renderer_fps"] = stages["frames"] / stages["times"]["renderer"]
        figures["fast_stage_ms"] = {stage: seconds / stages["frames"] * 1e3 for stage, seconds in stages["times"].items()
                                    if stage not in FIXED_STAGES}
        figures["fast_warp_setup"] = stages["times"].get(WARP_SETUP_STAGE)
        figures["fast_threads"] = torch.get_num_threads()
    return figures


def format_comparison(f: dict) -> str:
    """The report of :func:`compare_authors`; its last two lines are ``speedup vs authors: X.Xx`` and
    ``fast renderer: N.N frames/s end to end`` (or why it was not measured)."""
    seconds, frames = f["audio_seconds"], round(f["audio_seconds"] * 30)
    lines = [f"compare with the authors: {seconds:g} s of audio ({frames} frames at 30 fps), renderer "
             f"{f['size']} px ({f['gflop_per_frame']:.1f} GFLOP/frame), {f['frames']} frames timed, device "
             f"{f['device']}",
             "backend        precision  frames/s   GFLOP/s  % of matmul peak (same precision)"]
    for b in f["backends"]:
        lines.append(f"{b['backend']:<14} {b['precision']:<9} {b['fps']:>9.3f} {b['gflops']:>9.1f}  "
                     f"{b['gflops'] / b['peak']:>6.1%} of {b['peak']:.1f} GFLOP/s")
    lines += [f"  {reason}" for reason in f["skipped"]]
    lines.append(f"authors, measured now: renderer torch fp32, plain layout, one frame per call: "
                 f"{f['authors_renderer']:.3f} s/frame (timed in turns with the backends above)")
    lines.append(f"authors, from performance-anchors.md (not measured now): {AUTHORS_FIXED_SECONDS:g} s fixed "
                 f"(two Python start-ups, model loading) + {AUTHORS_PER_AUDIO_SECOND:.3f} s per audio second (audio "
                 f"load, wav2vec2/MODA/FaCo, mux) + {AUTHORS_PER_FRAME:.4f} s per frame (feature video, PNGs)")
    lines.append(f"authors: {f['authors_per_audio_second']:.2f} s per audio second")
    motion = motion_seconds(f["ours_times"])
    lines.append(f"ours, measured now: backend {f['ours_backend']}: start-up {f['ours_startup']:.2f} s + loading "
                 f"{f['ours_load']:.2f} s + motion {motion:.2f} s (whole clip) + renderer {f['ours_renderer']:.3f} "
                 f"s/frame + drawing/encoding {f['ours_other_per_frame']:.4f} s/frame (streaming run; its renderer "
                 f"took {f['ours_streaming_renderer']:.3f} s/frame)")
    lines.append(f"ours: {f['ours_per_audio_second']:.2f} s per audio second")
    lines.append(f"speedup vs authors: {f['speedup']:.1f}x")
    if "fast_fps" in f:
        stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in f["fast_stage_ms"].items())
        setup = "" if f["fast_warp_setup"] is None else f"; warp renderer set-up {f['fast_warp_setup']:.2f} s once"
        lines[-1:-1] = [
            f"fast renderer: backend {f['fast_backend']}, renderer alone {f['fast_renderer_fps']:.1f} frames/s "
            f"({f['fast_frames']} frames rendered; start-up and loading not counted)",
            f"fast renderer, one stage after another (ms/frame): {stages}{setup}; "
            f"{f['fast_sequential_fps']:.1f} frames/s end to end",
            f"fast renderer, stages overlapped as in moda animate (warp + drawing and H.264 in worker threads, "
            f"torch {f['fast_threads']} threads): {f['fast_fps']:.1f} frames/s end to end"]
        lines.append(f"fast renderer: {f['fast_fps']:.1f} frames/s end to end")
    else:
        lines.append(f"fast renderer: not available ({f.get('fast_missing', 'no fast preset')})")
    return "\n".join(lines)
