"""NIQE (moda_core.metrics.niqe_model) on the shared portraits, against a reference implementation's figures.

Reference figures, measured in the session that added NIQE (basicsr 1.4.2 from its PyPI sdist, run in a
throwaway venv; basicsr reproduces the authors' MATLAB release to 4 decimals on its test image):
``basicsr.metrics.niqe.calculate_niqe(bgr_uint8, 0, convert_to="y")`` (float32 pipeline) and
``basicsr.metrics.niqe.niqe(luma_float64, ...)`` (its core on the same rounded luma as ours, float64; basicsr's
``imresize`` still works in float32, which moves NIQE by up to 0.005 on these images).
"""
import hashlib

import cv2
import numpy as np
import pytest

from moda_core.metrics import evaluate, niqe
from moda_core.metrics.niqe_model import PRISTINE_PARAMS, imresize_half, niqe_score, pristine_model

# portrait: (basicsr calculate_niqe, basicsr core on float64 luma)
BASICSR_1_4_2 = {"sadtalker_woman.png": (4.179501, 4.170163), "hallo_woman.jpg": (3.879953, 3.888379)}
PRISTINE_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"


def portrait(data_dir, name):
    return cv2.imread(str(data_dir / "portraits" / name), cv2.IMREAD_COLOR)[..., ::-1] / 255.0


def test_pristine_model_is_the_vendored_file():
    assert hashlib.sha256(PRISTINE_PARAMS.read_bytes()).hexdigest() == PRISTINE_SHA256
    mean, cov, window = pristine_model()
    assert mean.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert np.allclose(cov, cov.T) and window.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(BASICSR_1_4_2))
def test_matches_basicsr_on_the_shared_portraits(data_dir, name):
    ours = niqe_score(portrait(data_dir, name))
    published_api, float64_core = BASICSR_1_4_2[name]
    assert ours == pytest.approx(float64_core, abs=0.005)
    assert ours == pytest.approx(published_api, abs=0.02)


def test_blur_and_noise_score_worse_than_the_clean_photo(data_dir):
    clean = portrait(data_dir, "sadtalker_woman.png")
    blurred = cv2.GaussianBlur(clean, (0, 0), 3)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1)
    scores = [niqe_score(image) for image in (clean, blurred, noisy)]
    assert scores[1] > scores[0] + 3 and scores[2] > scores[0] + 3
    assert niqe_score(clean, "gray") == pytest.approx(scores[0], abs=0.3)     # grey and luma agree closely


def test_half_size_resampling_keeps_constants_and_means():
    flat = np.full((96, 100), 0.25)
    assert imresize_half(flat).shape == (48, 50) and np.allclose(imresize_half(flat), 0.25)
    ramp = np.add.outer(np.arange(96.0), np.zeros(96))
    half = imresize_half(ramp)
    assert np.allclose(half[10:-10, 0], 2 * np.arange(10, 38) + 0.5)    # output pixel i covers inputs 2i, 2i+1


def test_flat_images_and_video_rows(data_dir):
    with pytest.raises(ValueError, match="flat"):
        niqe_score(np.full((96, 192, 3), 0.5))
    frame = (portrait(data_dir, "sadtalker_woman.png")[96:288, 96:384] * 255).astype(np.uint8)    # 2x3 blocks
    video = np.stack([frame, frame[:, ::-1], frame])
    result = niqe(video, max_frames=2)                  # frames 0 and 2, the same picture
    assert result.ok and result.details == {"frames": 2, "of_frames": 3, "channel": "y"}
    assert result.value == pytest.approx(niqe_score(frame / 255.0), abs=1e-12)
    row = evaluate(generated_frames=video[:1])["NIQE"]
    assert row.ok and row.higher_is_better is False and row.value == result.value
