"""Head pose convention: frontal reference, known rotations, signs on real photos, framing invariance."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from moda_core.geometry import euler_to_matrix, matrix_to_euler
from moda_core.landmarks import eye_contour_indices
from moda_core.preprocess import (FACE_LANDMARKER, MODEL_URLS, FaceLandmarks, PreprocessError, canonicalise,
                                  frontal_rotation, head_pose, load_frontal_reference, model_path,
                                  reprojection_error, to_image_space)


@pytest.fixture(scope="module")
def models_dir(data_dir):
    return data_dir / "models"


@pytest.fixture(scope="module")
def reference(models_dir):
    return load_frontal_reference(models_dir / FACE_LANDMARKER)


@pytest.fixture(scope="module")
def landmarker(models_dir):
    with FaceLandmarks(models_dir) as detector:
        yield detector


def _pose_of(landmarker, reference, rgb):
    return head_pose(to_image_space(landmarker.detect(np.ascontiguousarray(rgb))[0]), reference)


def test_frontal_reference_axes(reference):
    points = reference.points
    assert points.shape == (468, 3) and len(reference.indices) == len(reference.weights) == 33
    assert points[4, 2] > points[234, 2] + 3          # nose tip toward the camera (+z)
    assert points[152, 1] > points[10, 1]             # chin below forehead (y down)
    assert points[263, 0] > 0 > points[33, 0]         # subject's left eye on image right
    assert np.allclose(points[263] * (-1, 1, 1), points[33])


def test_head_pose_recovers_a_known_rotation(reference):
    frontal = np.concatenate([reference.points, np.repeat(reference.points[[468 - 1]], 10, 0)])
    angles = np.array([20.0, -12.0, 7.0])
    rotation = euler_to_matrix(torch.tensor(angles)).numpy()
    image = 14.0 * frontal @ rotation + (300.0, 260.0, 5.0)          # row form of R^T p: rotate the face away
    pose = head_pose(image, reference)
    assert np.allclose(pose[:3], angles, atol=1e-6)
    left, right = eye_contour_indices()
    expected_scale = 120.0 / (14.0 * (frontal[left, 0].mean() - frontal[right, 0].mean()))
    assert pose[6] == pytest.approx(expected_scale, rel=1e-9)
    assert reprojection_error(canonicalise(image, pose), pose, image) < 1e-9


def test_frontal_frame_agrees_with_the_authors_template(reference, parity_dir):
    """The authors' canonical template (3DDFA-frontalised) is frontal in MediaPipe's model frame too."""
    with safe_open(str(parity_dir / "moda_net.safetensors"), "pt") as handle:
        template = handle.get_tensor("templete").numpy()
    angles = matrix_to_euler(torch.from_numpy(frontal_rotation(template, reference))).numpy()
    assert np.abs(angles).max() < 2.0


def test_pose_signs_on_a_photo(landmarker, reference, data_dir):
    rgb = np.asarray(Image.open(data_dir / "portraits/obama.jpg").convert("RGB"))
    base = _pose_of(landmarker, reference, rgb)
    assert np.abs(base[:3]).max() < 5                                   # frontal portrait
    h, w = rgb.shape[:2]
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((w / 2, h / 2), 10, 1.0), (w, h),
                            borderMode=cv2.BORDER_REPLICATE)            # +10 deg = counter-clockwise on screen
    assert _pose_of(landmarker, reference, turned)[2] - base[2] == pytest.approx(10, abs=1.5)
    mirrored = _pose_of(landmarker, reference, rgb[:, ::-1])
    assert mirrored[0] == pytest.approx(-base[0], abs=1.5)             # yaw flips
    assert mirrored[2] == pytest.approx(-base[2], abs=1.5)             # roll flips
    assert mirrored[1] == pytest.approx(base[1], abs=1.5)              # pitch stays


def test_pose_does_not_depend_on_where_the_face_is(landmarker, reference, data_dir):
    rgb = np.asarray(Image.open(data_dir / "portraits/macron.png").convert("RGB"))
    top = _pose_of(landmarker, reference, np.pad(rgb, ((0, 900), (300, 300), (0, 0)), mode="edge"))
    bottom = _pose_of(landmarker, reference, np.pad(rgb, ((900, 0), (300, 300), (0, 0)), mode="edge"))
    assert np.abs(top[:3] - bottom[:3]).max() < 1.5


def test_missing_model_file_message(tmp_path, monkeypatch):
    with pytest.raises(PreprocessError) as err:
        model_path(FACE_LANDMARKER, tmp_path)
    message = str(err.value)
    assert FACE_LANDMARKER in message and str(tmp_path) in message and MODEL_URLS[FACE_LANDMARKER] in message
    monkeypatch.setenv("MODA_MODELS_DIR", str(tmp_path / "env"))
    with pytest.raises(PreprocessError, match="MODA_MODELS_DIR"):
        model_path(FACE_LANDMARKER)


def test_models_folder_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv("MODA_MODELS_DIR", str(data_dir / "models"))
    assert model_path(FACE_LANDMARKER) == data_dir / "models" / FACE_LANDMARKER
