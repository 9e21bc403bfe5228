import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from moda_core import geometry as geo
from moda_core.repr import TalkingRepr
from moda_core.smoothing import SmoothingSigmas, smooth_face, smooth_motion, smooth_time


def test_euler_convention_matches_scipy_extrinsic_xyz():
    angles = torch.tensor([[10.0, -20.0, 5.0], [40.0, 30.0, -60.0], [0.0, 0.0, 90.0]], dtype=torch.float64)
    ours = geo.euler_to_matrix(angles).numpy()
    # authors: Rotation.from_euler('xyz', [pitch, yaw, roll]) with our angles ordered (yaw, pitch, roll)
    theirs = Rotation.from_euler("xyz", angles[:, [1, 0, 2]].numpy(), degrees=True).as_matrix()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(geo.matrix_to_euler(torch.from_numpy(ours)).numpy(), angles.numpy(), atol=1e-9)


def test_yaw_turns_about_the_vertical_axis():
    rot = geo.euler_to_matrix(torch.tensor([90.0, 0.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose((rot @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)).numpy(), [0, 0, -1],
                               atol=1e-12)


def test_canonical_image_round_trip_exact():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(4, 478, 3, generator=g, dtype=torch.float64) * 400 + 50
    pose = torch.cat([torch.rand(4, 3, generator=g, dtype=torch.float64) * 40 - 20,
                      torch.rand(4, 3, generator=g, dtype=torch.float64) * 100 + 200,
                      torch.rand(4, 1, generator=g, dtype=torch.float64) + 0.5], -1)
    for center in (geo.AUTHORS_INFERENCE_FACE_CENTER, geo.CANONICALISATION_FACE_CENTER):
        image = geo.canonical_to_image(points, pose, face_center=center)
        back = geo.image_to_canonical(image, pose, face_center=center)
        assert (back - points).abs().max() < 1e-5


def test_denormalisation_formula_against_authors_description():
    # p = Rinv((c - f)/s) + t with R = from_euler('xyz', [pitch, yaw, roll]), f = (256, 235, 128)
    c = np.array([[300.0, 200.0, 150.0], [256.0, 235.0, 128.0]])
    pose = np.array([5.0, -3.0, 2.0, 270.0, 250.0, 4.0, 1.2])
    rot = Rotation.from_euler("xyz", [pose[1], pose[0], pose[2]], degrees=True)
    expected = rot.inv().apply((c - [256, 235, 128]) / pose[6]) + pose[3:6]
    ours = geo.canonical_to_image(torch.from_numpy(c), torch.from_numpy(pose))
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-9)
    # the anchor lands on the translation
    np.testing.assert_allclose(ours[1].numpy(), pose[3:6], atol=1e-9)


def test_projection_and_truncation():
    pts = torch.tensor([[[10.7, 20.2, 5.0], [-0.5, 511.99, 1.0]]])
    assert geo.project_orthographic(pts).shape == (1, 2, 2)
    assert geo.truncate_to_pixels(geo.project_orthographic(pts)).tolist() == [[[10, 20], [0, 511]]]


def test_pose_shape_is_checked():
    with pytest.raises(ValueError, match="head_pose must end in 7 values"):
        geo.canonical_to_image(torch.zeros(478, 3), torch.zeros(6))


def test_canonicalisation_scale():
    left = torch.full((16,), 316.0)
    right = torch.full((16,), 196.0)
    assert geo.canonicalisation_scale(left, right).item() == pytest.approx(1.0)


def _ramp_repr(frames=60):
    g = torch.Generator().manual_seed(3)
    noise = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return TalkingRepr(mouth=noise(1, frames, 40, 3), eyes=noise(1, frames, 60, 3), head_pose=noise(1, frames, 7),
                       torso=noise(1, frames, 18, 3), face=noise(1, frames, 478, 3), fps=30)


def test_smoothing_uses_authors_sigmas_per_track():
    from scipy.ndimage import gaussian_filter1d
    r = _ramp_repr()
    s = smooth_motion(r)
    expected = gaussian_filter1d(r.mouth.numpy(), 1.5, axis=1, mode="reflect", truncate=4)
    np.testing.assert_allclose(s.mouth.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(s.head_pose[..., :3].numpy(),
                               gaussian_filter1d(r.head_pose[..., :3].numpy(), 4, axis=1), atol=1e-12)
    np.testing.assert_allclose(s.head_pose[..., 3:6].numpy(),
                               gaussian_filter1d(r.head_pose[..., 3:6].numpy(), 6, axis=1), atol=1e-12)
    assert torch.equal(s.head_pose[..., 6], r.head_pose[..., 6])          # scale untouched
    assert torch.equal(s.face, r.face)                                    # face is FaCo's, smoothed later
    assert s.torso.std() < r.torso.std()


def test_face_smoothing_touches_only_non_semantic_points():
    from moda_core.landmarks import eye_indices, mouth_indices, non_semantic_indices
    r = _ramp_repr()
    s = smooth_face(r)
    keep = np.concatenate([mouth_indices(), eye_indices(), np.arange(468, 478)])
    assert torch.equal(s.face[:, :, keep], r.face[:, :, keep])
    idx = non_semantic_indices()
    assert (s.face[:, :, idx] - r.face[:, :, idx]).abs().max() > 0.1
    with pytest.raises(ValueError, match="run FaCo-Net first"):
        smooth_face(r.replace(face=None))


def test_sigma_validation_and_zero_is_identity():
    with pytest.raises(ValueError, match="mouth"):
        SmoothingSigmas(mouth=-1)
    x = torch.randn(1, 10, 3)
    assert torch.equal(smooth_time(x, 0.0), x)
    assert SmoothingSigmas().scaled_to(25).head_rotation == pytest.approx(4 * 25 / 30)
