import numpy as np
import pytest
import torch

from moda_core import Subject, TalkingRepr
from moda_core.landmarks import connection_groups, mouth_indices
from moda_core.metrics import lip_contour, lmd, lmd_v, mouth_area_iou


def mouth_points(frames=6, seed=0, width=48.0, height=12.0) -> np.ndarray:
    """[T, 40, 3]: the outer lip loop on the boundary of a width x height rectangle, the inner loop inside it."""
    rng = np.random.default_rng(seed)
    pts = np.zeros((40, 3))
    outer = lip_contour("outer")
    perimeter = 2 * (width + height)
    for k, idx in enumerate(outer):                    # uniform arc length, corners land on samples
        s = k * perimeter / len(outer)
        if s <= width:
            xy = (s, 0.0)
        elif s <= width + height:
            xy = (width, s - width)
        elif s <= 2 * width + height:
            xy = (width - (s - width - height), height)
        else:
            xy = (0.0, height - (s - 2 * width - height))
        pts[idx, :2] = xy
    inner = lip_contour("inner")
    angles = np.linspace(0, 2 * np.pi, len(inner), endpoint=False)
    pts[inner, 0] = width / 2 + 0.35 * width * np.cos(angles)
    pts[inner, 1] = height / 2 + 0.3 * height * np.sin(angles)
    pts[:, :2] += (232.0, 330.0)
    pts[:, 2] = 120.0 + rng.normal(size=40)
    return np.repeat(pts[None], frames, axis=0) + rng.normal(scale=0.01, size=(frames, 40, 3))


def make_r(mouth, fps=25.0, is_offset=False):
    mouth = torch.as_tensor(mouth, dtype=torch.float32)
    if mouth.ndim == 3:
        mouth = mouth[None]
    s, t = mouth.shape[:2]
    return TalkingRepr(mouth=mouth, eyes=torch.zeros(s, t, 60, 3), head_pose=torch.zeros(s, t, 7),
                       torso=torch.zeros(s, t, 18, 3), fps=fps, is_offset=is_offset)


def test_lip_contours_are_the_two_loops_of_the_lips_group():
    edges = {tuple(sorted(e)) for e in connection_groups()["lips"].tolist()}
    for name in ("outer", "inner"):
        mesh = lip_contour(name, 478)
        assert len(mesh) == 20 and len(set(mesh.tolist())) == 20
        for a, b in zip(mesh, np.roll(mesh, -1)):
            assert tuple(sorted((int(a), int(b)))) in edges
        assert (mouth_indices()[lip_contour(name)] == mesh).all()
    assert 61 in lip_contour("outer", 478) and 78 in lip_contour("inner", 478)


def test_identical_sequences():
    m = mouth_points()
    assert lmd(m, m) == 0.0
    assert lmd_v(m, m) == 0.0
    assert mouth_area_iou(m, m) == 1.0
    assert mouth_area_iou(m, m, contour="inner") == 1.0


@pytest.mark.parametrize("d", [0.5, 3.0, 10.0])
def test_rigid_shift_gives_lmd_d_and_zero_velocity_error(d):
    m = mouth_points()
    direction = np.array([0.6, -0.8, 0.0])
    shifted = m + d * direction
    assert lmd(shifted, m) == pytest.approx(d, rel=1e-9)
    assert lmd_v(shifted, m) == pytest.approx(0.0, abs=1e-9)
    assert lmd(m + [0.0, 0.0, d], m) == pytest.approx(0.0)          # z ignored by default
    assert lmd(m + [0.0, 0.0, d], m, dims=3) == pytest.approx(d)


def test_constant_velocity_against_static():
    frames, v = 9, np.array([1.5, 2.0, 0.0])                        # |v| = 2.5 px/frame
    static = mouth_points(frames)
    static[:] = static[0]
    moving = static + np.arange(frames)[:, None, None] * v
    assert lmd_v(moving, static) == pytest.approx(2.5)
    assert lmd(moving, static) == pytest.approx(2.5 * (frames - 1) / 2)


