"""MODA audio-to-motion network ("MODANet"): wav2vec2 features + subject template -> lip, eye, head, torso motion.

Attribute names and registration order follow the authors' network so their checkpoint loads strictly
(449 state-dict keys with the default config). The dual-attention body has two branches:

- short ("specific attention"): a transformer decoder whose target is subject + audio features and whose
  memory is the audio features, each frame attending only to its own audio frame; deterministic.
- long ("probabilistic attention"): a transformer encoder -> per-frame VAE posterior (mu, logvar) -> a
  sampled latent that a transformer decoder uses as memory; this branch is what makes samples differ.

The authors' quirks are reproduced on purpose, because the released weights were trained with them:

1. Long-branch positional encoding is indexed by the *batch* row: row b gets ``pe[b]`` added on every frame
   (the table is seq-first but the tensors are batch-first). At inference (B = 1) that is ``pe[0]``.
2. The long-branch decoder "mask" is +1.0 above the diagonal, added to the attention logits: it masks
   nothing and slightly favours future frames.
3. The short-branch memory mask blocks every off-diagonal entry: frame t sees only audio frame t.
4. The short-branch target mask is causal with a tiny ALiBi-like bias, -2^-8 per 30-frame period of distance.
5. The VAE samples from the input-conditioned posterior at inference too (eval mode does not switch it off).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from .audio_encoder import SAMPLE_RATE, AudioEncoder, AudioEncoderConfig, FrameCount, frames_for_samples
from .mlp import MLP

_ALIBI_SLOPE = 2.0 ** -8  # FaceFormer slope for a single head, shared by all heads in MODA


@dataclass(frozen=True)
class MODAConfig:
    """MODANet sizes. Defaults are the authors' effective inference options (96.72 M parameters).

    ``audio_encoder=None`` builds no wav2vec2 (features are then computed elsewhere and passed to forward).
    """

    audio_encoder: AudioEncoderConfig | None = field(default_factory=AudioEncoderConfig)
    audio_feat_dim: int = 768  # wav2vec2 hidden size
    hidden_size: int = 128
    n_layers: int = 3  # transformer layers per encoder/decoder
    n_heads: int = 4
    period: int = 30  # frames per period of the short branch's positional encoding and mask bias
    max_seq_len: int = 600  # longest sequence (frames) the buffers cover
    vertice_dim: int = 1434  # subject template, 478 points x 3
    lip_dim: int = 120  # 40 points x 3
    eye_dim: int = 180  # 60 points x 3
    head_dim: int = 7  # 3 rotation, 3 translation, 1 scale
    torso_dim: int = 54  # 18 points x 3
    lip_tail_hidden: int = 512
    tail_hidden: int = 256  # eye, head and torso tails
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.audio_encoder is not None and self.audio_encoder.hidden_size != self.audio_feat_dim:
            raise ValueError(f"audio_feat_dim ({self.audio_feat_dim}) must equal audio_encoder.hidden_size "
                             f"({self.audio_encoder.hidden_size})")
        if self.hidden_size % self.n_heads or self.hidden_size % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be even and divisible by n_heads "
                             f"({self.n_heads})")
        if self.max_seq_len < 1 or self.period < 1:
            raise ValueError(f"max_seq_len and period must be >= 1, got {self.max_seq_len}, {self.period}")

    @classmethod
    def tiny(cls, **overrides: Any) -> MODAConfig:
        """Small network (tiny wav2vec2, hidden 32) with the real input/output sizes; for fast tests."""
        fields: dict[str, Any] = dict(audio_encoder=AudioEncoderConfig.tiny(), audio_feat_dim=32, hidden_size=32,
                                      n_layers=2, lip_tail_hidden=64, tail_hidden=64)
        fields.update(overrides)
        return cls(**fields)

    @property
    def motion_dim(self) -> int:
        """lip + eye + head + torso channels per frame."""
        return self.lip_dim + self.eye_dim + self.head_dim + self.torso_dim

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields; the audio encoder is a nested dict or None."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.audio_encoder is not None:
            fields["audio_encoder"] = self.audio_encoder.to_dict()
        return fields

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> MODAConfig:
        fields = dict(fields)
        if fields.get("audio_encoder") is not None:
            fields["audio_encoder"] = AudioEncoderConfig.from_dict(fields["audio_encoder"])
        return cls(**fields)


class MODAOutput(NamedTuple):
    """Per-frame motion offsets from the subject means, and the VAE posterior. Shapes for B clips of T frames."""

    lip: torch.Tensor  # [B, T, 120]
    eye: torch.Tensor  # [B, T, 180]
    head: torch.Tensor  # [B, T, 7]
    torso: torch.Tensor  # [B, T, 54]
    mu: torch.Tensor  # [B, T, hidden]
    logvar: torch.Tensor  # [B, T, hidden]
    temporal_feature: torch.Tensor  # [B, T, 2*hidden]: short-branch output, then long-branch output


def _sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """Standard transformer sin/cos table [num_positions, dim]: even channels sin, odd channels cos."""
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    inverse_wavelength = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inverse_wavelength)
    table[:, 1::2] = torch.cos(position * inverse_wavelength)
    return table


def _decoder(config: MODAConfig) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(config.hidden_size, config.n_heads, dim_feedforward=config.hidden_size,
                                       dropout=config.dropout, batch_first=True)
    return nn.TransformerDecoder(layer, num_layers=config.n_layers)


class PeriodicPositionalEncoding(nn.Module):
    """Sin/cos code of (frame mod period), added to [B, T, D] features, then dropout. Buffer ``pe`` [1, L, D]."""

    def __init__(self, dim: int, period: int, max_seq_len: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        num_periods = max_seq_len // period + 1
        self.register_buffer("pe", _sinusoid_table(period, dim).repeat(num_periods, 1).unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[:, : x.shape[1]])


class BatchIndexedPositionalEncoding(nn.Module):
    """The long branch's positional encoding, with the authors' quirk: row b of a [B, T, D] batch gets the
    code of *position b* on every frame. Buffer ``pe`` [max_len, 1, D] (seq-first layout)."""

    def __init__(self, dim: int, max_len: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", _sinusoid_table(max_len, dim).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[0]])


class AlignedAttentionBranch(nn.Module):
    """Short branch ("specific attention"): frame-aligned, deterministic lip-sync features.

    Buffers: ``biased_mask`` [1, L, L] (causal, -2^-8 per ``period`` frames of distance, -inf in the future)
    and ``memory_mask`` [L, L] (bool, True = blocked: everything but the diagonal).
    """

    def __init__(self, config: MODAConfig):
        super().__init__()
        self.n_heads = config.n_heads
        length = config.max_seq_len
        query = torch.arange(length).unsqueeze(1)
        key = torch.arange(length).unsqueeze(0)
        distance_bias = -_ALIBI_SLOPE * torch.div(query - key, config.period, rounding_mode="floor").float()
        biased_mask = torch.where(key <= query, distance_bias, torch.tensor(float("-inf")))
        self.register_buffer("biased_mask", biased_mask.unsqueeze(0))
        self.register_buffer("memory_mask", ~torch.eye(length, dtype=torch.bool))
        self.decoder = _decoder(config)
        self.ppe = PeriodicPositionalEncoding(config.hidden_size, config.period, config.max_seq_len, config.dropout)

    def forward(self, audio: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        """audio [B, T, D], subject [B, D] -> [B, T, D]."""
        batch, frames, _ = audio.shape
        target = self.ppe(subject.unsqueeze(1) + audio)
        target_mask = self.biased_mask[:, :frames, :frames].repeat(batch * self.n_heads, 1, 1)
        memory_mask = self.memory_mask[:frames, :frames]
        return self.decoder(target, audio, tgt_mask=target_mask, memory_mask=memory_mask)


class ProbabilisticAttentionBranch(nn.Module):
    """Long branch ("probabilistic attention"): transformer encoder -> per-frame VAE -> transformer decoder."""

    def __init__(self, config: MODAConfig):
        super().__init__()
        hidden = config.hidden_size
        self.n_heads = config.n_heads
        self.embedding = BatchIndexedPositionalEncoding(hidden, config.max_seq_len, config.dropout)
        encoder_layer = nn.TransformerEncoderLayer(hidden, config.n_heads, dim_feedforward=hidden,
                                                   dropout=config.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(encoder_layer, num_layers=config.n_layers)
        self.decoder = _decoder(config)
        self.out = nn.Sequential(nn.Linear(hidden, hidden))
        self.to_mu = nn.Linear(hidden, hidden)
        self.to_logvar = nn.Linear(hidden, hidden)
        self.decode_latent = nn.Linear(hidden, hidden)

    def forward(self, audio: torch.Tensor, subject: torch.Tensor, noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """audio [B, T, D], subject [B, D], noise [B, T, D] ~ N(0, I) -> (features, mu, logvar), each [B, T, D]."""
        batch, frames, _ = audio.shape
        features = self.embedding(subject.unsqueeze(1).expand(-1, frames, -1)) + audio
        encoded = self.encoder(features)
        mu, logvar = self.to_mu(encoded), self.to_logvar(encoded)
        latent = noise * torch.exp(0.5 * logvar) + mu
        # Quirk 2: +1.0 on future positions, an additive bias rather than a mask.
        future_bias = torch.triu(torch.ones(frames, frames, device=audio.device, dtype=audio.dtype), diagonal=1)
        future_bias = future_bias.expand(batch * self.n_heads, -1, -1)
        decoded = self.decoder(features, self.decode_latent(latent), tgt_mask=future_bias)
        return self.out(decoded), mu, logvar


class DualAttentionBody(nn.Module):
    """Both branches; output is concat([short, long]) [B, T, 2D] plus the long branch's mu and logvar."""

    def __init__(self, config: MODAConfig):
        super().__init__()
        self.short_layer = AlignedAttentionBranch(config)
        self.long_layer = ProbabilisticAttentionBranch(config)

    def forward(self, audio: torch.Tensor, subject: torch.Tensor, noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        short = self.short_layer(audio, subject)
        long, mu, logvar = self.long_layer(audio, subject, noise)
        return torch.cat([short, long], dim=-1), mu, logvar


class MODANet(nn.Module):
    """MODA audio-to-motion network. Build from a config (random weights), then ``load_state_dict``."""

    def __init__(self, config: MODAConfig | None = None):
        super().__init__()
        config = config or MODAConfig()
        self.config = config
        hidden = config.hidden_size
        self.audio_encoder = AudioEncoder(config.audio_encoder) if config.audio_encoder is not None else None
        if self.audio_encoder is not None:
            self.audio_encoder.freeze_feature_encoder()  # the authors never train the wav2vec2 CNN
        self.audio_encoder_head = MLP(config.audio_feat_dim, hidden, hidden, 2, with_norm=True)
        self.subject_encoder_head = MLP(config.vertice_dim, hidden, hidden, 3, with_norm=True)
        self.temporal_body = DualAttentionBody(config)
        self.lipmotion_tail = MLP(2 * hidden, config.lip_dim, config.lip_tail_hidden, 2, with_norm=True)
        self.eyemovement_tail = MLP(2 * hidden, config.eye_dim, config.tail_hidden, 3, with_norm=True)
        self.headmotion_tail = MLP(2 * hidden, config.head_dim, config.tail_hidden, 3, with_norm=True)
        self.torsomotion_tail = MLP(2 * hidden, config.torso_dim, config.tail_hidden, 3, with_norm=True)

    def encode_audio(self, input_values: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Normalised 16 kHz audio [B, N] -> wav2vec2 features [B, num_frames, audio_feat_dim]."""
        if self.audio_encoder is None:
            raise RuntimeError("this MODANet was built without an audio encoder (config.audio_encoder is None)")
        return self.audio_encoder(input_values, num_frames)

    def forward(self, audio_features: torch.Tensor, subject: torch.Tensor, *, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> MODAOutput:
        """Predict motion for B clips of T frames.

        audio_features: wav2vec2 last hidden state [B, T, audio_feat_dim] (see ``encode_audio``).
        subject: flattened subject template [B, vertice_dim] (478 points x 3, x/y/z interleaved).
        noise: the VAE draw [B, T, hidden_size]; if None it is drawn with ``torch.randn(generator=generator)``
            (the global RNG when ``generator`` is None).
        """
        config = self.config
        if audio_features.ndim != 3 or audio_features.shape[2] != config.audio_feat_dim:
            raise ValueError(f"audio_features must be [B, T, {config.audio_feat_dim}], "
                             f"got shape {tuple(audio_features.shape)}")
        batch, frames, _ = audio_features.shape
        if not 1 <= frames <= config.max_seq_len:
            raise ValueError(f"audio_features has {frames} frames; MODANet takes 1..{config.max_seq_len}")
        if batch > config.max_seq_len:  # quirk 1 indexes the positional table by batch row
            raise ValueError(f"audio_features batch size {batch} exceeds max_seq_len ({config.max_seq_len})")
        if tuple(subject.shape) != (batch, config.vertice_dim):
            raise ValueError(f"subject must be [{batch}, {config.vertice_dim}], got shape {tuple(subject.shape)}")
        noise_shape = (batch, frames, config.hidden_size)
        if noise is None:  # drawn where the generator lives, so a CPU seed gives the same noise on any device
            noise_device = generator.device if generator is not None else audio_features.device
            noise = torch.randn(noise_shape, generator=generator, device=noise_device,
                                dtype=audio_features.dtype).to(audio_features.device)
        elif tuple(noise.shape) != noise_shape:
            raise ValueError(f"noise must be {list(noise_shape)}, got shape {tuple(noise.shape)}")

        audio = self.audio_encoder_head(audio_features)
        subject_style = self.subject_encoder_head(subject)
        temporal_feature, mu, logvar = self.temporal_body(audio, subject_style, noise)
        return MODAOutput(lip=self.lipmotion_tail(temporal_feature), eye=self.eyemovement_tail(temporal_feature),
                          head=self.headmotion_tail(temporal_feature), torso=self.torsomotion_tail(temporal_feature),
                          mu=mu, logvar=logvar, temporal_feature=temporal_feature)


class GeneratedMotion(NamedTuple):
    """Motion for a whole clip: offsets from the subject means, one row per video frame."""

    lip: torch.Tensor  # [T, 120]
    eye: torch.Tensor  # [T, 180]
    head: torch.Tensor  # [T, 7]
    torso: torch.Tensor  # [T, 54]


BlendMode = Literal["average", "crossfade"]


def blend_overlap(earlier: torch.Tensor, later: torch.Tensor, mode: BlendMode) -> torch.Tensor:
    """Merge the frames two windows share, [M, C] each.

    "average": 50/50 mean (the authors' merge). "crossfade": weight of ``later`` rises linearly
    (j + 1) / (M + 1) over the overlap, so the result moves smoothly from one window to the next.
    """
    if earlier.shape != later.shape:
        raise ValueError(f"overlaps differ in shape: {tuple(earlier.shape)} vs {tuple(later.shape)}")
    if mode == "average":
        return (earlier + later) / 2
    if mode == "crossfade":
        steps = earlier.shape[0]
        weight = torch.arange(1, steps + 1, dtype=earlier.dtype, device=earlier.device) / (steps + 1)
        return torch.lerp(earlier, later, weight.unsqueeze(1))
    raise ValueError(f"blend must be 'average' or 'crossfade', got {mode!r}")


NoiseFn = Callable[[int, int], torch.Tensor]
"""(window index, frames in the window) -> VAE noise [1, frames, hidden_size]."""
WINDOW_SECONDS = 20.0                    # the authors' window for long audio


class MotionWindow(NamedTuple):
    """One MODA window: audio samples ``[start_sample, stop_sample)`` -> ``frames`` frames at ``start_frame``."""

    start_sample: int
    stop_sample: int
    frames: int
    start_frame: int


def motion_windows(total_samples: int, fps: float = 30.0, *, window_seconds: float = WINDOW_SECONDS,
                   hop_seconds: float = 10.0, frame_count: FrameCount = "exact"
                   ) -> tuple[list[MotionWindow], int]:
    """The windows long audio is cut into, and the clip's frame count.

    Windows of ``window_seconds`` start every ``hop_seconds``; each gets ``frames_for_samples(len, rule)``.
    ``frame_count="exact"`` (default): windows stop at the first one that reaches the end of the audio, window k
    is placed at frame ``k * round(hop_seconds * fps)`` and the clip has ``frames_for_samples(N)`` frames
    (8.00 s -> 240, 28 s -> 840). ``"authors"``: their ``generate_sequences`` -- windows stop after the first
    one that ends *past* the audio (exactly 20 s gets a second window), frame counts in float64, and each
    window after the first overlaps the last ``first_window_frames // 2`` frames of the result so far; the
    clip has as many frames as that merge gives (28 s -> 840, 25 s -> 749, 8 s -> 239).
    """
    if frame_count not in ("exact", "authors"):
        raise ValueError(f"frame_count must be 'exact' or 'authors', got {frame_count!r}")
    window_samples = round(window_seconds * SAMPLE_RATE)
    hop_samples = round(hop_seconds * SAMPLE_RATE)
    hop_frames = round(hop_samples * fps / SAMPLE_RATE)
    window_frames = frames_for_samples(window_samples, fps, rule=frame_count)
    if not 1 <= hop_frames <= window_frames:
        raise ValueError(f"hop_seconds ({hop_seconds}) must give 1..{window_frames} frames per hop at {fps} fps "
                         f"(at most the window), got {hop_frames}")
    windows: list[MotionWindow] = []
    length = 0                                           # frames in the merged result so far
    while True:
        start = len(windows) * hop_samples
        stop = min(start + window_samples, total_samples)
        frames = frames_for_samples(stop - start, fps, rule=frame_count)
        if not windows:
            start_frame = 0
        elif frame_count == "authors":
            start_frame = length - windows[0].frames // 2
        else:
            start_frame = len(windows) * hop_frames
        windows.append(MotionWindow(start, stop, frames, start_frame))
        length = max(length, start_frame + frames)
        if frame_count == "authors":
            reached_end = start + window_samples > total_samples
        else:
            reached_end = start + window_samples >= total_samples
        if reached_end:
            break
    total = length if frame_count == "authors" else frames_for_samples(total_samples, fps)
    return windows, total


@torch.no_grad()
def generate_motion(model: MODANet, input_values: torch.Tensor, subject: torch.Tensor, *, fps: float = 30.0,
                    generator: torch.Generator | None = None, window_seconds: float = WINDOW_SECONDS,
                    hop_seconds: float = 10.0, blend: BlendMode = "average", frame_count: FrameCount = "exact",
                    noise_fn: NoiseFn | None = None,
                    on_window: Callable[[int, int], None] | None = None) -> GeneratedMotion:
    """Motion for audio of any length, with the authors' overlapping windows.

    input_values: whole clip, normalised 16 kHz mono [N] (see ``normalise_waveform``; normalise the whole
    clip before windowing, as the authors do). subject: flattened template [vertice_dim].
    Windows come from :func:`motion_windows` (``frame_count`` picks the exact count or the authors'); each
    window gets its own VAE noise (``noise_fn(window_index, frames)`` if given, else drawn from ``generator``).
    The frames a window shares with the result so far are merged with ``blend_overlap`` ("average" is the
    authors' merge). With ``frame_count="exact"`` the result is padded with its last frame or trimmed to
    exactly ``frames_for_samples(N)``. Only one window is in flight at a time, so memory does not grow with the
    audio beyond the outputs. ``on_window(done, total)`` is called after each window (progress; it may raise
    to stop).
    """
    config = model.config
    if blend not in ("average", "crossfade"):
        raise ValueError(f"blend must be 'average' or 'crossfade', got {blend!r}")
    if model.training:
        raise ValueError("model must be in eval mode (call model.eval()); BatchNorm would use batch statistics")
    if input_values.ndim != 1:
        raise ValueError(f"input_values must be a 1-D waveform [N], got shape {tuple(input_values.shape)}")
    if tuple(subject.shape) != (config.vertice_dim,):
        raise ValueError(f"subject must be [{config.vertice_dim}], got shape {tuple(subject.shape)}")
    window_frames = frames_for_samples(round(window_seconds * SAMPLE_RATE), fps, rule=frame_count)
    if window_frames > config.max_seq_len:
        raise ValueError(f"window_seconds ({window_seconds}) at {fps} fps gives {window_frames} frames; "
                         f"the model takes at most {config.max_seq_len}")
    total_samples = input_values.shape[0]
    if frames_for_samples(total_samples, fps, rule=frame_count) < 1:
        raise ValueError(f"input_values is too short for one frame at {fps} fps ({total_samples} samples)")
    windows, total_frames = motion_windows(total_samples, fps, window_seconds=window_seconds,
                                           hop_seconds=hop_seconds, frame_count=frame_count)

    device = next(model.parameters()).device
    subject_batch = subject.to(device=device, dtype=torch.float32).unsqueeze(0)
    finished: list[torch.Tensor] = []  # frames no later window can touch, [*, motion_dim] each
    pending = torch.empty(0, config.motion_dim, device=device)  # frames from `pending_start` on
    pending_start = 0
    for window_index, window in enumerate(windows):
        chunk = input_values[window.start_sample:window.stop_sample].to(device=device, dtype=torch.float32)
        frames = window.frames
        noise = noise_fn(window_index, frames).to(device) if noise_fn is not None else None
        output = model(model.encode_audio(chunk.unsqueeze(0), frames), subject_batch, noise=noise,
                       generator=generator)
        motion = torch.cat([output.lip, output.eye, output.head, output.torso], dim=-1)[0]

        start_frame = window.start_frame
        finished.append(pending[: start_frame - pending_start].clone())  # clone: drop the rest of the window
        earlier = pending[start_frame - pending_start:]
        shared = min(earlier.shape[0], frames)
        pending = torch.cat([blend_overlap(earlier[:shared], motion[:shared], blend), earlier[shared:],
                             motion[shared:]])
        pending_start = start_frame
        if on_window is not None:
            on_window(window_index + 1, len(windows))

    motion = torch.cat([*finished, pending])[:total_frames]
    if motion.shape[0] < total_frames:
        motion = torch.cat([motion, motion[-1:].expand(total_frames - motion.shape[0], -1)])
    parts = motion.split([config.lip_dim, config.eye_dim, config.head_dim, config.torso_dim], dim=-1)
    return GeneratedMotion(*(part.contiguous() for part in parts))
