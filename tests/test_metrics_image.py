import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from moda_core.metrics import PSNR_CAP_DB, MetricResult, niqe, psnr, psnr_per_frame, ssim


def random_frames(t=3, h=32, w=40, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(t, h, w, 3))
    return frames.astype(dtype)


def reference_ssim(a, b):
    """Wang et al. / skimage(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) for one plane."""
    blur = lambda x: gaussian_filter(x, sigma=1.5, truncate=3.5, mode="reflect")   # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return s[5:-5, 5:-5].mean()


def test_identical_frames_hit_the_cap_and_ssim_one():
    f = random_frames()
    assert psnr(f, f) == PSNR_CAP_DB == 100.0
    assert ssim(f, f) == pytest.approx(1.0, abs=1e-12)
    assert ssim(f, f, channels="luma") == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_known_mse():
    a = np.full((2, 16, 16, 3), 0.5)
    assert psnr(a + 0.1, a) == pytest.approx(20.0)                          # MSE 0.01 on [0, 1]
    u = np.full((2, 16, 16, 3), 100, dtype=np.uint8)
    assert psnr(u + 5, u) == pytest.approx(10 * np.log10(255 ** 2 / 25))   # MSE 25 on 0..255
    assert psnr(a + 0.1, a, max_db=15.0) == 15.0
    per_frame = psnr_per_frame(np.concatenate([a[:1], a[1:] + 0.1]), a)
    assert per_frame.tolist() == pytest.approx([100.0, 20.0])


def test_mixed_dtypes_and_torch():
    f = random_frames()
    as_float = torch.from_numpy(f.astype(np.float32) / 255.0)
    assert psnr(as_float, f) == pytest.approx(PSNR_CAP_DB)
    assert ssim(as_float, torch.from_numpy(f)) == pytest.approx(1.0, abs=1e-6)
    assert psnr(f.astype(np.float64), f.astype(np.float64) + 2.55, data_range=255) == pytest.approx(40.0)
    assert psnr(f[0], f[0]) == PSNR_CAP_DB                                  # single image [H, W, C]


def test_ssim_matches_the_reference_formula():
    a = random_frames(t=2, seed=1).astype(np.float64) / 255
    b = np.clip(a + np.random.default_rng(2).normal(scale=0.1, size=a.shape), 0, 1)
    expected = np.mean([[reference_ssim(a[t, ..., c], b[t, ..., c]) for c in range(3)] for t in range(2)])
    assert ssim(b, a) == pytest.approx(expected, abs=1e-9)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    luma = lambda x: x @ np.array([0.299, 0.587, 0.114])    # noqa: E731
    expected_luma = np.mean([reference_ssim(luma(a[t]), luma(b[t])) for t in range(2)])
    assert ssim(b, a, channels="luma") == pytest.approx(expected_luma, abs=1e-9)
    assert 0 < ssim(b, a) < 1


def test_niqe_rejects_bad_batches_and_frames_too_small():
    with pytest.raises(ValueError, match="frames"):
        niqe(np.zeros((4, 8, 8, 2)))
    with pytest.raises(ValueError, match="two 96x96 blocks"):
        niqe(random_frames())
    with pytest.raises(ValueError, match="max_frames"):
        niqe(random_frames(h=96, w=192), max_frames=0)


@pytest.mark.parametrize("gen,ref,message", [
    (np.zeros((2, 16, 16, 2)), np.zeros((2, 16, 16, 2)), "must be frames"),
    (np.zeros((16, 16)), np.zeros((16, 16)), "must be frames"),
    (np.zeros((2, 16, 16, 3)), np.zeros((3, 16, 16, 3)), "differ in shape"),
    (np.zeros((2, 16, 16, 3), dtype=np.int32), np.zeros((2, 16, 16, 3), dtype=np.int32), "dtype"),
    (np.full((2, 16, 16, 3), np.nan), np.zeros((2, 16, 16, 3)), "NaN"),
    (np.zeros((0, 16, 16, 3)), np.zeros((0, 16, 16, 3)), "empty"),
])
def test_bad_frames_raise(gen, ref, message):
    with pytest.raises(ValueError, match=message):
        psnr(gen, ref)


def test_ssim_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((1, 8, 32, 3)), np.zeros((1, 8, 32, 3)))
    with pytest.raises(ValueError, match="channels"):
        ssim(random_frames(), random_frames(), channels="red")
    with pytest.raises(ValueError, match="data_range"):
        psnr(random_frames(), random_frames(), data_range=0)
