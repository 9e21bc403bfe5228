"""wav2vec2 audio encoder aligned to the video frame rate, as MODA uses it.

MODA runs the wav2vec2 CNN on 16 kHz audio (about 49.9 feature frames per second), linearly resamples those
CNN features to exactly one vector per video frame, and only then applies the feature projection and the
transformer encoder. ``AudioEncoder`` is a ``transformers.Wav2Vec2Model`` (same state-dict keys) whose
``forward`` does exactly that with transformers' own submodules.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2Model

SAMPLE_RATE = 16000
"""Sample rate (Hz) wav2vec2 expects."""
FrameCount = Literal["exact", "authors"]

_NORMALISE_EPS = 1e-7
_LEGACY_WEIGHT_NORM_SUFFIXES = {
    ".weight_g": ".parametrizations.weight.original0",
    ".weight_v": ".parametrizations.weight.original1",
}


def normalise_waveform(waveform: torch.Tensor) -> torch.Tensor:
    """Zero-mean, unit-variance normalisation over the whole clip, as the wav2vec2 feature extractor does.

    ``(x - mean) / sqrt(var + 1e-7)`` with the population variance, in float32. ``waveform``: [N] or [B, N]
    (each row normalised on its own). Returns float32 of the same shape.
    """
    if waveform.ndim not in (1, 2) or waveform.shape[-1] == 0:
        raise ValueError(f"waveform must be [N] or [B, N] with N > 0, got shape {tuple(waveform.shape)}")
    samples = waveform.to(torch.float32)
    mean = samples.mean(dim=-1, keepdim=True)
    variance = samples.var(dim=-1, correction=0, keepdim=True)
    return (samples - mean) / torch.sqrt(variance + _NORMALISE_EPS)


def frames_for_samples(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE,
                       rule: FrameCount = "exact") -> int:
    """Number of video frames for ``num_samples`` of audio.

    ``rule="exact"`` (default): ``floor(n * fps / sample_rate)`` in exact arithmetic, so 8.00 s at 30 fps is 240.
    ``rule="authors"``: their ``int(n / (sample_rate / fps))`` in float64, which can fall one frame short
    (128000 samples give 239, 32000 give 59).
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if fps <= 0 or sample_rate <= 0:
        raise ValueError(f"fps and sample_rate must be > 0, got fps={fps}, sample_rate={sample_rate}")
    if rule == "authors":
        return int(num_samples / (sample_rate / fps))
    if rule != "exact":
        raise ValueError(f"frame count rule must be 'exact' or 'authors', got {rule!r}")
    return math.floor(num_samples * Fraction(repr(float(fps))) / sample_rate)


def remap_legacy_weight_norm(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename torch <= 2.0 weight-norm keys to the current parametrization names, keeping the order.

    ``<prefix>.weight_g`` -> ``<prefix>.parametrizations.weight.original0`` (g) and ``<prefix>.weight_v`` ->
    ``<prefix>.parametrizations.weight.original1`` (v). Other keys are passed through unchanged.
    """
    remapped: dict[str, Any] = {}
    for key, value in state_dict.items():
        for legacy, current in _LEGACY_WEIGHT_NORM_SUFFIXES.items():
            if key.endswith(legacy):
                key = key[: -len(legacy)] + current
                break
        remapped[key] = value
    return remapped


@dataclass(frozen=True)
class AudioEncoderConfig:
    """wav2vec2 architecture. Defaults are facebook/wav2vec2-base-960h (94.37 M parameters)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    hidden_act: str = "gelu"
    feat_extract_activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_proj_dropout: float = 0.1  # base-960h value; transformers 5 defaults to 0.0
    mask_time_prob: float = 0.05  # SpecAugment in training; > 0 also creates the `masked_spec_embed` key
    attn_implementation: str = "sdpa"  # "eager" or "sdpa"; same weights, results within ~2e-6

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; keep the config hashable.
        for name in ("conv_dim", "conv_kernel", "conv_stride"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            raise ValueError("conv_dim, conv_kernel and conv_stride must have the same length, got "
                             f"{len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.attn_implementation not in ("eager", "sdpa"):
            raise ValueError(f"attn_implementation must be 'eager' or 'sdpa', got {self.attn_implementation!r}")

    @classmethod
    def tiny(cls, **overrides: Any) -> AudioEncoderConfig:
        """The small wav2vec2 of the parity vectors (hidden 32, 2 layers); for fast tests."""
        fields = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (tuples become lists)."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> AudioEncoderConfig:
        return cls(**fields)

    def to_hf_config(self) -> Wav2Vec2Config:
        """The equivalent ``transformers.Wav2Vec2Config`` (all other fields at their base-960h defaults)."""
        fields = self.to_dict()
        fields["num_feat_extract_layers"] = len(self.conv_dim)
        return Wav2Vec2Config(**fields)

    def min_num_samples(self) -> int:
        """Fewest input samples that still give one CNN feature frame (400 for base-960h)."""
        samples = 1
        for kernel, stride in reversed(list(zip(self.conv_kernel, self.conv_stride))):
            samples = (samples - 1) * stride + kernel
        return samples


class AudioEncoder(Wav2Vec2Model):
    """``Wav2Vec2Model`` whose forward resamples the CNN features to a given number of video frames.

    State-dict keys are exactly the Hugging Face ``Wav2Vec2Model`` keys. The model is built from the config
    only (random weights); load weights with ``load_state_dict``.
    """

    def __init__(self, config: AudioEncoderConfig):
        super().__init__(config.to_hf_config())
        self.audio_config = config

    def forward(self, input_values: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Audio features at video rate.

        input_values: normalised 16 kHz waveform [B, N] (see ``normalise_waveform``).
        num_frames: output length T, usually ``frames_for_samples(N, fps)``.
        Returns the encoder's last hidden state [B, T, hidden_size].
        """
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be [B, N], got shape {tuple(input_values.shape)}")
        min_samples = self.audio_config.min_num_samples()
        if input_values.shape[1] < min_samples:
            raise ValueError(f"input_values needs at least {min_samples} samples, got {input_values.shape[1]}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        cnn_features = self.feature_extractor(input_values)  # [B, C, T_cnn], ~49.9 Hz
        aligned = F.interpolate(cnn_features, size=num_frames, mode="linear", align_corners=True)
        hidden_states = self.feature_projection(aligned.transpose(1, 2))[0]  # [B, T, hidden]
        hidden_states = self._mask_hidden_states(hidden_states)  # SpecAugment; no-op in eval mode
        return self.encoder(hidden_states).last_hidden_state
