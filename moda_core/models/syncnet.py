"""SyncNet (Chung & Zisserman 2016), the audio-visual sync scorer behind the paper's "Sync" (LSE-C) metric.

Two embedding towers, used only for evaluation:

* audio: MFCC windows ``[B, 1, 13, 20]`` (13 coefficients x 20 steps of 10 ms = 0.2 s) -> ``[B, embed_dim]``;
* lips: face-crop clips ``[B, 3, 5, 224, 224]`` (5 frames at 25 fps, BGR, 0..255, no normalisation)
  -> ``[B, embed_dim]``.

Sync is the Euclidean distance between the two embeddings. State-dict keys (``netcnnaud.*``, ``netfcaud.*``,
``netcnnlip.*``, ``netfclip.*``, sequential indices) and layer geometry follow the public ``syncnet_v2.model``
of the syncnet_python project, so that file loads strictly. Its BatchNorm layers may lack
``num_batches_tracked`` (older torch); :func:`moda_core.metrics.syncnet.load_syncnet` fills those in.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moda_core.models._config import ConfigMixin

MFCC_COEFFICIENTS = 13
MFCC_STEPS = 20                # per window: 5 video frames x 4 MFCC steps
CLIP_FRAMES = 5
CROP_SIZE = 224


@dataclass(frozen=True)
class SyncNetConfig(ConfigMixin):
    """Channel widths of both towers; defaults are the published network's. Spatial geometry is fixed."""

    audio_channels: tuple[int, ...] = (64, 192, 384, 256, 256, 512)
    lip_channels: tuple[int, ...] = (96, 256, 256, 256, 256, 512)
    hidden: int = 512
    embed_dim: int = 1024

    def __post_init__(self):
        for name in ("audio_channels", "lip_channels"):
            value = tuple(getattr(self, name))
            if len(value) != 6 or any(not isinstance(c, int) or c < 1 for c in value):
                raise ValueError(f"SyncNetConfig.{name} must be 6 positive ints, got {value!r}")
            object.__setattr__(self, name, value)
        self._check_positive_ints(("hidden", "embed_dim"))

    @classmethod
    def tiny(cls) -> "SyncNetConfig":
        """Same input sizes and layer geometry, a few channels: for fast tests."""
        return cls(audio_channels=(4, 8, 8, 8, 8, 16), lip_channels=(4, 8, 8, 8, 8, 16), hidden=16, embed_dim=8)


def _tower(conv: type[nn.Module], norm: type[nn.Module], pool: type[nn.Module], channels: tuple[int, ...],
           in_channels: int, layers: list[tuple]) -> nn.Sequential:
    """conv -> norm -> ReLU [-> pool] per entry of ``layers``: (kernel, stride, padding, pool_args or None)."""
    modules: list[nn.Module] = []
    for out_channels, (kernel, stride, padding, pooling) in zip(channels, layers):
        modules += [conv(in_channels, out_channels, kernel, stride=stride, padding=padding),
                    norm(out_channels), nn.ReLU(inplace=True)]
        if pooling is not None:
            modules.append(pool(**pooling))
        in_channels = out_channels
    return nn.Sequential(*modules)


def _head(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_features))


# (kernel, stride, padding, max-pool after or None); a (1, 1) pool keeps the published layer indices
_AUDIO_LAYERS = [
    ((3, 3), 1, 1, dict(kernel_size=1, stride=1)),
    ((3, 3), 1, 1, dict(kernel_size=3, stride=(1, 2))),
    ((3, 3), 1, 1, None),
    ((3, 3), 1, 1, None),
    ((3, 3), 1, 1, dict(kernel_size=3, stride=2)),
    ((5, 4), 1, 0, None),
]
_LIP_LAYERS = [
    ((5, 7, 7), (1, 2, 2), 0, dict(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
    ((1, 5, 5), (1, 2, 2), (0, 1, 1), dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
    ((1, 3, 3), 1, (0, 1, 1), None),
    ((1, 3, 3), 1, (0, 1, 1), None),
    ((1, 3, 3), 1, (0, 1, 1), dict(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
    ((1, 6, 6), 1, 0, None),
]


class SyncNet(nn.Module):
    """Audio and lip embedding towers; call :meth:`embed_audio` / :meth:`embed_lips` (no joint forward)."""

    def __init__(self, config: SyncNetConfig | None = None):
        super().__init__()
        self.config = config = config or SyncNetConfig()
        self.netcnnaud = _tower(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, config.audio_channels, 1, _AUDIO_LAYERS)
        self.netfcaud = _head(config.audio_channels[-1], config.hidden, config.embed_dim)
        self.netcnnlip = _tower(nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, config.lip_channels, 3, _LIP_LAYERS)
        self.netfclip = _head(config.lip_channels[-1], config.hidden, config.embed_dim)

    @staticmethod
    def _check(name: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
        if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"SyncNet {name} input must have shape [B, {', '.join(map(str, shape))}], "
                             f"got {list(x.shape)}")

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``[B, 1, 13, 20]`` MFCC windows -> ``[B, embed_dim]``."""
        self._check("audio", mfcc, (1, MFCC_COEFFICIENTS, MFCC_STEPS))
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_lips(self, clips: torch.Tensor) -> torch.Tensor:
        """``[B, 3, 5, 224, 224]`` BGR face clips (0..255) -> ``[B, embed_dim]``."""
        self._check("lip", clips, (3, CLIP_FRAMES, CROP_SIZE, CROP_SIZE))
        return self.netfclip(self.netcnnlip(clips).flatten(1))
