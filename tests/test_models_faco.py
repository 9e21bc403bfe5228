"""FaCo-Net and its discriminator: key layout and parity with the authors' network (golden vectors)."""
from __future__ import annotations


import pytest
from parity_helpers import load_golden, official_layout, state_dict_layout, with_prefix
import torch

from moda_core.models.faco import FaCoConfig, FaCoNet, PointDiscriminator

PARITY_TOL = 1e-5   # parity/README.md §3




@pytest.fixture(scope="module")
def golden(parity_dir):
    return load_golden(parity_dir, "faco_net.safetensors")




def test_generator_layout_matches_authors(reference_dir):
    net = FaCoNet()
    assert state_dict_layout(net) == official_layout(reference_dir, "FaCo")
    assert sum(p.numel() for p in net.parameters()) == 1_900_442


def test_discriminator_layout_matches_authors(reference_dir):
    net = PointDiscriminator()
    assert state_dict_layout(net) == official_layout(reference_dir, "FaCo_D")
    assert sum(p.numel() for p in net.parameters()) == 792_705


@torch.no_grad()
def test_generator_parity(golden):
    net = FaCoNet().eval()
    net.load_state_dict(with_prefix(golden, "weights."), strict=True)
    output = net(golden["lip"], golden["eye"], golden["sub_info"])
    assert output.shape == (1, 100, 1434)
    diff = (output - golden["output"]).abs().max().item()
    assert diff <= PARITY_TOL, f"FaCoNet output max abs diff {diff:.3g}"


@torch.no_grad()
def test_discriminator_parity(golden):
    net = PointDiscriminator().eval()
    net.load_state_dict(with_prefix(golden, "disc_weights."), strict=True)
    score = net(golden["lip"], golden["eye"], golden["output"], golden["sub_info"])
    assert score.shape == (1, 100, 1)
    diff = (score - golden["disc.output"]).abs().max().item()
    assert diff <= PARITY_TOL, f"PointDiscriminator output max abs diff {diff:.3g}"


def test_batched_forward_matches_per_sample():
    torch.manual_seed(0)
    cfg = FaCoConfig.tiny()
    gen, disc = FaCoNet(cfg).eval(), PointDiscriminator(cfg).eval()
    lip, eye = torch.randn(2, 5, cfg.lip_dim), torch.randn(2, 5, cfg.eye_dim)
    subject = torch.randn(2, cfg.vertex_dim)
    with torch.no_grad():
        out = gen(lip, eye, subject)
        score = disc(lip, eye, out, subject)
        assert out.shape == (2, 5, cfg.vertex_dim) and score.shape == (2, 5, 1)
        for b in range(2):
            torch.testing.assert_close(gen(lip[b:b + 1], eye[b:b + 1], subject[b:b + 1]), out[b:b + 1])
            torch.testing.assert_close(disc(lip[b:b + 1], eye[b:b + 1], out[b:b + 1], subject[b:b + 1]),
                                       score[b:b + 1])


def test_bad_inputs_raise():
    cfg = FaCoConfig.tiny()
    gen = FaCoNet(cfg)
    lip, eye, subject = torch.zeros(1, 3, cfg.lip_dim), torch.zeros(1, 3, cfg.eye_dim), torch.zeros(1, cfg.vertex_dim)
    with pytest.raises(ValueError, match="lip"):
        gen(torch.zeros(1, 3, cfg.lip_dim + 1), eye, subject)
    with pytest.raises(ValueError, match="subject"):
        gen(lip, eye, subject[:, None])
    with pytest.raises(ValueError, match="frame count"):
        gen(lip, eye[:, :2], subject)


def test_config_round_trip_and_validation():
    cfg = FaCoConfig.tiny()
    assert FaCoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="feature_dim"):
        FaCoConfig(feature_dim=7)
    with pytest.raises(ValueError, match="unknown"):
        FaCoConfig.from_dict({"bogus": 1})
