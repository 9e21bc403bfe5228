"""Synthetic but realistic R for the editing tests (real Cathy template), and checks of that data itself."""
import numpy as np
import pytest
import torch
from safetensors import safe_open

from moda_core import Subject, TalkingRepr
from moda_core.editing import blink_rate, detect_blinks, eye_openness, mouth_openness
from moda_core.landmarks import eye_indices, mouth_indices

FPS = 30.0
RIGHT_UPPER, RIGHT_LOWER = (246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155)
LEFT_UPPER, LEFT_LOWER = (466, 388, 387, 386, 385, 384, 398), (249, 390, 373, 374, 380, 381, 382)


@pytest.fixture(scope="session")
def template(parity_dir) -> torch.Tensor:
    with safe_open(str(parity_dir / "moda_net.safetensors"), framework="pt") as handle:
        return handle.get_tensor("templete").clone().reshape(478, 3).to(torch.float32)


@pytest.fixture(scope="session")
def subject(template) -> Subject:
    return make_subject(template)


def make_subject(template: torch.Tensor) -> Subject:
    ramp = np.linspace(40, 200, 512, dtype=np.uint8)
    image = np.stack([np.tile(ramp, (512, 1)), np.tile(ramp[:, None], (1, 512)), np.full((512, 512), 90, np.uint8)], -1)
    shoulders = torch.stack([torch.linspace(60, 200, 9), torch.linspace(480, 420, 9), torch.zeros(9)], -1)
    torso = torch.cat([shoulders, torch.stack([512 - shoulders[:, 0], shoulders[:, 1], shoulders[:, 2]], -1)])
    return Subject(reference_image=torch.from_numpy(image), template=template,
                   mean_head_pose=torch.tensor([2.0, -3.0, 1.0, 256.0, 250.0, 0.0, 1.1]),
                   mean_torso=torso, name="cathy")


def closed_mouth(template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Template lips with the lower lip raised to meet the upper one, and the unit opening direction."""
    mouth = template[torch.from_numpy(mouth_indices())].clone()
    y13, y14 = template[13, 1], template[14, 1]
    lower = mouth[:, 1] > (y13 + y14) / 2
    mouth[lower, 1] -= y14 - y13
    direction = torch.zeros_like(mouth)
    direction[lower, 1] = 1.0
    return mouth, direction


def close_lids(eyes: torch.Tensor, closure: torch.Tensor) -> torch.Tensor:
    """Blink by hand: upper-lid y moves toward the lower lid by ``closure`` [T] (written independently of
    moda_core.editing)."""
    position = {int(i): p for p, i in enumerate(eye_indices())}
    eyes = eyes.clone()
    for uppers, lowers in ((RIGHT_UPPER, RIGHT_LOWER), (LEFT_UPPER, LEFT_LOWER)):
        for u, l in zip(uppers, lowers):
            pu, pl = position[u], position[l]
            eyes[:, pu, 1] += closure * (eyes[:, pl, 1] - eyes[:, pu, 1])
    return eyes


def make_talking(template: torch.Tensor, seconds: float = 10.0, fps: float = FPS, blinks_at=(), samples: int = 1,
                 face: bool = False, seed: int = 0) -> TalkingRepr:
    """Absolute R: lips talking in bursts with silences (openness exactly 0), still eyes with triangular blinks
    at ``blinks_at`` seconds, swaying head and shoulders."""
    g = torch.Generator().manual_seed(seed)
    frames = int(round(seconds * fps))
    t = torch.arange(frames) / fps
    closed, direction = closed_mouth(template)
    talking = (torch.sin(2 * torch.pi * t / 4.0) > -0.3).float()                 # silences between bursts
    opening = 12.0 * talking * torch.sin(2 * torch.pi * 3.1 * t).abs()
    mouth = closed + opening[:, None, None] * direction
    eyes = template[torch.from_numpy(eye_indices())].expand(frames, -1, -1) + 0.02 * torch.randn(frames, 60, 3,
                                                                                                  generator=g)
    closure = torch.zeros(frames)
    for when in blinks_at:
        closure = torch.maximum(closure, (1 - (t - when).abs() * fps / 4).clamp(0, 1))
    eyes = close_lids(eyes, closure)
    pose = torch.tensor([2.0, -3.0, 1.0, 256.0, 250.0, 0.0, 1.1]) + torch.stack(
        [amp * torch.sin(2 * torch.pi * t / period + phase) for amp, period, phase in
         [(6, 5.0, 0), (4, 3.3, 1), (2, 7.1, 2), (5, 4.2, 0.5), (3, 6.3, 1.5), (2, 2.9, 2.5), (0.02, 8.0, 3)]], -1)
    torso = make_subject(template).mean_torso + 2.0 * torch.sin(2 * torch.pi * t / 3.7)[:, None, None]
    tracks = dict(mouth=mouth, eyes=eyes, head_pose=pose, torso=torso)
    if face:
        base = template.expand(frames, -1, -1).clone()
        base[:, torch.from_numpy(mouth_indices())] = mouth
        base[:, torch.from_numpy(eye_indices())] = eyes
        tracks["face"] = base
    r = TalkingRepr(**tracks, fps=fps, is_offset=False, subject="cathy")
    return TalkingRepr.stack_samples([r] * samples) if samples > 1 else r


def test_synthetic_data_is_plausible(template, subject):
    r = make_talking(template, seconds=20, blinks_at=(2.0, 7.5, 13.0))
    openness = eye_openness(r)
    assert 0.2 < float(openness.median()) < 0.3                                 # Cathy's eyes: ~0.25
    assert detect_blinks(r) == [[(59, 62), (224, 227), (389, 392)]]
    assert blink_rate(r) == [pytest.approx(9.0)]
    mouth = mouth_openness(r)
    assert float(mouth.min()) == pytest.approx(0.0, abs=1e-4) and float(mouth.max()) > 10
    offsets = r.to_offsets(subject)
    assert torch.allclose(eye_openness(offsets, subject), openness, atol=1e-5)
    with pytest.raises(ValueError, match="needs the subject"):
        eye_openness(offsets)
