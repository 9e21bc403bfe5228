"""Photo -> Subject on the shared portraits and on derived inputs (RGBA, grey, non-square, small, EXIF...)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from moda_core.geometry import CANONICALISATION_FACE_CENTER, canonical_to_image
from moda_core.preprocess import (FaceLandmarks, PersonSegmenter, PreprocessError, subject_from_photo,
                                  to_image_space)
from moda_core.subject import Subject

PORTRAITS = ["obama.jpg", "macron.png", "hallo_woman.jpg", "sadtalker_woman.png"]


@pytest.fixture(scope="module")
def models_dir(data_dir):
    return data_dir / "models"


@pytest.fixture(scope="module")
def macron(data_dir):
    return Image.open(data_dir / "portraits/macron.png").convert("RGB")


def _to_image(points: torch.Tensor, pose: torch.Tensor) -> np.ndarray:
    return canonical_to_image(points.double(), pose.double(), face_center=CANONICALISATION_FACE_CENTER).numpy()


def _check_subject(subject: Subject, diagnostics):
    assert subject.reference_image.shape == (512, 512, 3) and subject.reference_image.dtype == torch.uint8
    face = _to_image(subject.template, subject.mean_head_pose)
    assert face.shape == (478, 3)
    assert (face[:, :2] >= 0).all() and (face[:, :2] < 512).all()
    assert np.abs(face - diagnostics.landmarks).max() < 1e-3                  # template lands on the crop face
    eye_distance = 120 / float(subject.mean_head_pose[6])
    assert 95 < eye_distance < 110                                             # authors' framing (~103 px)
    torso = _to_image(subject.mean_torso, subject.mean_head_pose)
    for side in (torso[:9], torso[9:]):
        assert (np.diff(side[:, 0]) > 0).all()                                 # left -> right
    assert torso[8, 0] < torso[9, 0]
    assert (torso[:, 1] > face[152, 1]).all()                                  # below the chin


@pytest.mark.parametrize("name", PORTRAITS)
def test_portrait_to_subject(data_dir, models_dir, name):
    subject, diagnostics = subject_from_photo(data_dir / "portraits" / name, models_dir=models_dir, name=name)
    _check_subject(subject, diagnostics)
    assert diagnostics.num_faces == 1 and diagnostics.warnings == []
    assert np.abs(diagnostics.head_pose[:3]).max() < 20                        # frontal portraits
    source = Image.open(data_dir / "portraits" / name)
    assert subject.source_size == source.size and subject.source_image.shape[:2] == source.size[::-1]

    affine = subject.crop_to_source.numpy()
    mapped = diagnostics.landmarks[:, :2] @ affine[:, :2].T + affine[:, 2]
    assert np.abs(mapped - diagnostics.source_landmarks[:, :2]).max() < 1e-6
    # the crop image itself agrees: landmarks found again in it map back onto the photo's landmarks
    with FaceLandmarks(models_dir) as landmarker:
        again = to_image_space(landmarker.detect(subject.reference_image.numpy())[0])
    redetected = again[:, :2] @ affine[:, :2].T + affine[:, 2]
    assert np.linalg.norm(redetected - diagnostics.source_landmarks[:, :2], axis=1).mean() < 1.5


def test_subject_file_round_trip(tmp_path, data_dir, models_dir):
    subject, _ = subject_from_photo(data_dir / "portraits/macron.png", models_dir=models_dir, name="macron")
    loaded = Subject.load(subject.save(tmp_path / "macron.safetensors"))
    assert torch.equal(loaded.template, subject.template) and loaded.name == "macron"
    assert torch.equal(loaded.source_image, subject.source_image)


@pytest.mark.parametrize("variant", ["rgba", "grayscale", "grey16", "wide", "tall", "small", "float_tensor",
                                     "float_batch", "uint8_array"])
def test_input_variants(models_dir, macron, variant):
    rgb = np.asarray(macron)
    image = {
        "rgba": lambda: macron.convert("RGBA"),
        "grayscale": lambda: macron.convert("L"),
        "grey16": lambda: Image.fromarray(np.asarray(macron.convert("L")).astype(np.uint16) * 257),
        "wide": lambda: np.pad(rgb, ((0, 0), (200, 300), (0, 0)), mode="edge"),
        "tall": lambda: rgb[40:, 100:400],
        "small": lambda: macron.resize((200, 200), Image.BILINEAR),
        "float_tensor": lambda: torch.from_numpy(rgb.astype(np.float32) / 255),
        "float_batch": lambda: torch.from_numpy(rgb.astype(np.float32) / 255)[None],
        "uint8_array": lambda: rgb,
    }[variant]()
    subject, diagnostics = subject_from_photo(image, models_dir=models_dir)
    _check_subject(subject, diagnostics)


def test_exif_rotated_file(tmp_path, models_dir, macron):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                          # "rotate 90 deg clockwise to display"
    macron.crop((0, 0, 512, 400)).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    subject, diagnostics = subject_from_photo(path, models_dir=models_dir)
    assert subject.source_size == (512, 400)
    assert abs(diagnostics.head_pose[2]) < 10                 # upright after EXIF rotation


def test_rgba_transparent_background_is_white(models_dir, macron):
    rgba = np.asarray(macron.convert("RGBA")).copy()
    rgba[:20, :, 3] = 0
    subject, _ = subject_from_photo(rgba, models_dir=models_dir)
    assert (subject.source_image[:20] == 255).all()


def test_no_face(models_dir):
    with pytest.raises(PreprocessError, match="no face"):
        subject_from_photo(np.full((400, 300, 3), 128, np.uint8), models_dir=models_dir)


def test_face_too_small(models_dir, macron):
    canvas = np.full((400, 400, 3), 128, np.uint8)
    canvas[150:250, 150:250] = np.asarray(macron.resize((100, 100), Image.LANCZOS))
    with pytest.raises(PreprocessError, match="too small"):
        subject_from_photo(canvas, models_dir=models_dir)


def test_several_faces(data_dir, models_dir, macron):
    woman = Image.open(data_dir / "portraits/hallo_woman.jpg").convert("RGB").resize((500, 500))
    pair = np.concatenate([np.asarray(macron.resize((400, 400))), np.asarray(woman)[50:450, 50:450]], 1)
    _, largest = subject_from_photo(pair, models_dir=models_dir)
    assert largest.num_faces == 2 and largest.face_index == 1
    assert "2 faces" in largest.warnings[0] and "face_index" in largest.warnings[0]
    _, chosen = subject_from_photo(pair, models_dir=models_dir, face_index=0)
    assert chosen.face_index == 0 and chosen.warnings == []
    assert chosen.source_landmarks[4, 0] < 400 < largest.source_landmarks[4, 0]
    with pytest.raises(PreprocessError, match="out of range"):
        subject_from_photo(pair, models_dir=models_dir, face_index=2)


def test_unreadable_inputs(tmp_path, models_dir):
    with pytest.raises(PreprocessError, match="not found"):
        subject_from_photo(tmp_path / "missing.jpg", models_dir=models_dir)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(PreprocessError, match="cannot read image"):
        subject_from_photo(broken, models_dir=models_dir)
    with pytest.raises(PreprocessError, match=r"^the image: expected one image"):
        subject_from_photo(np.zeros((2, 64, 64, 3), np.float32), models_dir=models_dir)
    with pytest.raises(PreprocessError, match=r"^input 'photo': expected uint8 or float"):
        subject_from_photo(torch.zeros((64, 64, 3), dtype=torch.int32), models_dir=models_dir, label="input 'photo'")


def test_no_shoulders_fall_back_with_a_warning(models_dir, macron, monkeypatch):
    monkeypatch.setattr(PersonSegmenter, "person_probability",
                        lambda self, rgb: np.zeros(rgb.shape[:2], np.float32))
    subject, diagnostics = subject_from_photo(macron, models_dir=models_dir)
    assert diagnostics.torso_sides_found == 0 and "no shoulders" in diagnostics.warnings[0]
    _check_subject(subject, diagnostics)


def test_one_shoulder_is_mirrored(models_dir, macron, monkeypatch):
    segment = PersonSegmenter.person_probability

    def left_half_only(self, rgb):
        probability = segment(self, rgb)
        probability[:, 256:] = 0
        return probability

    monkeypatch.setattr(PersonSegmenter, "person_probability", left_half_only)
    subject, diagnostics = subject_from_photo(macron, models_dir=models_dir)
    assert diagnostics.torso_sides_found == 1 and "mirrored" in diagnostics.warnings[0]
    _check_subject(subject, diagnostics)
