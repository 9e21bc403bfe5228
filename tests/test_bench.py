"""`moda bench` on the tiny config prints every figure; renderer preparation keeps results."""
import re

import pytest
import torch

from moda_core.bench import matmul_peak_gflops, renderer_flops
from moda_core.models.renderer import RendererConfig, RenderGenerator, prepare_for_inference, render


def test_bench_prints_every_stage_and_ratio(capsys, data_dir):
    from moda_core.cli import main
    code = main(["bench", "--config", "tiny", "--seconds", "1.5", "--audio", str(data_dir / "audio" / "zh_news.wav"),
                 "--image", str(data_dir / "portraits" / "macron.png"), "--models", str(data_dir / "models"),
                 "--precision", "fp32", "--backend", "torch"])
    out = capsys.readouterr().out
    assert code == 0
    for stage in ("audio features (wav2vec2)", "MODA", "FaCo-Net + smoothing", "projection + drawing", "renderer",
                  "video encoding", "preprocessing"):
        assert stage in out
    from moda_core.models.audio_encoder import frames_for_samples
    frames = frames_for_samples(int(1.5 * 16000), 30)
    assert re.search(rf"frames rendered: {frames}; end to end [\d.]+ frames/s", out)
    assert re.search(r"matmul peak fp32: [\d.]+ GFLOP/s -> renderer \(fp32\) at [\d.]+% of it", out)
    assert re.search(r"peak RSS: \d+ MB", out)


def test_renderer_flops_and_peak_are_positive():
    model = RenderGenerator(RendererConfig.tiny()).eval()
    flops = renderer_flops(model)
    # the first 3x3 conv alone: 2 * out(2) * in(19) * 9 * (32*32 outputs)
    assert flops > 2 * 2 * 19 * 9 * 32 * 32
    assert matmul_peak_gflops(torch.float32, size=256, repeats=2) > 0


def test_prepared_renderer_matches_plain_fp32():
    torch.manual_seed(0)
    plain = RenderGenerator(RendererConfig.tiny()).eval()
    prepared = RenderGenerator(RendererConfig.tiny())
    prepared.load_state_dict(plain.state_dict())
    prepare_for_inference(prepared, "fp32")
    x = torch.randn(2, 19, 64, 64)
    assert torch.allclose(render(prepared, x), render(plain, x), atol=1e-5)
    prepare_for_inference(prepared, "bf16")
    assert prepared.netG.model.model[0].weight.dtype == torch.bfloat16
    low = render(prepared, x)
    assert low.dtype == torch.float32 and (low - render(plain, x)).abs().max() < 0.1


def _compare_authors(monkeypatch, data_dir, fast_config, *, startup: float, seconds: float, frames: int,
                     fast_frames: int) -> int:
    """`moda bench --compare-authors` (tiny paper config, torch fp32) with ``fast_config`` as the fast preset and
    a fixed start-up time; its exit code."""
    from moda_core import bench
    from moda_core.cli import main
    from moda_core.train import presets

    monkeypatch.setattr(presets, "preset_config", lambda kind, preset: fast_config)
    monkeypatch.setattr(bench, "startup_seconds", lambda: startup)
    return main(["bench", "--compare-authors", "--config", "tiny", "--seconds", str(seconds), "--frames",
                 str(frames), "--fast-frames", str(fast_frames), "--backend", "torch", "--precision", "fp32",
                 "--audio", str(data_dir / "audio" / "zh_news.wav"),
                 "--image", str(data_dir / "portraits" / "macron.png"), "--models", str(data_dir / "models")])


def test_compare_authors_prints_every_figure_and_ends_with_the_two_lines(capsys, data_dir, monkeypatch):
    from moda_core.models.renderer import RendererConfig

    # a small stand-in for the fast preset keeps the test short; the real preset is what the CLI reads
    code = _compare_authors(monkeypatch, data_dir, RendererConfig(ngf=4, num_levels=6, image_size=128),
                            startup=1.25, seconds=1.5, frames=2, fast_frames=3)
    out = capsys.readouterr().out
    assert code == 0
    lines = out.strip().splitlines()
    assert re.fullmatch(r"speedup vs authors: \d+\.\dx", lines[-2])
    assert re.fullmatch(r"fast renderer: \d+\.\d frames/s end to end", lines[-1])
    assert re.search(r"^torch +fp32 +[\d.]+ +[\d.]+ +[\d.]+% of [\d.]+ GFLOP/s$", out, re.M)
    assert re.search(r"authors, measured now: renderer torch fp32, plain layout, one frame per call: [\d.]+ s/frame",
                     out)
    assert "13.5 s fixed" in out and "not measured now" in out
    authors = float(re.search(r"authors: ([\d.]+) s per audio second", out).group(1))
    ours = float(re.search(r"ours: ([\d.]+) s per audio second", out).group(1))
    assert re.search(r"start-up 1.25 s \+ loading [\d.]+ s", out)
    assert float(lines[-2].split()[-1][:-1]) == pytest.approx(authors / ours, abs=0.06)
    assert "fast renderer: backend torch fp32" in out and "(3 frames rendered" in out


