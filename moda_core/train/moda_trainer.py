"""MODA training (paper eq. 9-11): audio windows -> mouth, eye, head and torso offsets.

Loss ``"l1"`` (paper): ``sum_part weight * L1(part) + kl_weight * KL``. The paper leaves the part weights
open; the defaults take the authors' relative weights (mouth 5, others 1). Loss ``"l2_velocity"``
(the authors' code, moda-official-facts.md §3.6): weighted MSE + L1 of the frame-to-frame velocities; their
code has no KL term (use ``kl_weight=0`` to match). Optimiser: Adam(0.9, 0.99), lr 1e-4 (paper §3.5).
Batches need 2 windows or more: the subject head's BatchNorm normalises over the batch (the authors skip
smaller batches; here the loader drops them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import nn

from moda_core.models.moda import MODAConfig, MODANet
from moda_core.train.datasets import MotionWindows, SampleData, load_samples
from moda_core.train.losses import MOTION_PARTS, kl_divergence, motion_l1_loss, motion_l2_velocity_loss
from moda_core.train.loop import LoopConfig, TrainingTask, TrainResult, initial_network, run_training


@dataclass(frozen=True)
class MODATrainConfig:
    """MODA training settings (data, loss, optimiser)."""

    window: int = 600                     # frames per window (authors: 600 = 20 s at 30 fps); clamped to the clips
    hop: int | None = None                # frames between window starts; None: window // 3
    fps: float = 30.0                     # samples are resampled to this rate
    val_fraction: float = 0.2             # last part of every clip, by time
    loss: Literal["l1", "l2_velocity"] = "l1"
    lip_weight: float = 5.0               # lambda_1 .. lambda_4 of eq. 10 (used by "l1")
    head_weight: float = 1.0
    eye_weight: float = 1.0
    torso_weight: float = 1.0
    kl_weight: float = 1.0                # eq. 11 adds the KL term with weight 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    train_feature_encoder: bool = False   # also train wav2vec2's CNN (the authors freeze it; useful from scratch)

    def __post_init__(self):
        if self.loss not in ("l1", "l2_velocity"):
            raise ValueError(f"loss must be 'l1' or 'l2_velocity', got {self.loss!r}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 frames, got {self.window}")

    @property
    def weights(self) -> dict[str, float]:
        return {"lip": self.lip_weight, "eye": self.eye_weight, "head": self.head_weight, "torso": self.torso_weight}


class _MotionFromAudio(nn.Module):
    """MODANet with its audio encoder in one forward, so DistributedDataParallel sees the whole graph."""

    def __init__(self, moda: MODANet):
        super().__init__()
        self.moda = moda

    def forward(self, audio: torch.Tensor, subject: torch.Tensor, num_frames: int,
                generator: torch.Generator | None = None):
        return self.moda(self.moda.encode_audio(audio, num_frames), subject, generator=generator)


class MODATask(TrainingTask):
    """MODA as a :class:`TrainingTask` over :class:`MotionWindows`."""

    name = "moda"
    trained = ("moda",)
    exported = ("moda",)
    min_batch_size = 2
    find_unused_parameters = True     # SpecAugment: a step that draws no time mask leaves masked_spec_embed unused

    def __init__(self, model: MODANet, samples: Sequence[SampleData], config: MODATrainConfig = MODATrainConfig()):
        super().__init__()
        if model.audio_encoder is None:
            raise ValueError("MODA training needs a MODANet with its audio encoder (config.audio_encoder)")
        if config.train_feature_encoder:
            model.audio_encoder.feature_extractor.requires_grad_(True)
        self.config = config
        self.networks = {"moda": model}
        self._forward = _MotionFromAudio(model)
        window = min(config.window, model.config.max_seq_len)
        self.train_set = MotionWindows(samples, "train", window, hop=config.hop, val_fraction=config.val_fraction)
        self.val_set = (MotionWindows(samples, "val", window, val_fraction=config.val_fraction)
                        if config.val_fraction > 0 else None)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizers = {"moda": torch.optim.Adam(params, lr=config.lr, betas=config.betas)}

    def forward_module(self, kind: str) -> nn.Module:
        return self._forward

    def loss_terms(self, module: nn.Module, batch: dict[str, torch.Tensor],
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """All loss terms of one batch through ``module``; ``total`` is what is minimised."""
        out = module(batch["audio"], batch["subject"], batch["lip"].shape[1], generator)
        pred = {part: getattr(out, part) for part in MOTION_PARTS}
        if self.config.loss == "l1":
            terms = motion_l1_loss(pred, batch, self.config.weights)
        else:
            terms = motion_l2_velocity_loss(pred, batch)
        if self.config.kl_weight:
            terms["kl"] = kl_divergence(out.mu, out.logvar)
            terms["total"] = terms["total"] + self.config.kl_weight * terms["kl"]
        return terms

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        terms = self.loss_terms(self.parallel("moda"), batch)
        self.optimise("moda", terms["total"])
        return {name: value.item() for name, value in terms.items()}

    def val_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        generator = torch.Generator(self.device).manual_seed(0)    # the same VAE noise at every validation
        terms = self.loss_terms(self._forward, batch, generator)
        terms["loss"] = terms.pop("total")
        return {name: value.item() for name, value in terms.items()}


def train_moda(samples: Sequence[str | os.PathLike | SampleData], out_dir: str | os.PathLike, *,
               model_config: MODAConfig | None = None, config: MODATrainConfig = MODATrainConfig(),
               loop: LoopConfig = LoopConfig(max_epochs=200), init: str | os.PathLike | None = None
               ) -> TrainResult:
    """Train MODA on sample folders; best weights go to ``out_dir/moda.safetensors``.

    ``init``: start from these weights (e.g. converted authors' weights, to fine-tune); their config is used.
    Without it the network is built from ``model_config`` (default: the authors' sizes) with random weights.
    """
    data = load_samples(samples, fps=config.fps)
    torch.manual_seed(loop.seed)
    model = initial_network("moda", model_config, init)
    return run_training(MODATask(model, data, config), out_dir, loop)
