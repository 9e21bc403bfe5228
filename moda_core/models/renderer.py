"""The MODA renderer: a residual U-Net that turns a condition image + reference image + TPE into a portrait.

State-dict keys match the authors' ``Render_G`` checkpoints (``renderer/Cathy.pth``): ``netG.model.model.…``,
with level k+1 nested at ``.model.3`` under the outermost level and at ``.model.4`` under every other level.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from moda_core.models._config import ConfigMixin

Precision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class RendererConfig(ConfigMixin):
    """Renderer generator sizes; defaults are the authors' (19 = condition 3 + reference 3 + TPE 13)."""

    in_channels: int = 19
    out_channels: int = 3
    ngf: int = 64                 # width of the outermost level; level k is ngf * min(2**(k-1), 8) wide
    num_levels: int = 8           # U-Net depth: the image is halved num_levels times
    image_size: int = 512         # square input/output size the network is run at

    def __post_init__(self):
        self._check_positive_ints()
        if self.num_levels < 2:
            raise ValueError(f"RendererConfig.num_levels must be >= 2, got {self.num_levels}")
        if self.image_size % (2 ** self.num_levels):
            raise ValueError(f"RendererConfig.image_size ({self.image_size}) must be divisible by "
                             f"2**num_levels ({2 ** self.num_levels})")

    @classmethod
    def tiny(cls) -> "RendererConfig":
        """ngf 2, 6 levels at 64 px: for fast tests."""
        return cls(ngf=2, num_levels=6, image_size=64)

    def level_width(self, level: int) -> int:
        """Inner channel count of level 1..num_levels (1 = outermost)."""
        return self.ngf * min(2 ** (level - 1), 8)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """ReLU(x + BN(conv(ReLU(BN(conv(x)))))), channels unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            _conv3x3(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            _conv3x3(channels, channels), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.block(x))


class UNetLevel(nn.Module):
    """One U-Net level: outer -> inner channels on the way down, back to outer on the way up.

    Inner levels return cat([x, processed(x)]) on channels; the outermost maps the image channels (``outer``) to
    ``outermost_out_channels`` and returns processed(x) only.

    Sequential layouts (index: module), which fix the checkpoint keys:
    outermost 0 conv↓, 1 ReLU, 2 res, 3 sub-level, 4 up, 5 conv;
    middle    0 conv↓, 1 BN, 2 ReLU, 3 res, 4 sub-level, 5 up, 6 conv, 7 BN, 8 ReLU, 9 res;
    innermost 0 conv↓, 1 ReLU, 2 res, 3 up, 4 conv, 5 BN, 6 ReLU, 7 res.
    """

    def __init__(self, outer: int, inner: int, submodule: "UNetLevel | None" = None, *,
                 outermost_out_channels: int | None = None):
        super().__init__()
        self.outermost = outermost_out_channels is not None
        up = nn.Upsample(scale_factor=2, mode="nearest")
        if self.outermost:
            if submodule is None:
                raise ValueError("the outermost level needs a submodule")
            layers = [_conv3x3(outer, inner, stride=2), nn.ReLU(inplace=True), ResidualBlock(inner),
                      submodule, up, _conv3x3(2 * inner, outermost_out_channels)]
        elif submodule is None:
            layers = [_conv3x3(outer, inner, stride=2), nn.ReLU(inplace=True), ResidualBlock(inner),
                      up, _conv3x3(inner, outer), nn.BatchNorm2d(outer), nn.ReLU(inplace=True), ResidualBlock(outer)]
        else:
            layers = [_conv3x3(outer, inner, stride=2), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
                      ResidualBlock(inner), submodule,
                      up, _conv3x3(2 * inner, outer), nn.BatchNorm2d(outer), nn.ReLU(inplace=True),
                      ResidualBlock(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class _ResUNet(nn.Module):
    """Holds the outermost level as ``model`` (the authors' generator wrapper, kept for key names)."""

    def __init__(self, config: RendererConfig):
        super().__init__()
        level = UNetLevel(config.level_width(config.num_levels - 1), config.level_width(config.num_levels))
        for k in range(config.num_levels - 1, 1, -1):
            level = UNetLevel(config.level_width(k - 1), config.level_width(k), level)
        self.model = UNetLevel(config.in_channels, config.level_width(1), level,
                               outermost_out_channels=config.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class RenderGenerator(nn.Module):
    """Generator input [B, in_channels, S, S] in [-1, 1] (TPE channels excepted) -> image [B, 3, S, S] in [-1, 1]."""

    def __init__(self, config: RendererConfig = RendererConfig()):
        super().__init__()
        self.config = config
        self.netG = _ResUNet(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"renderer input must be [B, {cfg.in_channels}, H, W], got {list(x.shape)}")
        if tuple(x.shape[2:]) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"renderer input must be {cfg.image_size}x{cfg.image_size} (config.image_size), "
                             f"got {x.shape[2]}x{x.shape[3]}")
        return torch.tanh(self.netG(x))


def _check_precision(precision: str) -> None:
    if precision != "fp32" and precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")


def prepare_for_inference(model: RenderGenerator, precision: Precision = "fp32", *,
                          channels_last: bool = True) -> RenderGenerator:
    """Put the generator in eval mode, channels-last memory and (for bf16/fp16) low-precision weights, in place.

    On CPUs with bf16 matrix units this is about 4x faster than fp32 (see benchmarks/bench_renderer_precision.py).
    """
    _check_precision(precision)
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if precision != "fp32":
        model.to(_AUTOCAST_DTYPES[precision])
    return model


@torch.no_grad()
def render(model: RenderGenerator, x: torch.Tensor, *, precision: Precision = "fp32",
           channels_last: bool | None = None) -> torch.Tensor:
    """Run the generator for inference: x [B, C, S, S] -> float32 image [B, 3, S, S] in [-1, 1].

    A model prepared with :func:`prepare_for_inference` runs in its own dtype and memory format. Otherwise
    ``precision`` "bf16"/"fp16" runs under ``torch.autocast`` on x's device type. ``channels_last`` defaults to
    the model's memory format. Put the model in eval mode first: BatchNorm then uses its running statistics.
    """
    _check_precision(precision)
    weight = model.netG.model.model[0].weight
    if channels_last is None:
        channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if weight.dtype != torch.float32:
        y = model(x.to(weight.dtype))
    elif precision == "fp32":
        y = model(x)
    else:
        with torch.autocast(device_type=x.device.type, dtype=_AUTOCAST_DTYPES[precision]):
            y = model(x)
    return y.float().contiguous()
