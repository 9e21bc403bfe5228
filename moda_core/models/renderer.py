"""The MODA renderer: a residual U-Net that turns a condition image + reference image + TPE into a portrait.

State-dict keys match the authors' ``Render_G`` checkpoints (``renderer/Cathy.pth``): ``netG.model.model.…``,
with level k+1 nested at ``.model.3`` under the outermost level and at ``.model.4`` under every other level.
Compact layouts (:meth:`RendererConfig.fast`) add config fields whose defaults keep the authors' network; their
files carry their config, so each file rebuilds its own layout (moda_core.checkpoints).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn

from moda_core.models._config import ConfigMixin

Precision = Literal["fp32", "bf16", "fp16"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
REFERENCE_CHANNELS = slice(3, 6)     # input layout: condition 0..2, reference 3..5, TPE 6..
IMAGE_CHANNELS = 6                   # condition + reference; the TPE channels after them are constant planes


@dataclass(frozen=True)
class RendererConfig(ConfigMixin):
    """Renderer generator sizes; defaults are the authors' (19 = condition 3 + reference 3 + TPE 13)."""

    in_channels: int = 19
    out_channels: int = 3
    ngf: int = 64                 # width of the outermost level; level k is ngf * min(2**(k-1), width_cap) wide
    num_levels: int = 8           # U-Net depth: the image is halved num_levels times
    image_size: int = 512         # square input/output size of the generator
    # compact ("fast") layouts; the defaults are the authors' network
    width_cap: int = 8            # largest level width as a multiple of ngf
    space_to_depth: int = 1       # factor f: the U-Net runs at image_size / f on f*f*channels (f x f pixel blocks,
    #                               channel order row offset, column offset, input channel) and its output is
    #                               rearranged back the same way
    plain_levels: int = 0         # this many outermost levels have no residual blocks
    reference_residual: bool = False   # output = reference + net (clamped to -1..1 in eval mode, no tanh): the net
    #                                    predicts corrections to the reference image (input REFERENCE_CHANNELS)
    tpe_bias: bool = False        # read the TPE channels (constant planes) at one pixel and add a learned projection
    #                               of them to the U-Net input instead of feeding full-size planes
    warped_reference: bool = False     # the reference channels hold, per frame, the warp renderer's frame (the
    #                                    reference crop warped to the frame's points) instead of the still crop;
    #                                    with reference_residual the net starts as the warp renderer and learns
    #                                    what a 2-D warp cannot do (mouth inside, shading, hair)

    _FLAGS = ("plain_levels", "reference_residual", "tpe_bias", "warped_reference")

    def __post_init__(self):
        self._check_positive_ints([f.name for f in fields(self) if f.name not in self._FLAGS])
        if not isinstance(self.plain_levels, int) or not 0 <= self.plain_levels <= self.num_levels:
            raise ValueError(f"RendererConfig.plain_levels must be an int in 0..num_levels, got {self.plain_levels!r}")
        for name in ("reference_residual", "tpe_bias", "warped_reference"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RendererConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.tpe_bias and self.in_channels <= IMAGE_CHANNELS:
            raise ValueError(f"RendererConfig.tpe_bias needs TPE channels after the {IMAGE_CHANNELS} image channels "
                             f"(in_channels > {IMAGE_CHANNELS}), got in_channels={self.in_channels}")
        if self.num_levels < 2:
            raise ValueError(f"RendererConfig.num_levels must be >= 2, got {self.num_levels}")
        if self.image_size % (self.space_to_depth * 2 ** self.num_levels):
            raise ValueError(f"RendererConfig.image_size ({self.image_size}) must be divisible by "
                             f"space_to_depth * 2**num_levels ({self.space_to_depth * 2 ** self.num_levels})")
        if self.reference_residual and (self.in_channels < REFERENCE_CHANNELS.stop or self.out_channels != 3):
            raise ValueError("RendererConfig.reference_residual needs the reference image in input channels 3..5 "
                             "and 3 output channels")

    @classmethod
    def tiny(cls) -> "RendererConfig":
        """ngf 2, 6 levels at 64 px: for fast tests."""
        return cls(ngf=2, num_levels=6, image_size=64)

    @classmethod
    def fast(cls, image_size: int = 512) -> "RendererConfig":
        """The compact real-time layout: it refines the warp renderer's frames (``warped_reference``); ngf 16 keeps the
        renderer near 1 GFLOP per 512 px frame (benchmarks/bench_fast_renderer.py --variants)."""
        return cls(ngf=16, num_levels=6, image_size=image_size, width_cap=4, space_to_depth=4, plain_levels=0,
                   reference_residual=True, tpe_bias=True, warped_reference=True)

    @property
    def is_authors_layout(self) -> bool:
        """True for the authors' network shape (any ngf/levels/size), whose keys match their checkpoints."""
        return (self.width_cap, self.space_to_depth, self.plain_levels, self.reference_residual,
                self.tpe_bias, self.warped_reference) == (8, 1, 0, False, False, False)

    @property
    def unet_in_channels(self) -> int:
        """Channels the U-Net's first convolution sees (after space-to-depth; TPE planes left out with tpe_bias)."""
        return (IMAGE_CHANNELS if self.tpe_bias else self.in_channels) * self.space_to_depth ** 2

    def level_width(self, level: int) -> int:
        """Inner channel count of level 1..num_levels (1 = outermost)."""
        return self.ngf * min(2 ** (level - 1), self.width_cap)


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
                 outermost_out_channels: int | None = None, residual: bool = True):
        super().__init__()
        self.outermost = outermost_out_channels is not None
        up = nn.Upsample(scale_factor=2, mode="nearest")

        def res(channels: int) -> nn.Module:     # Identity keeps the Sequential indices (checkpoint keys)
            return ResidualBlock(channels) if residual else nn.Identity()

        if self.outermost:
            if submodule is None:
                raise ValueError("the outermost level needs a submodule")
            layers = [_conv3x3(outer, inner, stride=2), nn.ReLU(inplace=True), res(inner),
                      submodule, up, _conv3x3(2 * inner, outermost_out_channels)]
        elif submodule is None:
            layers = [_conv3x3(outer, inner, stride=2), nn.ReLU(inplace=True), res(inner),
                      up, _conv3x3(inner, outer), nn.BatchNorm2d(outer), nn.ReLU(inplace=True), res(outer)]
        else:
            layers = [_conv3x3(outer, inner, stride=2), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
                      res(inner), submodule,
                      up, _conv3x3(2 * inner, outer), nn.BatchNorm2d(outer), nn.ReLU(inplace=True),
                      res(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class _ResUNet(nn.Module):
    """Holds the outermost level as ``model`` (the authors' generator wrapper, kept for key names)."""

    def __init__(self, config: RendererConfig):
        super().__init__()
        n, plain, factor = config.num_levels, config.plain_levels, config.space_to_depth ** 2
        level = UNetLevel(config.level_width(n - 1), config.level_width(n), residual=n > plain)
        for k in range(n - 1, 1, -1):
            level = UNetLevel(config.level_width(k - 1), config.level_width(k), level, residual=k > plain)
        self.model = UNetLevel(config.unet_in_channels, config.level_width(1), level,
                               outermost_out_channels=config.out_channels * factor, residual=plain < 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def space_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, f*f*C, H/f, W/f] in channels-last memory; channel (i*f + j)*C + c holds pixel (i, j) of
    each f x f block in channel c (TensorFlow's order: a block is one contiguous run of channels-last memory)."""
    b, c, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    blocks = nhwc.reshape(b, h // factor, factor, w // factor, factor * c).transpose(2, 3)
    return blocks.reshape(b, h // factor, w // factor, factor * factor * c).permute(0, 3, 1, 2)


def depth_to_space(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The inverse of :func:`space_to_depth`, returned contiguous (NCHW)."""
    b, channels, h, w = x.shape
    c = channels // (factor * factor)
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    image = nhwc.reshape(b, h, w, factor, factor * c).transpose(2, 3).reshape(b, h * factor, w * factor, c)
    return image.permute(0, 3, 1, 2).contiguous()


class RenderGenerator(nn.Module):
    """Generator input [B, in_channels, S, S] in [-1, 1] (TPE channels excepted) -> image [B, 3, S, S] in [-1, 1]
    (with ``reference_residual`` in training mode: reference + correction, not clamped)."""

    def __init__(self, config: RendererConfig = RendererConfig()):
        super().__init__()
        self.config = config
        self.netG = _ResUNet(config)
        if config.tpe_bias:
            self.tpe_projection = nn.Linear(config.in_channels - IMAGE_CHANNELS, config.unet_in_channels)
        if config.reference_residual:    # start from the reference itself: no random f x f block pattern at step 0
            nn.init.zeros_(self.netG.model.model[-1].weight)

    def forward(self, x: torch.Tensor, tpe: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: [B, in_channels, S, S] (images, then the TPE as constant planes), or with ``tpe`` (the TPE
        values [B, in_channels - 6], :func:`moda_core.tpe.tpe_values`) the images alone, [B, 6, S, S]."""
        cfg = self.config
        channels = cfg.in_channels if tpe is None else IMAGE_CHANNELS
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"renderer input must be [B, {channels}, H, W], got {list(x.shape)}")
        if tuple(x.shape[2:]) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"renderer input must be {cfg.image_size}x{cfg.image_size} (config.image_size), "
                             f"got {x.shape[2]}x{x.shape[3]}")
        if tpe is not None:
            if tuple(tpe.shape) != (x.shape[0], cfg.in_channels - IMAGE_CHANNELS):
                raise ValueError(f"renderer TPE values must be [{x.shape[0]}, {cfg.in_channels - IMAGE_CHANNELS}], "
                                 f"got {list(tpe.shape)}")
            tpe = tpe.to(x.dtype)
            if not cfg.tpe_bias:         # this layout reads full-size planes
                planes = tpe[:, :, None, None].expand(-1, -1, *x.shape[2:])
                x, tpe = torch.cat([x, planes], dim=1), None
        h = x[:, :IMAGE_CHANNELS] if cfg.tpe_bias else x
        if cfg.space_to_depth > 1:
            h = space_to_depth(h, cfg.space_to_depth)
        if cfg.tpe_bias:         # the planes are constant (moda_core.tpe): their values at pixel (0, 0)
            values = x[:, IMAGE_CHANNELS:, 0, 0] if tpe is None else tpe
            h = h + self.tpe_projection(values)[:, :, None, None]
        y = self.netG(h)
        if cfg.space_to_depth > 1:
            y = depth_to_space(y, cfg.space_to_depth)
        if not cfg.reference_residual:
            return torch.tanh(y)
        y = y + x[:, REFERENCE_CHANNELS]
        return y if self.training else y.clamp(-1.0, 1.0)


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
           channels_last: bool | None = None, tpe: torch.Tensor | None = None) -> torch.Tensor:
    """Run the generator for inference: x [B, C, S, S] -> float32 image [B, 3, S, S] in [-1, 1] (``tpe``: see
    :meth:`RenderGenerator.forward`).

    A model prepared with :func:`prepare_for_inference` runs in its own dtype and memory format. Otherwise
    ``precision`` "bf16"/"fp16" runs under ``torch.autocast`` on x's device type. ``channels_last`` defaults to
    the model's memory format. Put the model in eval mode first: BatchNorm then uses its running statistics.
    """
    _check_precision(precision)
    weight = model.netG.model.model[0].weight
    if channels_last is None:
        channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    if channels_last and model.config.space_to_depth == 1:     # space-to-depth converts the layout itself
        x = x.contiguous(memory_format=torch.channels_last)
    if weight.dtype != torch.float32:
        y = model(x.to(weight.dtype), tpe)
    elif precision == "fp32":
        y = model(x, tpe)
    else:
        with torch.autocast(device_type=x.device.type, dtype=_AUTOCAST_DTYPES[precision]):
            y = model(x, tpe)
    return y.float().contiguous()
