"""Renderer generator + multiscale discriminator: key layout and parity with the authors' Render_G."""
from __future__ import annotations


import pytest
from parity_helpers import load_golden, official_layout, state_dict_layout
import torch

from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
from moda_core.models.renderer import RenderGenerator, RendererConfig, render
from moda_core.tpe import TPEConfig, temporal_positional_encoding

OUTPUT_TOL = 5e-3    # parity/README.md §3
# oneDNN picks CPU-specific convolution kernels; this random ngf=2 net amplifies their rounding (measured on an
# AMD EPYC: 5.03e-3 with oneDNN, 2.4e-3 with PyTorch's own kernels, uint8 within 1 level either way)
ONEDNN_OUTPUT_TOL = 1e-2
TPE_TOL = 1e-6
GOLDEN_CONFIG = RendererConfig(ngf=2, image_size=256)




@pytest.fixture(scope="module")
def golden(parity_dir):
    return load_golden(parity_dir, "renderer.safetensors")


@pytest.fixture(scope="module")
def golden_generator(golden):
    net = RenderGenerator(GOLDEN_CONFIG).eval()
    net.load_state_dict({k.removeprefix("weights."): v for k, v in golden.items() if k.startswith("weights.")},
                        strict=True)
    return net


def _image_to_tensor(image_uint8: torch.Tensor) -> torch.Tensor:
    """The authors' im2tensor: HWC uint8 -> [1, 3, H, W], (x/255 - 0.5)/0.5 in float64, then float32."""
    return ((image_uint8.double() / 255 - 0.5) / 0.5).float().permute(2, 0, 1)[None]


def _tensor_to_image(image: torch.Tensor) -> torch.Tensor:
    """The authors' tensor2im: [1, 3, H, W] in [-1, 1] -> HWC uint8 via (y+1)/2*255, clip, truncation."""
    return ((image[0].permute(1, 2, 0).double() + 1) / 2 * 255).clamp(0, 255).to(torch.uint8)


def test_generator_layout_matches_authors(reference_dir):
    with torch.device("meta"):
        net = RenderGenerator()
    assert state_dict_layout(net) == official_layout(reference_dir, "Renderer")
    assert len(net.state_dict()) == 261
    assert sum(p.numel() for p in net.parameters()) == 76_207_296


def test_discriminator_layout_matches_authors(reference_dir):
    with torch.device("meta"):
        net = MultiscaleDiscriminator()
    assert state_dict_layout(net) == official_layout(reference_dir, "Renderer_D")
    assert [name for name, _ in net.netD.named_children()][-1] == "downsample"
    assert sum(p.numel() for p in net.parameters()) == 20_945_475


def test_golden_input_is_rebuilt_from_images_and_our_tpe(golden):
    tpe = temporal_positional_encoding([7], 256, 256, TPEConfig())
    assert (tpe - golden["tpe_frame7"]).abs().max().item() <= TPE_TOL
    rebuilt = torch.cat([_image_to_tensor(golden["condition_rgb256_uint8"]),
                         _image_to_tensor(golden["reference_rgb256_uint8"]), tpe], dim=1)
    assert rebuilt.shape == golden["input"].shape
    assert (rebuilt - golden["input"]).abs().max().item() <= TPE_TOL


@pytest.mark.parametrize("onednn", [False, True])
def test_generator_parity(golden, golden_generator, onednn):
    with torch.backends.mkldnn.flags(enabled=onednn):
        output = render(golden_generator, golden["input"])
    assert output.dtype == torch.float32 and output.shape == (1, 3, 256, 256)
    diff = (output - golden["output"]).abs().max().item()
    tolerance = ONEDNN_OUTPUT_TOL if onednn else OUTPUT_TOL
    assert diff <= tolerance, f"renderer output max abs diff {diff:.3g} (oneDNN {onednn})"
    levels = (_tensor_to_image(output).int() - golden["output_uint8"].int()).abs().max().item()
    assert levels <= 1, f"renderer uint8 output differs by {levels} levels"


def test_channels_last_and_bf16_run(golden, golden_generator):
    reference = render(golden_generator, golden["input"])
    channels_last = render(golden_generator, golden["input"], channels_last=True)
    assert (channels_last - reference).abs().max().item() <= OUTPUT_TOL
    # no closeness bound for bf16: this random ngf=2 network amplifies rounding (mean abs diff ~0.14)
    bf16 = render(golden_generator, golden["input"], precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == reference.shape
    assert torch.isfinite(bf16).all() and bf16.abs().max().item() <= 1.0


def test_bad_inputs_raise():
    cfg = RendererConfig.tiny()
    net = RenderGenerator(cfg).eval()
    with pytest.raises(ValueError, match="19"):
        net(torch.zeros(1, 18, cfg.image_size, cfg.image_size))
    with pytest.raises(ValueError, match="image_size"):
        net(torch.zeros(1, 19, cfg.image_size * 2, cfg.image_size * 2))
    with pytest.raises(ValueError, match="precision"):
        render(net, torch.zeros(1, 19, cfg.image_size, cfg.image_size), precision="int8")
    with pytest.raises(ValueError, match="divisible"):
        RendererConfig(image_size=500)


def test_tiny_generator_output_range_and_config_round_trip():
    cfg = RendererConfig.tiny()
    assert RendererConfig.from_dict(cfg.to_dict()) == cfg
    torch.manual_seed(0)
    out = render(RenderGenerator(cfg).eval(), torch.randn(2, 19, cfg.image_size, cfg.image_size))
    assert out.shape == (2, 3, cfg.image_size, cfg.image_size)
    assert out.abs().max().item() <= 1.0


def test_tiny_discriminator_scales():
    cfg = DiscriminatorConfig.tiny()
    assert DiscriminatorConfig.from_dict(cfg.to_dict()) == cfg
    net = MultiscaleDiscriminator(cfg).eval()
    with torch.no_grad():
        results = net(torch.randn(1, cfg.input_nc, 64, 64))
    assert len(results) == cfg.num_D
    assert all(len(features) == cfg.n_layers + 2 for features in results)
    assert [features[-1].shape[1] for features in results] == [1] * cfg.num_D
    assert results[0][0].shape[-1] == 33 and results[1][0].shape[-1] == 17   # full, then half resolution
    with pytest.raises(ValueError, match="22"):
        net(torch.zeros(1, 3, 64, 64))
