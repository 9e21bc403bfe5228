"""Loss terms of the three MODA stages (paper eq. 9-13 and supplementary B; moda-official-facts.md §3.6, §5.5).

* MODA: multi-task L1 on the motion offsets + KL of the VAE bottleneck (paper), or the authors' L2 + velocity.
* FaCo-Net and renderer: LSGAN (least squares) adversarial terms, multi-scale feature matching.
* Renderer: VGG19 perceptual L1. :class:`VGG19Features` uses torchvision's key names (``features.{i}.*``) so
  torchvision's published ImageNet weights load strictly without torchvision installed.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MOTION_PARTS = ("lip", "eye", "head", "torso")
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
"""torchvision's ImageNet VGG19 weights (``VGG19_Weights.IMAGENET1K_V1``)."""
_VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                 512, 512, 512, 512, "M")
VGG_LAYERS = (1, 6, 11, 20, 29)
"""Indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (pix2pixHD's perceptual layers)."""
VGG_LAYER_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------- MODA
def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Paper eq. 9: ``-1/(2 d) * sum(1 + log sigma^2 - mu^2 - sigma^2)`` over the d latent dims, mean over frames."""
    return -0.5 * torch.mean(1.0 + logvar - mu.pow(2) - logvar.exp())


def motion_l1_loss(pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Paper eq. 10: per-part mean absolute error; ``total`` = sum of ``weights[part] * term``."""
    terms = {part: F.l1_loss(pred[part], target[part]) for part in MOTION_PARTS}
    terms["total"] = sum(weights[part] * terms[part] for part in MOTION_PARTS)
    return terms


def _velocity(x: torch.Tensor) -> torch.Tensor:
    return x[:, 1:] - x[:, :-1]


AUTHORS_MSE_WEIGHTS = {"lip": 5.0, "eye": 1.0, "head": 1.0, "torso": 1.0}
AUTHORS_VELOCITY_WEIGHTS = {"lip": 5.0, "eye": 1.0, "head": 1.0, "torso": 0.5}


def motion_l2_velocity_loss(pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                            weights: Mapping[str, float] = AUTHORS_MSE_WEIGHTS,
                            velocity_weights: Mapping[str, float] = AUTHORS_VELOCITY_WEIGHTS
                            ) -> dict[str, torch.Tensor]:
    """The authors' ``L2+Velocity``: weighted MSE + weighted L1 of first temporal differences ([B, T, D] inputs).

    Their torso term is also divided by 54 and masked by a torso-motion test; here it is a plain MSE.
    """
    terms = {part: F.mse_loss(pred[part], target[part]) for part in MOTION_PARTS}
    velocity = {part: F.l1_loss(_velocity(pred[part]), _velocity(target[part])) for part in MOTION_PARTS}
    terms["total"] = sum(weights[p] * terms[p] + velocity_weights[p] * velocity[p] for p in MOTION_PARTS)
    terms.update({f"{part}_velocity": value for part, value in velocity.items()})
    return terms


# ------------------------------------------------------------------------------------------------- GAN
def lsgan_loss(scores: torch.Tensor | Sequence[Sequence[torch.Tensor]], real: bool) -> torch.Tensor:
    """Least-squares GAN: mean of ``(score - 1)^2`` for real targets, ``score^2`` for fake ones.

    ``scores`` is one score tensor or a multi-scale discriminator's output (per scale, the list of layer outputs
    whose last entry is the score map); scales are summed as in pix2pixHD.
    """
    if isinstance(scores, torch.Tensor):
        return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))
    return sum(lsgan_loss(layers[-1], real) for layers in scores)


def feature_matching_loss(fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]
                          ) -> torch.Tensor:
    """Supplementary B: ``sum_l |y_l - y*_l|`` over the intermediate layers (score map excluded), mean over scales."""
    per_scale = [sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_layers[:-1], real_layers[:-1]))
                 for fake_layers, real_layers in zip(fake, real)]
    return sum(per_scale) / len(per_scale)


# ------------------------------------------------------------------------------------------------- VGG
class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features`` (same ``features.{i}`` keys); returns the :data:`VGG_LAYERS` activations.

    Input: images [B, 3, H, W] in -1..1; they are mapped to 0..1 and ImageNet-normalised, as the weights expect.
    """

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((images + 1.0) / 2.0 - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features[:VGG_LAYERS[-1] + 1]):
            x = layer(x)
            if index in VGG_LAYERS:
                outputs.append(x)
        return outputs


def load_vgg19(url: str = VGG19_URL, model_dir: str | None = None) -> VGG19Features:
    """ImageNet VGG19 features from torchvision's URL, cached in the torch hub folder (``$TORCH_HOME/hub``).

    torchvision's classifier weights are dropped; every ``features`` key must match (strict load).
    """
    state = torch.hub.load_state_dict_from_url(url, model_dir=model_dir, map_location="cpu", progress=False,
                                               weights_only=True)
    model = VGG19Features()
    model.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=True)
    return model.eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """VGG19 perceptual L1 (pix2pixHD layer weights :data:`VGG_LAYER_WEIGHTS`).

    The weights are fetched on construction; when that fails (offline, no cached file) the loss warns once and
    is ``available = False``: :meth:`forward` then returns None and callers skip the term.
    """

    def __init__(self, url: str = VGG19_URL, model_dir: str | None = None):
        super().__init__()
        try:
            self.vgg: VGG19Features | None = load_vgg19(url, model_dir)
        except (OSError, RuntimeError, ValueError) as err:        # URLError is an OSError
            warnings.warn(f"perceptual loss disabled: could not get the VGG19 weights from {url} ({err}). "
                          "Training goes on without it; to use it, download that file once into "
                          f"{torch.hub.get_dir()}/checkpoints/ (or run once with internet access).",
                          RuntimeWarning, stacklevel=2)
            self.vgg = None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "PerceptualLoss":
        """The loss with VGG19 weights from a local file (torchvision's ``vgg19-dcbb9e9d.pth``); no download."""
        loss = cls.__new__(cls)
        nn.Module.__init__(loss)
        state = torch.load(path, map_location="cpu", weights_only=True)
        vgg = VGG19Features()
        vgg.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")}, strict=True)
        loss.vgg = vgg.eval().requires_grad_(False)
        return loss

    @property
    def available(self) -> bool:
        return self.vgg is not None

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor | None:
        if self.vgg is None:
            return None
        with torch.no_grad():
            real_features = self.vgg(real)
        return sum(w * F.l1_loss(f, r) for w, f, r in zip(VGG_LAYER_WEIGHTS, self.vgg(fake), real_features))
