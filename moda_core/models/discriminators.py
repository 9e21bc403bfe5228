"""The renderer's training-only multiscale PatchGAN discriminator (keys match the authors' ``Render_D``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from moda_core.models._config import ConfigMixin


@dataclass(frozen=True)
class DiscriminatorConfig(ConfigMixin):
    """Multiscale discriminator sizes; defaults are the authors' (22 = generator input 19 + image 3)."""

    input_nc: int = 22
    ndf: int = 64
    n_layers: int = 4       # stride-2 convs, including the first
    num_D: int = 3          # scales: full, 1/2, 1/4 resolution
    downscale: int = 1      # the input is average-pooled by this factor before the first scale (1: the authors')

    def __post_init__(self):
        self._check_positive_ints()

    @classmethod
    def tiny(cls) -> "DiscriminatorConfig":
        """ndf 2, 2 layers, 2 scales: for fast tests."""
        return cls(ndf=2, n_layers=2, num_D=2)


_KERNEL = 4
_PADDING = math.ceil((_KERNEL - 1) / 2)   # 2


def _patchgan_groups(config: DiscriminatorConfig) -> list[nn.Sequential]:
    """The n_layers + 2 layer groups of one PatchGAN (each group's output is an intermediate feature)."""
    def conv(cin: int, cout: int, stride: int) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel_size=_KERNEL, stride=stride, padding=_PADDING)

    groups = [nn.Sequential(conv(config.input_nc, config.ndf, 2), nn.LeakyReLU(0.2, inplace=True))]
    width = config.ndf
    for _ in range(1, config.n_layers):
        previous, width = width, min(width * 2, 512)
        groups.append(nn.Sequential(conv(previous, width, 2), nn.BatchNorm2d(width), nn.LeakyReLU(0.2, inplace=True)))
    previous, width = width, min(width * 2, 512)
    groups.append(nn.Sequential(conv(previous, width, 1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2, inplace=True)))
    groups.append(nn.Sequential(conv(width, 1, 1)))
    return groups


class _ScaleDiscriminators(nn.Module):
    """``scale{s}_layer{j}`` groups for all scales, then the shared ``downsample`` pool."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.num_D = config.num_D
        self.num_groups = config.n_layers + 2
        for scale in range(config.num_D):
            for j, group in enumerate(_patchgan_groups(config)):
                setattr(self, f"scale{scale}_layer{j}", group)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for i in range(self.num_D):
            scale = self.num_D - 1 - i        # full resolution goes to the last scale's layers
            features, h = [], x
            for j in range(self.num_groups):
                h = getattr(self, f"scale{scale}_layer{j}")(h)
                features.append(h)
            results.append(features)
            if i != self.num_D - 1:
                x = self.downsample(x)
        return results


class MultiscaleDiscriminator(nn.Module):
    """x [B, input_nc, H, W] -> per scale (full resolution first) the list of n_layers + 2 layer outputs.

    The last entry of each list is the PatchGAN score map [B, 1, h, w]; the others feed feature matching.
    With ``config.downscale`` d > 1 the scales see x average-pooled by d (H and W must be multiples of d).
    """

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        self.netD = _ScaleDiscriminators(config)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.config.input_nc:
            raise ValueError(f"discriminator input must be [B, {self.config.input_nc}, H, W], got {list(x.shape)}")
        factor = self.config.downscale
        if factor > 1:
            if x.shape[2] % factor or x.shape[3] % factor:
                raise ValueError(f"discriminator downscale {factor} needs H and W divisible by it, got "
                                 f"{list(x.shape[2:])}")
            x = F.avg_pool2d(x, factor)
        return self.netD(x)
