"""Renderer backends: precision auto per device, backend selection and its fallbacks, outputs across backends."""
import pytest
import torch

from moda_core import render_backends as rb
from moda_core.models.renderer import RendererConfig, RenderGenerator, render


@pytest.fixture
def tiny_renderer():
    torch.manual_seed(0)
    return RenderGenerator(RendererConfig.tiny()).eval()


@pytest.fixture
def tiny_input():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(3, 19, 64, 64, generator=generator) * 2 - 1


def copy_of(model):
    other = RenderGenerator(model.config).eval()
    other.load_state_dict(model.state_dict())
    return other


def fake_gpu(monkeypatch, capability, bf16, name="Fake GPU"):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(rb, "cuda_bf16_supported", lambda device: bf16)


# ------------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("flags, expected", [({"avx2", "fma"}, "fp32"), ({"avx512f", "avx512_bf16"}, "bf16"),
                                             ({"amx_tile", "amx_bf16"}, "bf16")])
def test_cpu_auto_precision_follows_bf16_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(rb, "cpu_flags", lambda: flags)
    assert rb.auto_precision("cpu") == expected
    assert rb.resolve_precision("auto", "cpu") == expected


def test_explicit_slow_precision_on_cpu_runs_with_one_warning(monkeypatch):
    monkeypatch.setattr(rb, "cpu_flags", lambda: {"avx2"})
    lines = []
    assert rb.resolve_precision("bf16", "cpu", lines.append) == "bf16"
    assert len(lines) == 1 and "no fast bf16" in lines[0]
    monkeypatch.setattr(rb, "cpu_flags", lambda: {"avx512_bf16"})
    lines.clear()
    assert rb.resolve_precision("bf16", "cpu", lines.append) == "bf16" and lines == []
    assert rb.resolve_precision("fp32", "cpu", lines.append) == "fp32" and lines == []


def test_cuda_precisions_and_impossible_ones_name_the_device(monkeypatch):
    fake_gpu(monkeypatch, (7, 5), bf16=False, name="Tesla T4")
    assert rb.auto_precision("cuda") == "fp16"
    assert rb.device_precisions("cuda") == {"fp32": True, "fp16": True}
    with pytest.raises(rb.PrecisionError, match=r"cuda \(Tesla T4\) cannot run the renderer in bf16; it runs "
                                                r"fp32, fp16"):
        rb.resolve_precision("bf16", "cuda")
    fake_gpu(monkeypatch, (8, 0), bf16=True, name="A100")
    assert rb.auto_precision("cuda:0") == "bf16"
    fake_gpu(monkeypatch, (5, 0), bf16=False, name="old")
    assert rb.auto_precision("cuda") == "fp32"
    with pytest.raises(rb.PrecisionError, match="it runs fp32"):
        rb.resolve_precision("fp16", "cuda")


def test_bad_precision_and_backend_are_clear_errors(tiny_renderer):
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, got 'fp8'"):
        rb.resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="backend must be one of auto, torch, openvino, got 'tensorrt'"):
        rb.select_backend(tiny_renderer, "cpu", "tensorrt", "fp32")
    with pytest.raises(ValueError, match="openvino runs on the CPU only"):
        rb.select_backend(tiny_renderer, "cuda", "openvino", "fp32")


# ------------------------------------------------------------------------------------------- selection
def test_openvino_missing_falls_back_to_torch_with_one_line(monkeypatch, tiny_renderer, tiny_input, tmp_path):
    monkeypatch.setattr(rb, "openvino_available", lambda: False)
    expected = render(copy_of(tiny_renderer), tiny_input)
    for backend in ("auto", "openvino"):
        lines = []
        chosen = rb.select_backend(copy_of(tiny_renderer), "cpu", backend, "fp32", cache_dir=tmp_path,
                                   log=lines.append)
        assert isinstance(chosen, rb.TorchBackend) and chosen.precision == "fp32"
        assert len(lines) == 1 and "openvino is not installed" in lines[0] and "comfyui-moda[openvino]" in lines[0]
        assert torch.allclose(chosen(tiny_input), expected, atol=1e-6)
    lines = []
    assert isinstance(rb.select_backend(tiny_renderer, "cpu", "torch", "fp32", log=lines.append), rb.TorchBackend)
    assert lines == []


