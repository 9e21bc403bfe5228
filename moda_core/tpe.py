"""Temporal positional encoding (TPE) fed to the renderer next to the condition and reference images.

Two forms:

* ``"authors"`` (default, matches the released checkpoints): 13 channels
  ``[v, sin v, cos v, sin 2v, cos 2v, ..., sin 32v, cos 32v]`` with ``v = (offset + t) / scale``,
  ``scale = 1000`` and 6 frequencies ``2**k``. The authors trained with ``offset = 1`` (``v = 1 + t/1000``,
  see moda-official-facts.md §2.12) but run inference with ``offset = 0``; we default to inference's 0
  and expose the training value as :data:`AUTHORS_TRAIN_OFFSET`.
* ``"paper"``: 12 channels ``[sin(t 2^i / 100), cos(t 2^i / 100)]`` for ``i = 0..5`` (paper §3.4).

Values are constant over the image plane; the result is a float32 tensor ``[N, C, H, W]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

AUTHORS_TRAIN_OFFSET = 1000.0  # frames: v = 1 + t/1000 in training == (t + 1000) / 1000


@dataclass(frozen=True)
class TPEConfig:
    form: Literal["authors", "paper"] = "authors"
    scale: float = 1000.0          # the paper form uses 100
    num_frequencies: int = 6
    offset: float = 0.0            # added to the frame index before scaling

    def __post_init__(self):
        if self.form not in ("authors", "paper"):
            raise ValueError(f"TPE form must be 'authors' or 'paper', got {self.form!r}")
        if self.scale <= 0 or self.num_frequencies < 1:
            raise ValueError("TPE scale must be > 0 and num_frequencies >= 1")

    @classmethod
    def paper(cls) -> "TPEConfig":
        return cls(form="paper", scale=100.0)

    @property
    def channels(self) -> int:
        return 2 * self.num_frequencies + (1 if self.form == "authors" else 0)


def tpe_values(frame_indices: Sequence[int] | torch.Tensor, config: TPEConfig = TPEConfig()) -> torch.Tensor:
    """Per-frame TPE channel values, float32 ``[N, C]``."""
    t = torch.as_tensor(frame_indices, dtype=torch.float32).reshape(-1)
    v = (t + config.offset) / config.scale
    freqs = 2.0 ** torch.arange(config.num_frequencies, dtype=torch.float32)
    angles = v[:, None] * freqs[None, :]                                    # [N, F]
    sincos = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)   # [N, 2F] as sin, cos, sin, ...
    return torch.cat([v[:, None], sincos], dim=1) if config.form == "authors" else sincos


def temporal_positional_encoding(frame_indices: Sequence[int] | torch.Tensor, height: int, width: int,
                                 config: TPEConfig = TPEConfig()) -> torch.Tensor:
    """TPE planes for a batch of frame indices: float32 ``[N, C, height, width]``."""
    values = tpe_values(frame_indices, config)
    return values[:, :, None, None].expand(-1, -1, height, width).contiguous()
