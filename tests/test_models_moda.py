"""MODANet: checkpoint layout, parity with the authors' network, noise handling, and long-audio windowing."""
from __future__ import annotations

import json
import pytest
from parity_helpers import load_golden
import torch
from safetensors import safe_open

from moda_core.models.audio_encoder import frames_for_samples, normalise_waveform
from moda_core.models.moda import MODAConfig, MODANet, blend_overlap, generate_motion, motion_windows

WEIGHT_PREFIX = "weights."
TAILS = ("lip", "eye", "head", "torso")
SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def golden(parity_dir) -> dict[str, torch.Tensor]:
    # Clone: safetensors hands out arbitrarily aligned memory, which changes CPU kernel results (README §3).
    return load_golden(parity_dir, "moda_net.safetensors")


@pytest.fixture(scope="module")
def golden_net(golden) -> MODANet:
    net = MODANet(MODAConfig(audio_encoder=None)).eval()
    weights = {key[len(WEIGHT_PREFIX):]: value for key, value in golden.items() if key.startswith(WEIGHT_PREFIX)}
    net.load_state_dict(weights, strict=True)
    return net


@pytest.fixture(scope="module")
def tiny_net() -> MODANet:
    torch.manual_seed(0)
    return MODANet(MODAConfig.tiny()).eval()


@pytest.fixture(scope="module")
def speech_25s() -> tuple[torch.Tensor, torch.Tensor]:
    """25 s of normalised noise 'audio' and a random subject template."""
    generator = torch.Generator().manual_seed(7)
    audio = normalise_waveform(torch.randn(25 * SAMPLE_RATE, generator=generator))
    return audio, torch.randn(1434, generator=generator)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_default_state_dict_matches_official_layout(reference_dir):
    official = json.loads((reference_dir / "official_state_dict_shapes.json").read_text())
    net = MODANet()
    state = net.state_dict()
    assert list(state) == list(official["MODA"])  # 449 keys, same order
    for key, tensor in state.items():
        assert list(tensor.shape) == official["MODA"][key]["shape"], key
        assert str(tensor.dtype).removeprefix("torch.") == official["MODA"][key]["dtype"], key
    num_params = sum(p.numel() for p in net.parameters())
    assert abs(num_params - 96.72e6) < 0.01e6
    assert num_params == official["_notes"]["counts"]["MODA"]["total_params"]


def test_without_audio_encoder_layout_matches_stored_key_order(parity_dir, golden_net):
    with safe_open(parity_dir / "moda_net.safetensors", "pt") as file:
        order = json.loads(file.metadata()["full_state_dict_key_order"])
    assert list(golden_net.state_dict()) == [key for key in order if not key.startswith("audio_encoder.")]
    with pytest.raises(RuntimeError, match="audio encoder"):
        golden_net.encode_audio(torch.zeros(1, 16000), 30)


def test_buffers_equal_the_authors(golden):
    fresh = MODANet(MODAConfig(audio_encoder=None)).state_dict()
    for key in ("temporal_body.short_layer.biased_mask", "temporal_body.short_layer.memory_mask",
                "temporal_body.short_layer.ppe.pe", "temporal_body.long_layer.embedding.pe"):
        assert torch.equal(fresh[key], golden[WEIGHT_PREFIX + key]), key


def test_parity_batch_1(golden, golden_net):
    captured = {}
    body = golden_net.temporal_body
    hooks = [golden_net.audio_encoder_head.register_forward_hook(lambda m, a, out: captured.update(audio=out)),
             golden_net.subject_encoder_head.register_forward_hook(lambda m, a, out: captured.update(style=out)),
             body.long_layer.encoder.register_forward_hook(lambda m, a, out: captured.update(encoded=out)),
             body.long_layer.decode_latent.register_forward_hook(lambda m, a, out: captured.update(memory=out)),
             body.long_layer.decoder.register_forward_hook(lambda m, a, out: captured.update(decoded=out))]
    with torch.no_grad():
        output = golden_net(golden["audio_features"], golden["sub_info"], noise=golden["noise.0"])
    for hook in hooks:
        hook.remove()
    for name in (*TAILS, "mu", "logvar"):
        assert _max_diff(getattr(output, name), golden[name]) <= 5e-4, name
    assert _max_diff(output.temporal_feature, golden["temporal_feature"]) <= 5e-4
    assert _max_diff(output.temporal_feature[..., :128], golden["short_branch_out"]) <= 5e-4
    assert _max_diff(output.temporal_feature[..., 128:], golden["long_branch_out"]) <= 5e-4
    for name, key in [("audio", "inter.audio_head_out"), ("style", "inter.subject_style"),
                      ("encoded", "inter.long.encoder_out"), ("memory", "inter.long.latent_memory"),
                      ("decoded", "inter.long.decoder_out")]:
        assert _max_diff(captured[name], golden[key]) <= 5e-4, key