def test_failed_conversion_falls_back_to_torch_with_one_line(monkeypatch, tiny_renderer, tmp_path):
    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operation aten::frobnicate\nlong trace")

    monkeypatch.setattr(rb, "openvino_available", lambda: True)
    monkeypatch.setattr(rb, "OpenVINOBackend", fail)
    lines = []
    chosen = rb.select_backend(tiny_renderer, "cpu", "openvino", "fp32", cache_dir=tmp_path, log=lines.append)
    assert isinstance(chosen, rb.TorchBackend)
    assert lines == ["openvino could not convert the renderer (unsupported operation aten::frobnicate); "
                     "rendering with torch"]


class FakeOpenVINO(rb.RendererBackend):
    name = "openvino"
    calls = 0

    def __init__(self, renderer, precision, seconds, **kwargs):
        super().__init__(renderer.config, torch.device("cpu"))
        self.precision, self.seconds = precision, seconds

    def __call__(self, x):
        FakeOpenVINO.calls += 1
        return torch.zeros(x.shape[0], 3, *x.shape[2:])


def test_auto_keeps_openvino_only_when_faster_and_caches_the_probe(monkeypatch, tiny_renderer, tmp_path):
    monkeypatch.setattr(rb, "openvino_available", lambda: True)
    timings = {"torch": 0.2, "openvino": 0.1}
    monkeypatch.setattr(rb, "time_backend", lambda backend, x, repeats=1: timings[backend.name])
    monkeypatch.setattr(rb, "OpenVINOBackend", lambda renderer, precision, **kw: FakeOpenVINO(renderer, precision, 0))
    lines = []
    chosen = rb.select_backend(copy_of(tiny_renderer), "cpu", "auto", "fp32", cache_dir=tmp_path,
                               weights_hash="abc", log=lines.append)
    assert chosen.name == "openvino" and lines == []
    assert (tmp_path / "backend_probe.json").is_file()
    timings.update(torch=0.05)              # cached per machine + model + precision: not timed again
    assert rb.select_backend(copy_of(tiny_renderer), "cpu", "auto", "fp32", cache_dir=tmp_path,
                             weights_hash="abc", log=lines.append).name == "openvino"
    chosen = rb.select_backend(copy_of(tiny_renderer), "cpu", "auto", "fp32", cache_dir=tmp_path,
                               weights_hash="other weights", log=lines.append)
    assert isinstance(chosen, rb.TorchBackend)
    assert lines == ["openvino is slower than torch on this machine (0.100 vs 0.050 s/frame, fp32); "
                     "rendering with torch"]


# ------------------------------------------------------------------------------------------- outputs
def test_torch_backend_precisions_match_fp32(monkeypatch, tiny_renderer, tiny_input):
    monkeypatch.setattr(rb, "cpu_flags", lambda: {"avx512_bf16"})
    expected = render(copy_of(tiny_renderer), tiny_input)
    fp32 = rb.select_backend(copy_of(tiny_renderer), "cpu", "torch", "fp32")
    assert fp32(tiny_input).dtype == torch.float32 and torch.allclose(fp32(tiny_input), expected, atol=1e-6)
    plain = rb.TorchBackend(copy_of(tiny_renderer), "fp32", channels_last=False)
    assert torch.equal(plain(tiny_input), render(copy_of(tiny_renderer), tiny_input, channels_last=False))
    bf16 = rb.select_backend(copy_of(tiny_renderer), "cpu", "torch", "auto")
    assert bf16.precision == "bf16" and bf16.module.netG.model.model[0].weight.dtype == torch.bfloat16
    out = bf16(tiny_input)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 64, 64)
    assert 0 < (out - expected).abs().max() < 0.1


