"""Network sizes by preset: ``full`` (the authors'), ``small`` (``moda quickstart`` on a CPU), ``tiny`` (tests),
``fast`` (the compact real-time 512 px renderer, :meth:`RendererConfig.fast`; MODA and FaCo-Net at full size)."""
from __future__ import annotations

from moda_core.models.audio_encoder import AudioEncoderConfig
from moda_core.models.discriminators import DiscriminatorConfig
from moda_core.models.faco import FaCoConfig
from moda_core.models.moda import MODAConfig
from moda_core.models.renderer import RendererConfig

PRESETS = ("full", "small", "tiny", "fast")


def _small_moda() -> MODAConfig:
    """2-layer, 64-wide wav2vec2 and hidden size 64 (about 0.6 M parameters), for training from scratch."""
    audio = AudioEncoderConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                               conv_dim=(64,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4)
    return MODAConfig(audio_encoder=audio, audio_feat_dim=64, hidden_size=64, n_layers=2, lip_tail_hidden=128,
                      tail_hidden=128)


_CONFIGS = {
    "moda": {"full": MODAConfig, "small": _small_moda, "tiny": MODAConfig.tiny, "fast": MODAConfig},
    "faco": {"full": FaCoConfig, "tiny": FaCoConfig.tiny, "fast": FaCoConfig,
             "small": lambda: FaCoConfig(feature_dim=64, subject_hidden=64, driven_hidden=64, decoder_hidden=128,
                                         disc_mesh_hidden=64, disc_classifier_hidden=32)},
    # small: 256 px, 7 levels (2x2 at the bottom, like the authors' 512 px with 8 levels)
    "renderer": {"full": RendererConfig, "tiny": RendererConfig.tiny,
                 "small": lambda: RendererConfig(ngf=16, num_levels=7, image_size=256),
                 "fast": RendererConfig.fast},
    "renderer_discriminator": {"full": DiscriminatorConfig, "small": lambda: DiscriminatorConfig(ndf=16, n_layers=3, num_D=2),
                               "tiny": DiscriminatorConfig.tiny,
                               # fast: the D sees the 512 px pairs pooled to 256 px (about half the CPU step;
                               # benchmarks/bench_avatar_step.py --compare-discriminators)
                               "fast": lambda: DiscriminatorConfig(ndf=32, n_layers=3, num_D=2, downscale=2)},
}


def preset_config(kind: str, preset: str):
    """The network config of ``kind`` (moda, faco, renderer, renderer_discriminator) for ``preset``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if kind not in _CONFIGS:
        raise ValueError(f"no presets for {kind!r}; kinds: {', '.join(_CONFIGS)}")
    return _CONFIGS[kind][preset]()