def test_parity_batch_2(golden, golden_net):
    with torch.no_grad():
        output = golden_net(golden["b2.audio_features"], golden["b2.sub_info"], noise=golden["b2.noise.0"])
    for name in (*TAILS, "mu", "logvar"):
        assert _max_diff(getattr(output, name), golden["b2." + name]) <= 5e-4, name


def test_noise_only_changes_the_long_branch(tiny_net):
    audio, subject = torch.randn(1, 40, 32), torch.randn(1, 1434)
    with torch.no_grad():
        first = tiny_net(audio, subject, generator=torch.Generator().manual_seed(1))
        second = tiny_net(audio, subject, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first.temporal_feature[..., :32], second.temporal_feature[..., :32])
    assert not torch.allclose(first.temporal_feature[..., 32:], second.temporal_feature[..., 32:])
    assert not torch.allclose(first.head, second.head)


def test_generator_and_explicit_noise_agree(tiny_net):
    audio, subject = torch.randn(2, 40, 32), torch.randn(2, 1434)
    noise = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        drawn = tiny_net(audio, subject, generator=torch.Generator().manual_seed(5))
        given = tiny_net(audio, subject, noise=noise)
    for name in (*TAILS, "mu", "logvar"):
        assert torch.equal(getattr(drawn, name), getattr(given, name)), name


def test_forward_rejects_bad_inputs(tiny_net):
    subject = torch.zeros(1, 1434)
    with pytest.raises(ValueError, match="audio_features"):
        tiny_net(torch.zeros(1, 601, 32), subject)
    with pytest.raises(ValueError, match="audio_features"):
        tiny_net(torch.zeros(1, 10, 768), subject)
    with pytest.raises(ValueError, match="subject"):
        tiny_net(torch.zeros(1, 10, 32), torch.zeros(1434))
    with pytest.raises(ValueError, match="noise"):
        tiny_net(torch.zeros(1, 10, 32), subject, noise=torch.zeros(1, 10, 16))


def test_config_round_trips_through_json():
    for config in (MODAConfig(), MODAConfig.tiny(), MODAConfig(audio_encoder=None)):
        assert MODAConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="audio_feat_dim"):
        MODAConfig(audio_feat_dim=512)