def test_compiled_torch_backend_pads_to_one_batch_shape(monkeypatch, tiny_renderer, tiny_input):
    shapes = []

    def fake_compile(module, **kwargs):
        def run(x):
            shapes.append(tuple(x.shape))
            return module(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    backend = rb.TorchBackend(copy_of(tiny_renderer), "fp32", compile=True, batch_size=4)
    out = backend(tiny_input)
    assert shapes == [(4, 19, 64, 64)] and out.shape == (3, 3, 64, 64)
    assert torch.allclose(out, render(copy_of(tiny_renderer), tiny_input), atol=1e-6)


def test_render_batch_takes_a_backend(tiny_renderer):
    from moda_core.pipeline import render_batch

    generator = torch.Generator().manual_seed(2)
    conditions = torch.rand(2, 64, 64, 3, generator=generator)
    reference = torch.rand(64, 64, 3, generator=generator)
    expected = render_batch(copy_of(tiny_renderer), conditions, reference, 5)
    backend = rb.TorchBackend(copy_of(tiny_renderer), "fp32")
    assert torch.allclose(render_batch(backend, conditions, reference, 5), expected, atol=1e-6)


def test_openvino_matches_torch_and_reuses_its_cached_conversion(tiny_renderer, tiny_input, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    expected = render(copy_of(tiny_renderer), tiny_input)
    backend = rb.OpenVINOBackend(copy_of(tiny_renderer), "fp32", weights_hash="w1", cache_dir=tmp_path)
    assert backend.ir_path.is_file() and backend.ir_path.is_relative_to(tmp_path / "openvino")
    assert torch.allclose(backend(tiny_input), expected, atol=1e-4)
    assert backend(tiny_input[:1]).shape == (1, 3, 64, 64)                 # batch size is dynamic

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(rb.OpenVINOBackend, "_convert", staticmethod(no_conversion))
    again = rb.OpenVINOBackend(copy_of(tiny_renderer), "fp32", weights_hash="w1", cache_dir=tmp_path)
    assert again.ir_path == backend.ir_path and torch.allclose(again(tiny_input), expected, atol=1e-4)
    lines = []
    half = rb.OpenVINOBackend(copy_of(tiny_renderer), "bf16", weights_hash="w1", cache_dir=tmp_path, log=lines.append)
    assert half.ir_path == backend.ir_path, "one f32 IR for every precision (a compile hint)"
    if half.precision == "fp32":                    # a CPU without bf16 in OpenVINO: said once, runs f32
        assert lines == ["openvino: this CPU has no bf16 support in OpenVINO; it runs fp32"]
        assert torch.allclose(half(tiny_input), expected, atol=1e-4)
    else:
        assert half.precision == "bf16" and lines == [] and (half(tiny_input) - expected).abs().max() < 0.1
    assert rb.OpenVINOBackend.ir_folder(tiny_renderer, "w2", tmp_path) != backend.ir_path.parent, \
        "other weights, another conversion"


def test_cli_names_the_precisions_a_gpu_runs_before_any_work(monkeypatch, tmp_path, data_dir, capsys):
    from moda_core.cli import animate, main

    fake_gpu(monkeypatch, (7, 5), bf16=False, name="Tesla T4")
    monkeypatch.setattr(animate, "check_device", lambda device: None)          # no GPU here: pretend there is
    code = main(["animate", "--image", str(data_dir / "portraits" / "macron.png"), "--audio",
                 str(data_dir / "audio" / "zh_news.wav"), "--out", str(tmp_path / "a.mp4"), "--device", "cuda",
                 "--precision", "bf16"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "a.mp4").exists()
    assert "--precision: cuda (Tesla T4) cannot run the renderer in bf16; it runs fp32, fp16" in err
