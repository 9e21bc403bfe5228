"""FaCo-Net training (paper eq. 12-13): ground-truth mouth + eye offsets -> dense face offsets, adversarially.

Generator loss ``(D(fake) - 1)^2 + l1_weight * |fake - real|`` (lambda = 10 in the paper; the authors' code
uses 100), discriminator loss ``((D(real) - 1)^2 + D(fake)^2) / 2`` with the per-frame point discriminator.
Optimisers: Adam(0.9, 0.99), lr 1e-4 (paper §3.5). Validation loss: the L1 term alone, in canonical px.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from moda_core.models.faco import FaCoConfig, FaCoNet, PointDiscriminator
from moda_core.train.datasets import MotionWindows, SampleData, load_samples
from moda_core.train.losses import lsgan_loss
from moda_core.train.loop import LoopConfig, TrainingTask, TrainResult, initial_network, run_training


@dataclass(frozen=True)
class FaCoTrainConfig:
    """FaCo-Net training settings. FaCo-Net works frame by frame: the window only sets the batch layout."""

    window: int = 64                      # frames per item
    fps: float = 30.0
    val_fraction: float = 0.2
    l1_weight: float = 10.0               # lambda of eq. 13
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)


class FaCoTask(TrainingTask):
    """FaCo-Net + point discriminator as a :class:`TrainingTask` over :class:`MotionWindows`."""

    name = "faco"
    trained = ("faco", "faco_discriminator")
    exported = ("faco",)

    def __init__(self, generator: FaCoNet, discriminator: PointDiscriminator, samples: Sequence[SampleData],
                 config: FaCoTrainConfig = FaCoTrainConfig()):
        super().__init__()
        self.config = config
        self.networks = {"faco": generator, "faco_discriminator": discriminator}
        self.train_set = MotionWindows(samples, "train", config.window, val_fraction=config.val_fraction)
        self.val_set = (MotionWindows(samples, "val", config.window, val_fraction=config.val_fraction)
                        if config.val_fraction > 0 else None)
        self.optimizers = {kind: torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.betas)
                           for kind, net in self.networks.items()}

    def _scores(self, batch: dict[str, torch.Tensor], fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """D scores (fake, real) from one discriminator call on both halves (one DDP forward per backward)."""
        def both(x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x])

        scores = self.parallel("faco_discriminator")(both(batch["lip"]), both(batch["eye"]),
                                                     torch.cat([fake, batch["face"]]), both(batch["subject"]))
        return scores.chunk(2)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        fake = self.parallel("faco")(batch["lip"], batch["eye"], batch["subject"])
        fake_score, _ = self._scores(batch, fake)
        l1 = F.l1_loss(fake, batch["face"])
        gan = lsgan_loss(fake_score, True)
        g_loss = gan + self.config.l1_weight * l1
        self.optimise("faco", g_loss)

        fake_score, real_score = self._scores(batch, fake.detach())
        d_loss = 0.5 * (lsgan_loss(real_score, True) + lsgan_loss(fake_score, False))
        self.optimise("faco_discriminator", d_loss)
        return {"g": g_loss.item(), "l1": l1.item(), "g_gan": gan.item(), "d": d_loss.item()}

    def val_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        fake = self.networks["faco"](batch["lip"], batch["eye"], batch["subject"])
        return {"loss": F.l1_loss(fake, batch["face"]).item()}


def train_faco(samples: Sequence[str | os.PathLike | SampleData], out_dir: str | os.PathLike, *,
               model_config: FaCoConfig | None = None, config: FaCoTrainConfig = FaCoTrainConfig(),
               loop: LoopConfig = LoopConfig(max_epochs=300), init: str | os.PathLike | None = None
               ) -> TrainResult:
    """Train FaCo-Net on sample folders; best weights go to ``out_dir/faco.safetensors``.

    ``init``: start the generator from these weights (fine-tuning); the discriminator starts fresh.
    """
    data = load_samples(samples, fps=config.fps)
    torch.manual_seed(loop.seed)
    generator = initial_network("faco", model_config, init)
    discriminator = PointDiscriminator(generator.config)
    return run_training(FaCoTask(generator, discriminator, data, config), out_dir, loop)
