"""The authors' MLP block, with their layer indices so checkpoint keys line up."""
from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Linear(in->hidden), (n_layers-2) x Linear(hidden->hidden), Linear(hidden->out).

    After every Linear but the last: optional BatchNorm1d, then LeakyReLU(0.2). The layers live in one
    ``nn.Sequential`` called ``layers`` so state-dict keys are ``layers.{i}.weight`` as in the authors' code.
    Inputs of shape [..., D] are flattened to [N, D] so BatchNorm statistics run over all leading dims.
    """

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int, n_layers: int, *, with_norm: bool = False):
        super().__init__()
        if n_layers < 2:
            raise ValueError(f"MLP needs n_layers >= 2, got {n_layers}")
        dims = [dim_in] + [dim_hidden] * (n_layers - 1) + [dim_out]
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < n_layers - 1:
                if with_norm:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.LeakyReLU(0.2))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).reshape(*lead, -1)
