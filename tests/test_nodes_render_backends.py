"""MODA Render's backend input: OpenVINO (or the faster of both) for a renderer ComfyUI runs on the CPU, torch
otherwise, with one log line on a fallback."""
from __future__ import annotations

import logging

import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import run_node
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)

from moda_core import render_backends as rb


@pytest.fixture(autouse=True)
def no_cached_backends(moda_nodes):
    cache = moda_nodes["MODA_Render"].execute.__func__.__globals__["_CPU_BACKENDS"]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def renderer_net(moda_nodes, moda_dir):
    return run_node(moda_nodes["MODA_LoadRenderer"], weights="renderer.safetensors", precision="fp32").args[0]


def conditions(count=3, size=64):
    return torch.rand(count, size, size, 3, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def subject(data_dir):
    from moda_core.preprocess import subject_from_photo
    return subject_from_photo(data_dir / "portraits" / "macron.png", models_dir=data_dir / "models")[0]


def render(moda_nodes, renderer, subject, images, **extra):
    return run_node(moda_nodes["MODA_Render"], conditions=images, subject=subject, renderer=renderer, start_frame=0,
                    batch_size=2, **extra).args[0]


def test_openvino_backend_renders_with_the_converted_network(moda_nodes, renderer_net, subject, monkeypatch):
    class Constant(rb.RendererBackend):              # stands in for the converted network
        name, precision = "openvino", "fp32"

        def __call__(self, x):
            return torch.full((x.shape[0], 3, *x.shape[2:]), 0.5)

    made = []
    monkeypatch.setattr(rb, "select_backend", lambda model, device, backend, precision, **kw: made.append(
        (backend, precision, kw["weights_hash"])) or Constant(model.config, "cpu"))
    images = conditions()
    frames = render(moda_nodes, renderer_net, subject, images, backend="openvino")
    assert frames.shape == (3, 64, 64, 3) and torch.allclose(frames, torch.full_like(frames, 0.75))
    render(moda_nodes, renderer_net, subject, images, backend="openvino")
    assert len(made) == 1 and made[0][:2] == ("openvino", "fp32"), "converted once per file and precision"
    torch_frames = render(moda_nodes, renderer_net, subject, images, backend="torch")
    assert not torch.allclose(torch_frames, frames) and len(made) == 1


def test_missing_openvino_renders_with_torch_and_logs_one_line(moda_nodes, renderer_net, subject, monkeypatch,
                                                               caplog):
    monkeypatch.setattr(rb, "openvino_available", lambda: False)
    images = conditions()
    expected = render(moda_nodes, renderer_net, subject, images)
    with caplog.at_level(logging.WARNING):
        frames = render(moda_nodes, renderer_net, subject, images, backend="openvino")
    assert torch.allclose(frames, expected, atol=1e-6)
    lines = [r.getMessage() for r in caplog.records if "openvino" in r.getMessage()]
    assert lines == ["MODA Render: openvino is not installed (pip install comfyui-moda[openvino]); rendering with "
                     "torch"]


def test_bad_backend_is_named(moda_nodes, renderer_net, subject):
    with pytest.raises(ValueError, match="MODA Render: input 'backend'"):
        render(moda_nodes, renderer_net, subject, conditions(1), backend="tensorrt")
