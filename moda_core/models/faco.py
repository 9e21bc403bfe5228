"""FaCo-Net: per-frame MLPs that turn MODA's lip and eye offsets into offsets for all 478 face points.

``FaCoNet`` is the generator used at inference; ``PointDiscriminator`` is its training-only critic.
State-dict keys match the authors' checkpoints (``FaCo.pkl`` / ``best_D.pkl``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from moda_core.models._config import ConfigMixin
from moda_core.models.mlp import MLP


@dataclass(frozen=True)
class FaCoConfig(ConfigMixin):
    """Sizes of FaCo-Net and its discriminator; defaults are the authors' values."""

    vertex_dim: int = 1434           # 478 points x xyz
    lip_dim: int = 120               # 40 lip points x xyz
    eye_dim: int = 180               # 60 eye/brow/iris points x xyz
    feature_dim: int = 256           # shared width: subject feature = concat(lip feature, eye feature)
    subject_hidden: int = 128
    driven_hidden: int = 256
    decoder_hidden: int = 512
    disc_mesh_hidden: int = 256
    disc_classifier_hidden: int = 128

    def __post_init__(self):
        self._check_positive_ints()
        if self.feature_dim % 2:
            raise ValueError(f"FaCoConfig.feature_dim must be even (lip and eye halves), got {self.feature_dim}")

    @classmethod
    def tiny(cls) -> "FaCoConfig":
        """Same point dimensions, narrow hidden layers: for fast tests."""
        return cls(feature_dim=8, subject_hidden=8, driven_hidden=8, decoder_hidden=16,
                   disc_mesh_hidden=8, disc_classifier_hidden=8)


def _check_last_dim(name: str, tensor: torch.Tensor, ndim: int, size: int) -> None:
    if tensor.dim() != ndim or tensor.shape[-1] != size:
        expected = f"[B, T, {size}]" if ndim == 3 else f"[B, {size}]"
        raise ValueError(f"{name} must have shape {expected}, got {list(tensor.shape)}")


class FaCoNet(nn.Module):
    """Lip [B,T,lip_dim] + eye [B,T,eye_dim] + subject template [B,vertex_dim] -> offsets [B,T,vertex_dim]."""

    def __init__(self, config: FaCoConfig = FaCoConfig()):
        super().__init__()
        self.config = config
        half = config.feature_dim // 2
        self.subject_encoder = MLP(config.vertex_dim, config.feature_dim, config.subject_hidden, 3)
        self.driven_m_encoder = MLP(config.lip_dim, half, config.driven_hidden, 3)
        self.driven_e_encoder = MLP(config.eye_dim, half, config.driven_hidden, 3)
        self.decoder = MLP(config.feature_dim, config.vertex_dim, config.decoder_hidden, 4)

    def forward(self, lip: torch.Tensor, eye: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        _check_last_dim("lip", lip, 3, cfg.lip_dim)
        _check_last_dim("eye", eye, 3, cfg.eye_dim)
        _check_last_dim("subject", subject, 2, cfg.vertex_dim)
        if eye.shape[:2] != lip.shape[:2] or subject.shape[0] != lip.shape[0]:
            raise ValueError(f"lip {list(lip.shape)}, eye {list(eye.shape)} and subject {list(subject.shape)} "
                             "disagree on batch size or frame count")
        motion = torch.cat([self.driven_m_encoder(lip), self.driven_e_encoder(eye)], dim=-1)   # [B,T,F]
        return self.decoder(motion + self.subject_encoder(subject)[:, None, :])


class PointDiscriminator(nn.Module):
    """Per-frame LSGAN score [B,T,1] for lip [B,T,lip], eye [B,T,eye], mesh offsets [B,T,vertex], subject [B,vertex]."""

    def __init__(self, config: FaCoConfig = FaCoConfig()):
        super().__init__()
        self.config = config
        mesh_in = config.lip_dim + config.eye_dim + config.vertex_dim
        self.subject_encoder = MLP(config.vertex_dim, config.feature_dim, config.subject_hidden, 3)
        self.mesh_encoder = MLP(mesh_in, config.feature_dim, config.disc_mesh_hidden, 2)
        self.classifier = MLP(config.feature_dim, 1, config.disc_classifier_hidden, 3)

    def forward(self, lip: torch.Tensor, eye: torch.Tensor, mesh: torch.Tensor,
                subject: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        _check_last_dim("lip", lip, 3, cfg.lip_dim)
        _check_last_dim("eye", eye, 3, cfg.eye_dim)
        _check_last_dim("mesh", mesh, 3, cfg.vertex_dim)
        _check_last_dim("subject", subject, 2, cfg.vertex_dim)
        if not (lip.shape[:2] == eye.shape[:2] == mesh.shape[:2]) or subject.shape[0] != lip.shape[0]:
            raise ValueError(f"lip {list(lip.shape)}, eye {list(eye.shape)}, mesh {list(mesh.shape)} and subject "
                             f"{list(subject.shape)} disagree on batch size or frame count")
        features = self.mesh_encoder(torch.cat([lip, eye, mesh], dim=-1))
        return self.classifier(features + self.subject_encoder(subject)[:, None, :])
