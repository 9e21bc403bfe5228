"""`moda bench` on the tiny config prints every figure; renderer preparation keeps results."""
import re

import torch

from moda_core.bench import matmul_peak_gflops, renderer_flops
from moda_core.models.renderer import RendererConfig, RenderGenerator, prepare_for_inference, render


def test_bench_prints_every_stage_and_ratio(capsys, data_dir):
    from moda_core.cli import main
    code = main(["bench", "--config", "tiny", "--seconds", "1.5", "--audio", str(data_dir / "audio" / "zh_news.wav"),
                 "--image", str(data_dir / "portraits" / "macron.png"), "--models", str(data_dir / "models")])
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