def test_mouth_area_known_overlap_and_disjoint():
    m = mouth_points(frames=3)
    assert mouth_area_iou(m + [24.0, 0.0, 0.0], m) == pytest.approx(1 / 3, abs=0.02)   # 48x12 box, half shift
    assert mouth_area_iou(m + [100.0, 0.0, 0.0], m) == 0.0
    assert mouth_area_iou(m + [0.0, 50.0, 0.0], m, contour="inner") == 0.0
    per_frame = mouth_area_iou(m + [100.0, 0.0, 0.0], m, per_frame=True)
    assert per_frame.shape == (1, 3) and (per_frame == 0).all()


def test_mouth_area_accepts_full_face_arrays():
    m = mouth_points(frames=2)
    face = np.zeros((2, 478, 3))
    face[:, mouth_indices()] = m
    shifted = face.copy()
    shifted[:, mouth_indices()] += [24.0, 0.0, 0.0]
    assert mouth_area_iou(shifted, face) == pytest.approx(1 / 3, abs=0.02)


def test_repr_inputs_torch_and_sample_broadcast():
    m = mouth_points()
    gen = make_r(np.stack([m + [3.0, 4.0, 0.0], m]))                  # 2 samples: shifted by 5, identical
    ref = make_r(m)
    assert lmd(gen, ref) == pytest.approx(2.5, rel=1e-5)
    assert lmd(torch.as_tensor(m), torch.as_tensor(m)) == 0.0
    assert mouth_area_iou(gen.select_samples(1), ref) == 1.0


def test_offsets_need_the_subject():
    template = torch.rand(478, 3) * 100 + 200
    subject = Subject(reference_image=torch.zeros(512, 512, 3, dtype=torch.uint8), template=template,
                      mean_head_pose=torch.tensor([0.0, 0, 0, 256, 256, 0, 1]), mean_torso=torch.zeros(18, 3))
    m = mouth_points()
    offsets = make_r(m - template[mouth_indices()].numpy(), is_offset=True)
    with pytest.raises(ValueError, match="subject"):
        lmd(offsets, make_r(m))
    assert lmd(offsets, make_r(m), subject=subject) == pytest.approx(0.0, abs=1e-4)
    assert mouth_area_iou(offsets, make_r(m), subject=subject) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("gen,ref,kwargs,message", [
    (np.zeros((5, 40)), np.zeros((5, 40)), {}, "must be landmarks"),
    (np.zeros((5, 40, 4)), np.zeros((5, 40, 4)), {}, "must be landmarks"),
    (np.zeros((5, 40, 3)), np.zeros((6, 40, 3)), {}, "frames"),
    (np.zeros((5, 40, 3)), np.zeros((5, 39, 3)), {}, "points per frame"),
    (np.zeros((2, 5, 40, 3)), np.zeros((3, 5, 40, 3)), {}, "sample counts"),
    (np.zeros((5, 40, 3)), np.zeros((5, 40, 3)), {"dims": 4}, "dims"),
    (np.zeros((5, 40, 2)), np.zeros((5, 40, 2)), {"dims": 3}, "dims=3"),
    (np.full((5, 40, 3), np.nan), np.zeros((5, 40, 3)), {}, "NaN"),
    (np.array([["a"]]), np.zeros((5, 40, 3)), {}, "numbers"),
])
def test_bad_inputs_raise(gen, ref, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lmd(gen, ref, **kwargs)


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 2 frames"):
        lmd_v(np.zeros((1, 40, 3)), np.zeros((1, 40, 3)))
    with pytest.raises(ValueError, match="40 mouth points"):
        mouth_area_iou(np.zeros((2, 30, 3)), np.zeros((2, 30, 3)))
    with pytest.raises(ValueError, match="contour"):
        mouth_area_iou(mouth_points(), mouth_points(), contour="middle")
    with pytest.raises(ValueError, match="fps"):
        lmd(make_r(mouth_points(), fps=25), make_r(mouth_points(), fps=30))
