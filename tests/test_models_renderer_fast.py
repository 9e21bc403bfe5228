"""The compact ("fast") renderer layout: space-to-depth, TPE as an input bias, reference residual; it trains with the
renderer trainer and its weight files load by their own config, next to paper-size files."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file
import torch
from torch.utils.flop_counter import FlopCounterMode

from moda_core.checkpoints import describe_checkpoint, load_model, save_model
from moda_core.models.discriminators import DiscriminatorConfig
from moda_core.models.renderer import (IMAGE_CHANNELS, RendererConfig, RenderGenerator, depth_to_space, render,
                                       space_to_depth)
from moda_core.tpe import TPEConfig, temporal_positional_encoding
from moda_core.train import LoopConfig, evaluate_renderer, train_renderer
from moda_core.train.presets import preset_config
from test_train_common import _seeded, offline_vgg, sample, sample_dir  # noqa: F401  (fixtures)

# the fast layout at 64 px: 4x4 blocks, a 16 px U-Net of 3 levels
TINY_FAST = RendererConfig(ngf=4, num_levels=3, image_size=64, width_cap=4, space_to_depth=4, reference_residual=True,
                           tpe_bias=True)
TINY_D = DiscriminatorConfig(ndf=4, n_layers=2, num_D=2)


def _input(config: RendererConfig, frames=(3,), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    images = torch.rand(len(frames), IMAGE_CHANNELS, size, size, generator=generator) * 2 - 1
    return torch.cat([images, temporal_positional_encoding(list(frames), size, size, TPEConfig())], dim=1)


def _flops(net: RenderGenerator) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(_input(net.config))
    return counter.get_total_flops()


def test_fast_preset_is_a_512_px_layout_with_a_fraction_of_the_paper_flops():
    config = preset_config("renderer", "fast")
    assert config == RendererConfig.fast() and config.image_size == 512
    assert not config.is_authors_layout and RendererConfig().is_authors_layout
    assert RendererConfig.from_dict(config.to_dict()) == config
    fast = _flops(RenderGenerator(config).eval())
    paper_ratio = _flops(RenderGenerator(RendererConfig(image_size=256)).eval()) * 4   # FLOPs scale with pixels
    assert fast * 40 < paper_ratio, (fast, paper_ratio)
    assert preset_config("renderer_discriminator", "fast").input_nc == config.in_channels + config.out_channels


def test_space_to_depth_block_order_inverse_and_channels_last():
    x = torch.randn(2, 5, 8, 12)
    for layout in (x, x.contiguous(memory_format=torch.channels_last)):
        blocks = space_to_depth(layout, 4)
        assert blocks.shape == (2, 80, 2, 3) and blocks.is_contiguous(memory_format=torch.channels_last)
        # channel (i*f + j)*C + c of block (r, s) is pixel (r*f + i, s*f + j) of channel c
        assert torch.equal(blocks[:, (1 * 4 + 2) * 5 + 3, 1, 2], x[:, 3, 1 * 4 + 1, 2 * 4 + 2])
        back = depth_to_space(blocks, 4)
        assert back.is_contiguous() and torch.equal(back, x)


def test_tpe_bias_reads_the_planes_at_one_pixel():
    net = RenderGenerator(TINY_FAST).eval()
    torch.nn.init.normal_(net.netG.model.model[-1].weight, std=0.1)    # a trained net (fresh: zero last conv)
    assert net.tpe_projection.in_features == TINY_FAST.in_channels - IMAGE_CHANNELS
    x = _input(TINY_FAST, frames=(5,))
    reference = render(net, x)
    elsewhere = x.clone()
    elsewhere[:, IMAGE_CHANNELS:, 1:, :] = 7.0                # the planes are constant: only (0, 0) is read
    assert torch.equal(render(net, elsewhere), reference)
    other_frame = x.clone()
    other_frame[:, IMAGE_CHANNELS:] = _input(TINY_FAST, frames=(400,))[:, IMAGE_CHANNELS:]
    assert (render(net, other_frame) - reference).abs().max() > 1e-4


def test_reference_residual_starts_from_the_reference_and_is_clamped_in_eval():
    net = RenderGenerator(TINY_FAST)                         # a fresh net predicts no correction (zero last conv)
    x = _input(TINY_FAST, frames=(0, 1))
    x[:, 3:6] *= 1.5                                         # some reference values beyond -1..1
    net.train()
    assert torch.equal(net(x), x[:, 3:6])                    # training: unclamped (gradients everywhere)
    out = render(net.eval(), x)
    assert out.shape == (2, 3, 64, 64) and torch.equal(out, x[:, 3:6].clamp(-1, 1))


def test_bad_fast_configs_raise():
    with pytest.raises(ValueError, match="space_to_depth"):
        RendererConfig(image_size=512, num_levels=8, space_to_depth=4)
    with pytest.raises(ValueError, match="tpe_bias"):
        RendererConfig(in_channels=6, tpe_bias=True)
    with pytest.raises(ValueError, match="reference_residual"):
        RendererConfig(in_channels=4, reference_residual=True)
    with pytest.raises(ValueError, match="plain_levels"):
        RendererConfig(num_levels=3, plain_levels=4, image_size=64)


def test_tiny_fast_layout_trains_and_reloads_by_its_own_config(sample, tmp_path, offline_vgg):
    loop = LoopConfig(max_steps=2, batch_size=2, progress=False)
    result = train_renderer([sample], tmp_path, model_config=TINY_FAST, discriminator_config=TINY_D, loop=loop)
    assert result.step == 2
    info = describe_checkpoint(result.weights["renderer"])
    assert info.config == TINY_FAST
    net = load_model(result.weights["renderer"], kind="renderer")
    assert net.config == TINY_FAST and isinstance(net.tpe_projection, torch.nn.Linear)
    out = render(net, _input(TINY_FAST, frames=(0, 1, 2)))
    assert out.shape == (3, 3, 64, 64) and out.abs().max() <= 1.0
    psnr, ssim = evaluate_renderer(net, sample, tpe=TPEConfig())
    assert 0 < psnr < 100 and -1 <= ssim <= 1


def test_fast_and_paper_files_each_load_by_their_own_config(tmp_path):
    paper_tiny = RendererConfig(ngf=2, num_levels=3, image_size=64)
    for name, config in (("fast", TINY_FAST), ("paper", paper_tiny)):
        save_model(RenderGenerator(config), tmp_path / f"{name}.safetensors")
        loaded = load_model(tmp_path / f"{name}.safetensors", kind="renderer")
        assert loaded.config == config
        assert render(loaded, _input(config)).shape == (1, 3, 64, 64)
    # a file whose config says one layout but whose tensors are the other's: one clear error naming the keys
    tensors = RenderGenerator(paper_tiny).state_dict()
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / "mixed.safetensors",
              metadata={"moda_format": "1", "kind": "renderer", "config": json.dumps(TINY_FAST.to_dict())})
    with pytest.raises(ValueError, match="tpe_projection"):
        load_model(tmp_path / "mixed.safetensors", kind="renderer")


def test_render_input_scaling_is_bit_identical_to_the_authors_float64_formula():
    from moda_core.pipeline import _to_signed

    levels = torch.arange(256)
    authors = ((levels.double() / 255.0 - 0.5) / 0.5).float()
    as_uint8 = _to_signed(levels.to(torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3))
    as_float = _to_signed((levels.float() / 255.0).view(1, 16, 16, 1).expand(1, 16, 16, 3))
    for converted in (as_uint8, as_float):
        assert converted.dtype == torch.float32 and converted.shape == (1, 3, 16, 16)
        assert torch.equal(converted[0, 1].reshape(-1), authors)
