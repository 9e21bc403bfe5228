"""wav2vec2 audio encoder: normalisation, frame counts, config, and parity with the authors' aligned wav2vec2."""
from __future__ import annotations

import json
import pytest
from parity_helpers import load_golden
import torch
from safetensors import safe_open

from moda_core.models.audio_encoder import (AudioEncoder, AudioEncoderConfig, frames_for_samples,
                                            normalise_waveform, remap_legacy_weight_norm)

WEIGHT_PREFIX = "weights."
POS_CONV = "encoder.pos_conv_embed.conv."


@pytest.fixture(scope="module")
def golden(parity_dir) -> dict[str, torch.Tensor]:
    # Clone: safetensors hands out arbitrarily aligned memory, which changes CPU kernel results (README §3).
    return load_golden(parity_dir, "wav2vec_align.safetensors")


@pytest.fixture(scope="module")
def golden_config(parity_dir) -> dict:
    with safe_open(parity_dir / "wav2vec_align.safetensors", "pt") as file:
        return json.loads(file.metadata()["wav2vec2_config"])


@pytest.fixture(scope="module")
def golden_weights(golden) -> dict[str, torch.Tensor]:
    return {key[len(WEIGHT_PREFIX):]: value for key, value in golden.items() if key.startswith(WEIGHT_PREFIX)}


def _tiny_encoder(weights: dict[str, torch.Tensor], attn_implementation: str = "eager") -> AudioEncoder:
    encoder = AudioEncoder(AudioEncoderConfig.tiny(attn_implementation=attn_implementation)).eval()
    encoder.load_state_dict(weights, strict=True)
    return encoder


def test_normalise_waveform_matches_feature_extractor(golden):
    assert (normalise_waveform(golden["waveform"]) - golden["input_values"][0]).abs().max() <= 1e-6
    batch = torch.stack([golden["waveform"], 3 * golden["waveform"] + 1])
    normalised = normalise_waveform(batch)
    assert normalised.shape == (2, 32000)
    assert torch.allclose(normalised[0], normalised[1], atol=1e-5)
    with pytest.raises(ValueError, match="waveform"):
        normalise_waveform(torch.zeros(1, 2, 3))


def test_frames_for_samples_exact_and_the_authors_float_division():
    assert frames_for_samples(32000, 25) == frames_for_samples(32000, 25, rule="authors") == 50
    assert frames_for_samples(32000, 30, rule="authors") == 59  # 59.99999999999999 in float64
    assert frames_for_samples(128000, 30, rule="authors") == 239  # 8.00 s: 239.99999999999997
    assert frames_for_samples(32000, 30) == 60 and frames_for_samples(128000, 30) == 240
    assert frames_for_samples(320000, 30) == frames_for_samples(320000, 30, rule="authors") == 600
    assert frames_for_samples(183296, 30) == 343  # 11.456 s, the fact sheet's example
    assert frames_for_samples(16000, 29.97) == 29 and frames_for_samples(100000, 29.97) == 187  # 187.3125
    with pytest.raises(ValueError, match="rule"):
        frames_for_samples(16000, 30, rule="round")
    with pytest.raises(ValueError, match="num_samples"):
        frames_for_samples(-1, 30)


def test_tiny_config_equals_the_golden_config(golden_config):
    hf_config = AudioEncoderConfig.tiny().to_hf_config().to_dict()
    ignored = {"id2label", "output_attentions", "transformers_version"}  # label names, a forced flag, version
    differing = {key for key, value in golden_config.items()
                 if key not in ignored and hf_config.get(key) is not None and hf_config[key] != value}
    assert not differing
    assert AudioEncoderConfig().to_hf_config().hidden_size == 768


def test_config_round_trips_through_json():
    config = AudioEncoderConfig.tiny(attn_implementation="eager")
    assert AudioEncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="attn_implementation"):
        AudioEncoderConfig(attn_implementation="flash")


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_parity_with_authors_aligned_wav2vec2(golden, golden_weights, attn_implementation):
    encoder = _tiny_encoder(golden_weights, attn_implementation)
    captured = {}
    encoder.feature_extractor.register_forward_hook(lambda m, args, out: captured.update(cnn=out))
    encoder.feature_projection.register_forward_hook(
        lambda m, args, out: captured.update(interpolated=args[0], projected=out[0]))
    with torch.no_grad():
        hidden_25fps = encoder(golden["input_values"], int(golden["frame_num"]))
        assert (captured["cnn"] - golden["inter.cnn_features"]).abs().max() <= 1e-5
        assert (captured["interpolated"] - golden["inter.interpolated_features"]).abs().max() <= 1e-5
        assert (captured["projected"] - golden["inter.projected_features"]).abs().max() <= 1e-5
        hidden_30fps = encoder(golden["input_values"], frames_for_samples(32000, 30, rule="authors"))
    assert hidden_25fps.shape == (1, 50, 32) and hidden_30fps.shape == (1, 59, 32)
    assert (hidden_25fps - golden["last_hidden_state"]).abs().max() <= 1e-5
    assert (hidden_30fps - golden["last_hidden_state_fps30"]).abs().max() <= 1e-5


def test_legacy_weight_norm_keys_are_remapped(golden, golden_weights):
    legacy = {key.replace("parametrizations.weight.original0", "weight_g")
                 .replace("parametrizations.weight.original1", "weight_v"): value
              for key, value in golden_weights.items()}
    assert POS_CONV + "weight_g" in legacy and POS_CONV + "weight_v" in legacy
    remapped = remap_legacy_weight_norm({"audio_encoder." + key: value for key, value in legacy.items()})
    assert list(remapped) == ["audio_encoder." + key for key in golden_weights]
    encoder = _tiny_encoder({key[len("audio_encoder."):]: value for key, value in remapped.items()})
    with torch.no_grad():
        hidden = encoder(golden["input_values"], 50)
    assert (hidden - golden["last_hidden_state"]).abs().max() <= 1e-5


def test_state_dict_keys_are_plain_wav2vec2_keys(golden_weights):
    encoder = AudioEncoder(AudioEncoderConfig.tiny())
    assert sorted(encoder.state_dict()) == sorted(golden_weights)
    assert list(encoder.state_dict())[:2] == ["masked_spec_embed", "feature_extractor.conv_layers.0.conv.weight"]


def test_bad_inputs_raise_value_error():
    encoder = AudioEncoder(AudioEncoderConfig.tiny()).eval()
    with pytest.raises(ValueError, match="input_values"):
        encoder(torch.zeros(16000), 10)
    with pytest.raises(ValueError, match="at least 400 samples"):
        encoder(torch.zeros(1, 399), 1)
    with pytest.raises(ValueError, match="num_frames"):
        encoder(torch.zeros(1, 16000), 0)