def _run_window(net: MODANet, chunk: torch.Tensor, subject: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One window through the whole net, as [frames, 361] (lip, eye, head, torso)."""
    with torch.no_grad():
        output = net(net.encode_audio(chunk.unsqueeze(0), noise.shape[1]), subject.unsqueeze(0), noise=noise)
    return torch.cat([getattr(output, name) for name in TAILS], dim=-1)[0]


def _fixed_noise(frames_per_window: list[int]):
    """A noise_fn returning seeded noise per window, recording the frame count of each window."""
    def noise_fn(window_index: int, frames: int) -> torch.Tensor:
        frames_per_window.append(frames)
        return torch.randn(1, frames, 32, generator=torch.Generator().manual_seed(100 + window_index))
    return noise_fn


def test_one_window_equals_a_direct_forward(tiny_net, speech_25s):
    audio, subject = speech_25s
    samples = 183296  # 11.456 s -> 343 frames at 30 fps
    frames: list[int] = []
    motion = generate_motion(tiny_net, audio[:samples], subject, noise_fn=_fixed_noise(frames))
    assert frames == [343] and motion.lip.shape == (343, 120) and motion.torso.shape == (343, 54)
    expected = _run_window(tiny_net, audio[:samples], subject, _fixed_noise([])(0, 343))
    assert torch.equal(torch.cat(motion, dim=-1), expected)


@pytest.mark.parametrize("blend", ["average", "crossfade"])
@pytest.mark.parametrize("frame_count", ["exact", "authors"])
def test_two_windows_merge_like_the_authors(tiny_net, speech_25s, blend, frame_count):
    audio, subject = speech_25s
    frames: list[int] = []
    motion = torch.cat(generate_motion(tiny_net, audio, subject, blend=blend, frame_count=frame_count,
                                       noise_fn=_fixed_noise(frames)), dim=-1)
    # Windows [0 s, 20 s) and [10 s, 25 s). The second window's 240000 samples are 450 frames exactly, 449 by
    # the authors' float64 count, so their merge gives 300 + 449 = 749 frames where the exact count is 750.
    last = 450 if frame_count == "exact" else 449
    assert frames == [600, last]
    assert motion.shape == (300 + last, 361)
    first = _run_window(tiny_net, audio[:320000], subject, _fixed_noise([])(0, 600))
    second = _run_window(tiny_net, audio[160000:], subject, _fixed_noise([])(1, last))
    overlap = blend_overlap(first[300:], second[:300], blend)
    assert torch.allclose(motion[:300], first[:300], atol=1e-6)
    assert torch.allclose(motion[300:600], overlap, atol=1e-6)
    assert torch.allclose(motion[600:], second[300:], atol=1e-6)
    if blend == "average":
        assert torch.allclose(overlap, (first[300:] + second[:300]) / 2)


@pytest.mark.parametrize("seconds, exact, authors", [(8.0, [240], [239]), (20.0, [600], [600, 300]),
                                                     (28.0, [600, 540], [600, 540]), (30.0, [600, 600],
                                                                                      [600, 600, 300])])
def test_window_plans(seconds, exact, authors):
    samples = round(seconds * SAMPLE_RATE)
    exact_windows, exact_total = motion_windows(samples, 30, frame_count="exact")
    authors_windows, authors_total = motion_windows(samples, 30, frame_count="authors")
    assert [w.frames for w in exact_windows] == exact and [w.frames for w in authors_windows] == authors
    assert exact_total == frames_for_samples(samples, 30) == round(seconds * 30)
    # The authors' merge: each window after the first overlaps the last first_window // 2 frames.
    assert authors_total == authors[0] + sum(f - authors[0] // 2 for f in authors[1:])
    assert [w.start_sample for w in authors_windows] == [k * 160000 for k in range(len(authors))]
    assert [w.start_frame for w in exact_windows] == [k * 300 for k in range(len(exact))]
    with pytest.raises(ValueError, match="frame_count"):
        motion_windows(samples, 30, frame_count="round")


def test_crossfade_ramps_linearly():
    earlier, later = torch.zeros(9, 2), torch.ones(9, 2)
    ramp = blend_overlap(earlier, later, "crossfade")[:, 0]
    assert torch.allclose(ramp, torch.arange(1, 10) / 10)
    assert torch.allclose(blend_overlap(earlier, later, "average"), torch.full((9, 2), 0.5))
    # No jump at either end of the overlap: each step is 1/(M+1) of the gap between the windows.
    steps = torch.diff(torch.cat([earlier[:1, 0], ramp, later[:1, 0]]))
    assert torch.allclose(steps, torch.full((10,), 0.1))


def test_seeds_control_the_motion(tiny_net, speech_25s):
    audio, subject = speech_25s
    first = generate_motion(tiny_net, audio, subject, generator=torch.Generator().manual_seed(1))
    again = generate_motion(tiny_net, audio, subject, generator=torch.Generator().manual_seed(1))
    other = generate_motion(tiny_net, audio, subject, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.allclose(first.head, other.head)


def test_generate_motion_rejects_bad_arguments(tiny_net, speech_25s):
    audio, subject = speech_25s
    with pytest.raises(ValueError, match="blend"):
        generate_motion(tiny_net, audio, subject, blend="max")
    with pytest.raises(ValueError, match="input_values"):
        generate_motion(tiny_net, audio.unsqueeze(0), subject)
    with pytest.raises(ValueError, match="subject"):
        generate_motion(tiny_net, audio, subject[:-3])
    with pytest.raises(ValueError, match="window_seconds"):
        generate_motion(tiny_net, audio, subject, fps=60)
    with pytest.raises(ValueError, match="hop_seconds"):
        generate_motion(tiny_net, audio, subject, hop_seconds=30)
    tiny_net.train()
    try:
        with pytest.raises(ValueError, match="eval mode"):
            generate_motion(tiny_net, audio, subject)
    finally:
        tiny_net.eval()