def test_compare_authors_says_when_there_is_no_fast_preset(capsys, data_dir, monkeypatch):
    from moda_core import bench
    from moda_core.cli import main
    from moda_core.train import presets

    def no_preset(kind, preset):
        raise ValueError("preset must be one of full, small, tiny, got 'fast'")

    monkeypatch.setattr(presets, "preset_config", no_preset)
    monkeypatch.setattr(bench, "startup_seconds", lambda: 1.0)
    code = main(["bench", "--compare-authors", "--config", "tiny", "--seconds", "0.5", "--frames", "1",
                 "--backend", "torch", "--audio", str(data_dir / "audio" / "zh_news.wav"),
                 "--image", str(data_dir / "portraits" / "macron.png"), "--models", str(data_dir / "models")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and re.fullmatch(r"speedup vs authors: \d+\.\dx", lines[-2])
    assert lines[-1] == "fast renderer: not available (preset must be one of full, small, tiny, got 'fast')"


def test_backend_variants_follow_the_device(monkeypatch):
    from moda_core import render_backends as rb
    from moda_core.bench import backend_variants

    monkeypatch.setattr(rb, "cpu_flags", lambda: {"avx2"})
    monkeypatch.setattr(rb, "openvino_available", lambda: False)
    variants, skipped = backend_variants(torch.device("cpu"))
    assert variants == [("torch", "fp32")]
    assert any("openvino: skipped, not installed" in line for line in skipped)
    assert any("torch bf16: skipped" in line for line in skipped)
    monkeypatch.setattr(rb, "cpu_flags", lambda: {"avx512_bf16"})
    assert backend_variants(torch.device("cpu"), openvino=False)[0] == [("torch", "fp32"), ("torch", "bf16")]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    monkeypatch.setattr(rb, "cuda_bf16_supported", lambda device: True)
    variants, skipped = backend_variants(torch.device("cuda"))
    assert variants == [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16")] and skipped == []


def test_end_to_end_scales_per_frame_stages_to_the_whole_clip():
    from moda_core.bench import end_to_end

    result = {"frames": 2, "motion_frames": 60, "times": {"MODA": 1.0, "audio features (wav2vec2)": 0.5,
                                                          "renderer": 0.8, "video encoding": 0.2}}
    per_second, fps = end_to_end(result, fixed=2.0)
    total = 2.0 + 1.5 + 0.5 * 60
    assert per_second == pytest.approx(total / 2.0) and fps == pytest.approx(60 / total)


def test_compare_authors_times_the_warp_stage_of_a_warped_fast_renderer(capsys, data_dir, monkeypatch):
    from moda_core.models.renderer import RendererConfig

    warped = RendererConfig(ngf=4, num_levels=3, image_size=64, width_cap=2, space_to_depth=2,
                            reference_residual=True, tpe_bias=True, warped_reference=True)
    code = _compare_authors(monkeypatch, data_dir, warped, startup=1.0, seconds=0.5, frames=1, fast_frames=5)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert code == 0 and re.fullmatch(r"speedup vs authors: \d+\.\dx", lines[-2])
    assert re.fullmatch(r"fast renderer: \d+\.\d frames/s end to end", lines[-1])
    stages = re.search(r"^fast renderer, one stage after another \(ms/frame\): projection \+ drawing ([\d.]+), "
                       r"warp \(reference frames\) ([\d.]+), renderer ([\d.]+), video encoding ([\d.]+); "
                       r"warp renderer set-up ([\d.]+) s once; ([\d.]+) frames/s end to end$", out, re.M)
    assert stages and all(float(value) > 0 for value in stages.groups())
    overlapped = re.search(r"^fast renderer, stages overlapped as in moda animate .*: ([\d.]+) frames/s end to end$",
                           out, re.M)
    assert overlapped and overlapped.group(1) == lines[-1].split()[2], "the last line is the overlapped figure"


def test_profile_pipeline_overlapped_and_the_warp_set_up_counted_once(data_dir):
    from moda_core.bench import (OVERLAPPED_STAGE, WARP_SETUP_STAGE, build_models, end_to_end, profile_pipeline)
    from moda_core.models.renderer import RendererConfig
    from moda_core.preprocess import load_audio, subject_from_photo

    models = build_models("tiny")
    models.renderer = RenderGenerator(RendererConfig(ngf=4, num_levels=3, image_size=64, width_cap=2,
                                                     space_to_depth=2, reference_residual=True, tpe_bias=True,
                                                     warped_reference=True)).eval()
    subject, _ = subject_from_photo(data_dir / "portraits" / "macron.png", models_dir=data_dir / "models")
    wave, _ = load_audio(data_dir / "audio" / "zh_news.wav")
    result = profile_pipeline(models, wave[:8000], subject, batch_size=2, max_render_frames=5,
                              models_dir=data_dir / "models", overlap=True)
    assert result["frames"] == 5 and set(result["times"]) >= {OVERLAPPED_STAGE, WARP_SETUP_STAGE}
    assert "renderer" not in result["times"] and result["times"][OVERLAPPED_STAGE] > 0
    # the set-up is counted once per clip, the overlapped stage per frame
    times = {"MODA": 1.0, WARP_SETUP_STAGE: 0.5, OVERLAPPED_STAGE: 0.2}
    per_second, fps = end_to_end({"frames": 2, "motion_frames": 30, "times": times})
    assert fps == pytest.approx(30 / (1.0 + 0.5 + 0.1 * 30))
