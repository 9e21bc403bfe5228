"""Renderer training / fine-tuning for one subject (supplementary B, eq. 18-19).

Generator loss ``LSGAN + 50 * colour L1 + 100 * mouth L1 + 10 * VGG19 perceptual + 1 * feature matching``:
the paper's (lambda_C, lambda_M, lambda_P, lambda_FM) = (50, 100, 10, 1) in the order of eq. 19. The mouth
term is ``|M * fake - M * real|_1`` (mean over the image) with M the lip box of :class:`RenderFrames`.
Discriminator: multi-scale PatchGAN on [generator input, image], LSGAN ``((D(real) - 1)^2 + D(fake)^2) / 2``.
Optimisers: Adam(0.9, 0.99), lr 1e-4 (paper §3.5; the authors' code used betas (0.5, 0.999)).
Validation: ``loss`` = the colour and mouth terms (weighted as in training) and ``psnr`` (dB) on held-out frames.
With GAN and feature-matching weights both 0 the discriminator is not run (nor trained).

Distillation (``distill_weight`` > 0 and a ``teacher`` renderer): the generator loss adds
``distill_weight * L1(student, teacher)``, the teacher (frozen, eval mode) rendering the same input, with the still
reference (``still_reference``) in its reference channels when the batch has it (warped-reference students).

TPE: training defaults to the authors' offset (:data:`moda_core.tpe.AUTHORS_TRAIN_OFFSET`, v = 1 + t/1000)
while inference (:class:`moda_core.pipeline.AnimateOptions`) uses 0; train with ``TPEConfig()`` (offset 0)
to make training and inference agree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader

from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.metrics import psnr, ssim
from moda_core.models.discriminators import DiscriminatorConfig, MultiscaleDiscriminator
from moda_core.models.renderer import REFERENCE_CHANNELS, RenderGenerator, RendererConfig
from moda_core.render_settings import METADATA_KEY, RenderSettings
from moda_core.tpe import AUTHORS_TRAIN_OFFSET, TPEConfig
from moda_core.train.datasets import RenderFrames, SampleData, load_samples, read_frame
from moda_core.train.losses import PerceptualLoss, feature_matching_loss, lsgan_loss
from moda_core.train.loop import LoopConfig, TrainingTask, TrainResult, initial_network, run_training


@dataclass(frozen=True)
class RendererTrainConfig:
    """Renderer training settings (data, loss weights, optimiser)."""

    val_fraction: float = 0.2
    tpe: TPEConfig = field(default_factory=lambda: TPEConfig(offset=AUTHORS_TRAIN_OFFSET))
    tpe_jitter: int = 0                   # random TPE index offset in training (see RenderFrames); 0 = authors'
    face_center: tuple[float, float, float] = CANONICALISATION_FACE_CENTER   # what the samples were made with
    gan_weight: float = 1.0
    color_weight: float = 50.0            # lambda_C
    mouth_weight: float = 100.0           # lambda_M
    perceptual_weight: float = 10.0       # lambda_P; 0 turns the VGG19 term off
    feature_matching_weight: float = 1.0  # lambda_FM
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    preload_limit_mb: float = 2048.0      # cache drawn conditions and frames in memory up to this size
    channels_last: bool = True            # NHWC memory format: ~1.7x faster convolutions on CPU
    precision: Literal["fp32", "bf16"] = "fp32"   # bf16: forward passes under torch.autocast (weights stay fp32)
    distill_weight: float = 0.0           # L1 to a teacher renderer's output (RendererTask teacher); 0 = off
    models_dir: str | None = None         # MediaPipe models (selfie segmenter) for warped-reference renderers

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if not self.distill_weight >= 0:
            raise ValueError(f"distill_weight must be >= 0, got {self.distill_weight}")


def _images(x: torch.Tensor):
    """[B, 3, H, W] in -1..1 -> numpy [B, H, W, 3] in 0..1 (the metrics' layout)."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) / 2.0).permute(0, 2, 3, 1).cpu().numpy()


class RendererTask(TrainingTask):
    """Renderer generator + multi-scale discriminator as a :class:`TrainingTask` over :class:`RenderFrames`."""

    name = "renderer"
    trained = ("renderer", "renderer_discriminator")
    exported = ("renderer",)

    def file_metadata(self, kind: str) -> dict[str, str]:
        """The renderer file records the TPE and face centre it was trained with, so inference can match them."""
        if kind != "renderer":
            return {}
        settings = RenderSettings(tpe=self.config.tpe, face_center=tuple(self.config.face_center))
        return {METADATA_KEY: settings.to_json()}

    def __init__(self, generator: RenderGenerator, discriminator: MultiscaleDiscriminator,
                 samples: Sequence[SampleData], config: RendererTrainConfig = RendererTrainConfig(), *,
                 perceptual: PerceptualLoss | None = None, teacher: RenderGenerator | None = None):
        """``perceptual``: the VGG19 term to use (e.g. :meth:`PerceptualLoss.from_file`); by default it is made
        (fetched) when ``config.perceptual_weight`` is not 0. ``teacher``: the renderer to distil from (needs
        ``config.distill_weight`` > 0; same image size and input channels as ``generator``; it is not trained)."""
        super().__init__()
        self.teacher = _checked_teacher(teacher, generator.config, config.distill_weight)
        expected = generator.config.in_channels + generator.config.out_channels
        if discriminator.config.input_nc != expected:
            raise ValueError(f"discriminator input_nc must be {expected} (generator input + image), "
                             f"got {discriminator.config.input_nc}")
        if generator.config.in_channels != 6 + config.tpe.channels:
            raise ValueError(f"generator in_channels ({generator.config.in_channels}) must be 6 + TPE channels "
                             f"({config.tpe.channels})")
        self.config = config
        self.networks = {"renderer": generator, "renderer_discriminator": discriminator}

        def frames(part: str) -> ConcatDataset:
            jitter = config.tpe_jitter if part == "train" else 0
            return ConcatDataset([RenderFrames(s, part, generator.config.image_size, tpe=config.tpe,
                                               tpe_jitter=jitter, val_fraction=config.val_fraction,
                                               face_center=config.face_center,
                                               preload_limit_mb=config.preload_limit_mb,
                                               warped_reference=generator.config.warped_reference,
                                               models_dir=config.models_dir) for s in samples])

        self.train_set = frames("train")
        self.val_set = frames("val") if config.val_fraction > 0 else None
        self.perceptual = (perceptual if perceptual is not None else PerceptualLoss()) if config.perceptual_weight else None
        self.optimizers = {kind: torch.optim.Adam(net.parameters(), lr=config.lr, betas=config.betas)
                           for kind, net in self.networks.items()}

    def to(self, device: torch.device) -> None:
        super().to(device)
        if self.perceptual is not None:
            self.perceptual.to(device)
        if self.teacher is not None:
            self.teacher.to(device)
        if self.config.channels_last:
            for network in [*self.networks.values(), *([self.teacher] if self.teacher is not None else [])]:
                network.to(memory_format=torch.channels_last)

    def batch_to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = super().batch_to_device(batch)
        if self.config.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
        return batch

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def _discriminate(self, x: torch.Tensor, fake: torch.Tensor, real: torch.Tensor):
        """Multi-scale outputs (fake half, real half) from one discriminator call (one DDP forward per backward)."""
        outputs = self.parallel("renderer_discriminator")(torch.cat([torch.cat([x, fake], 1),
                                                                     torch.cat([x, real], 1)]))
        fake_out = [[layer.chunk(2)[0] for layer in scale] for scale in outputs]
        real_out = [[layer.chunk(2)[1] for layer in scale] for scale in outputs]
        return fake_out, real_out

    def reconstruction_terms(self, fake: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mouth = batch["mouth"]
        return {"color": F.l1_loss(fake, batch["target"]), "mouth": F.l1_loss(fake * mouth, batch["target"] * mouth)}

    @torch.no_grad()
    def teacher_output(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's render of the batch; a teacher without ``warped_reference`` gets the still reference
        (``still_reference``, when the batch has it) in its reference channels."""
        x = batch["input"]
        if "still_reference" in batch and not self.teacher.config.warped_reference:
            x = x.clone()
            x[:, REFERENCE_CHANNELS] = batch["still_reference"]
        self.teacher.eval()
        with self._autocast():
            return self.teacher(x)

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        x, real = batch["input"], batch["target"]
        if cfg.gan_weight == 0 and cfg.feature_matching_weight == 0:
            return self._generator_only_step(batch)
        taught = self.teacher_output(batch) if self.teacher is not None else None
        # the discriminator's weight gradients from the generator loss would be discarded (its step zeroes them
        # first): not building them saves a part of the step (benchmarks/bench_avatar_step.py); DDP needs them
        frozen = [] if "renderer_discriminator" in self._parallel else \
            [p for p in self.networks["renderer_discriminator"].parameters() if p.requires_grad]
        for param in frozen:
            param.requires_grad_(False)
        try:
            with self._autocast():
                fake = self.parallel("renderer")(x)
                fake_out, real_out = self._discriminate(x, fake, real)
                terms = self.reconstruction_terms(fake, batch)
                terms["gan"] = lsgan_loss(fake_out, True)
                terms["fm"] = feature_matching_loss(fake_out, real_out)
                perceptual = self.perceptual(fake, real) if self.perceptual is not None else None
            g_loss = self._optimise_generator(terms, fake, perceptual, taught)
        finally:
            for param in frozen:
                param.requires_grad_(True)

        with self._autocast():
            fake_out, real_out = self._discriminate(x, fake.detach(), real)
            d_loss = 0.5 * (lsgan_loss(real_out, True) + lsgan_loss(fake_out, False))
        self.optimise("renderer_discriminator", d_loss)
        return {"g": g_loss.item(), **{name: value.item() for name, value in terms.items()}, "d": d_loss.item()}

    def _optimise_generator(self, terms: dict[str, torch.Tensor], fake: torch.Tensor, perceptual: torch.Tensor | None,
                            taught: torch.Tensor | None) -> torch.Tensor:
        """Add the VGG19 and distillation terms to ``terms`` (in place), take the generator's step on their
        weighted sum and return it."""
        cfg = self.config
        if perceptual is not None:
            terms["vgg"] = perceptual
        if taught is not None:
            terms["distill"] = F.l1_loss(fake, taught)
        weights = {"gan": cfg.gan_weight, "color": cfg.color_weight, "mouth": cfg.mouth_weight,
                   "fm": cfg.feature_matching_weight, "vgg": cfg.perceptual_weight, "distill": cfg.distill_weight}
        g_loss = sum(weights[name] * value for name, value in terms.items())
        self.optimise("renderer", g_loss)
        return g_loss

    def _generator_only_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """The step without adversarial terms: the discriminator would not change the generator's loss."""
        taught = self.teacher_output(batch) if self.teacher is not None else None
        with self._autocast():
            fake = self.parallel("renderer")(batch["input"])
            terms = self.reconstruction_terms(fake, batch)
            perceptual = self.perceptual(fake, batch["target"]) if self.perceptual is not None else None
        g_loss = self._optimise_generator(terms, fake, perceptual, taught)
        return {"g": g_loss.item(), **{name: value.item() for name, value in terms.items()}}

    def val_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        fake = self.networks["renderer"](batch["input"])
        terms = self.reconstruction_terms(fake, batch)
        loss = self.config.color_weight * terms["color"] + self.config.mouth_weight * terms["mouth"]
        return {"loss": loss.item(), "psnr": psnr(_images(fake), _images(batch["target"]))}


@torch.no_grad()
def evaluate_renderer(renderer: RenderGenerator, sample: SampleData, *, tpe: TPEConfig, val_fraction: float = 0.2,
                      face_center: Sequence[float] = CANONICALISATION_FACE_CENTER, size: int | None = None,
                      batch_size: int = 8, models_dir: str | os.PathLike | None = None) -> tuple[float, float]:
    """Held-out (PSNR dB, SSIM) of the renderer: ground-truth conditions of the last ``val_fraction`` of the clip
    rendered and compared with the real frames, at ``size`` px (default: the renderer's; renders are resized
    bilinearly like :class:`moda_core.pipeline.AnimateOptions` ``output_size``)."""
    from moda_core.models.renderer import render

    renderer_size = renderer.config.image_size
    size = size or renderer_size
    frames = RenderFrames(sample, "val", renderer_size, tpe=tpe, val_fraction=val_fraction, face_center=face_center,
                          warped_reference=renderer.config.warped_reference, models_dir=models_dir)
    device = next(renderer.parameters()).device
    renders, reals = [], []
    renderer.eval()
    for batch in DataLoader(frames, batch_size=batch_size):
        images = (render(renderer, batch["input"].to(device)).clamp(-1, 1) + 1.0) / 2.0
        if size != renderer_size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            reals.append(torch.stack([read_frame(sample, int(t), size) for t in batch["index"]]))
        else:                                 # the batch's targets: the frames read at this size, back to uint8
            reals.append(((batch["target"] + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1))
        renders.append(images.clamp(0, 1).permute(0, 2, 3, 1).cpu())
    renders_np, reals_np = torch.cat(renders).numpy(), torch.cat(reals).numpy()
    return float(psnr(renders_np, reals_np)), float(ssim(renders_np, reals_np))


def _checked_teacher(teacher: RenderGenerator | None, student: RendererConfig,
                     weight: float) -> RenderGenerator | None:
    """The teacher frozen in eval mode, after checking it fits the student and the distillation weight."""
    if teacher is None:
        if weight > 0:
            raise ValueError(f"distill_weight is {weight} but no teacher renderer was given; give one or set 0")
        return None
    if weight == 0:
        raise ValueError("a teacher renderer was given but distill_weight is 0; set a weight > 0 (e.g. 50, the "
                         "colour term's) or give no teacher")
    mine, theirs = (student.image_size, student.in_channels), (teacher.config.image_size, teacher.config.in_channels)
    if mine != theirs:
        raise ValueError(f"the teacher renderer is {theirs[0]} px with {theirs[1]} input channels but the trained "
                         f"renderer is {mine[0]} px with {mine[1]}; distil from a renderer of the same size and "
                         "input (TPE) layout")
    if teacher.config.warped_reference and not student.warped_reference:
        raise ValueError("the teacher renderer refines warped references but the trained renderer takes the still "
                         "reference, so its batches hold no warped frames for the teacher; distil from a "
                         "still-reference renderer")
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def discriminator_config_for(generator: RendererConfig, ndf: int = 64, n_layers: int = 4,
                             num_d: int = 3) -> DiscriminatorConfig:
    """A discriminator config matching ``generator`` (input = generator input + image); defaults: authors'."""
    return DiscriminatorConfig(input_nc=generator.in_channels + generator.out_channels, ndf=ndf,
                               n_layers=n_layers, num_D=num_d)


def train_renderer(samples: Sequence[str | os.PathLike | SampleData], out_dir: str | os.PathLike, *,
                   model_config: RendererConfig | None = None, discriminator_config: DiscriminatorConfig | None = None,
                   config: RendererTrainConfig = RendererTrainConfig(), loop: LoopConfig = LoopConfig(max_epochs=100),
                   init: str | os.PathLike | None = None) -> TrainResult:
    """Train (or with ``init``, fine-tune) the renderer for one subject's sample folders.

    Best weights by validation loss go to ``out_dir/renderer.safetensors``. ``init``: a renderer file to start
    from (e.g. the converted authors' renderer); the discriminator always starts fresh.
    """
    data = load_samples(samples)
    torch.manual_seed(loop.seed)
    generator = initial_network("renderer", model_config, init)
    discriminator = MultiscaleDiscriminator(discriminator_config or discriminator_config_for(generator.config))
    return run_training(RendererTask(generator, discriminator, data, config), out_dir, loop)
