"""Sharpness ratio and landmark-follow error on real shared portraits with known blur and shifts."""
import cv2
import numpy as np
import pytest

from moda_core.metrics import evaluate
from moda_core.metrics.follow import detect_face_points, follow_distances, landmark_follow
from moda_core.metrics.sharpness import face_boxes, sharpness_per_frame, sharpness_ratio
from moda_core.preprocess import FaceLandmarks, read_image


@pytest.fixture(scope="module")
def portrait(data_dir):
    """macron.png (512x512) as three frames, and its MediaPipe points [3, 478, 2]."""
    image = read_image(data_dir / "portraits" / "macron.png")[0]
    assert image.shape == (512, 512, 3)
    with FaceLandmarks(data_dir / "models") as detector:
        points = detector.detect(image)[0][:, :2]
    return np.stack([image] * 3), np.stack([points] * 3)


def shift(frames, dx, dy, interpolation=cv2.INTER_CUBIC):
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return np.stack([cv2.warpAffine(f, matrix, f.shape[1::-1], flags=interpolation, borderMode=cv2.BORDER_REFLECT)
                     for f in frames])


def test_sharpness_ratio_of_blurred_and_sharp_faces(portrait):
    frames, points = portrait
    same = sharpness_ratio(frames, frames, reference_points=points)
    assert same.value == pytest.approx(1.0) and same.details["median"] == pytest.approx(1.0)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames])
    soft = sharpness_ratio(blurred, frames, reference_points=points)
    assert soft.value < 0.4 and soft.name == "sharpness ratio"
    assert sharpness_ratio(frames, blurred, reference_points=points).value > 2.5     # the other way round
    # a half-pixel shift blurs: bilinear interpolation much more than cubic
    linear = sharpness_ratio(shift(frames, 0.5, 0.5, cv2.INTER_LINEAR), frames, reference_points=points).value
    cubic = sharpness_ratio(shift(frames, 0.5, 0.5), frames, reference_points=points).value
    assert 0.3 < linear < 0.6 < 0.7 < cubic < 0.95


def test_sharpness_counts_only_the_face_box(portrait):
    frames, points = portrait
    boxes = face_boxes(points, 512, 512)
    x0, y0, x1, y1 = boxes[0]
    assert 0 < x0 < x1 < 512 and 0 < y0 < y1 < 512
    outside = frames.copy()
    outside[:, :, : max(x0 - 2, 1)] = 0                         # flatten everything left of the face
    g, r = sharpness_per_frame(outside, frames, boxes)
    np.testing.assert_allclose(g, r)
    half = face_boxes(points, 256, 256)                           # points of the 512 crop scaled to 256 frames
    np.testing.assert_allclose(half[0], boxes[0] / 2, atol=1)


def test_sharpness_finds_faces_itself(portrait, data_dir):
    frames, points = portrait
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in frames])
    given = sharpness_ratio(blurred, frames, reference_points=points).value
    found = sharpness_ratio(blurred, frames, models_dir=data_dir / "models")
    assert found.value == pytest.approx(given, rel=0.05) and "MediaPipe" in found.details["face_box"]
    with pytest.raises(ValueError, match="no face"):
        sharpness_ratio(frames[:, :64, :64], frames[:, :64, :64], models_dir=data_dir / "models")
    with pytest.raises(ValueError, match="differ in shape"):
        sharpness_ratio(frames[:2], frames, reference_points=points)


def test_landmark_follow_of_a_known_shift(portrait, data_dir):
    frames, points = portrait
    moved = shift(frames, 6.0, -4.0)
    models = data_dir / "models"
    on_target = landmark_follow(moved, points + [6.0, -4.0], models)
    assert on_target.value < 1.0 and on_target.details["frames_without_face"] == []
    off_target = landmark_follow(moved, points, models)
    assert off_target.value == pytest.approx(np.hypot(6, 4), abs=1.0)      # 7.2 px
    assert off_target.details["mouth"] == pytest.approx(np.hypot(6, 4), abs=1.5)
    small = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in moved])
    assert landmark_follow(small, points + [6.0, -4.0], models).value < 1.5   # reported at 512 px


def test_landmark_follow_errors(portrait, data_dir):
    frames, points = portrait
    models = data_dir / "models"
    with pytest.raises(ValueError, match="478"):
        landmark_follow(frames, points[:, :100], models)
    with pytest.raises(ValueError, match="2 frames but the video has 3"):
        landmark_follow(frames, points[:2], models)
    blank = np.full_like(frames, 128)
    with pytest.raises(ValueError, match="a face in only 0 of 3"):
        landmark_follow(blank, points, models)
    with pytest.raises(ValueError, match="not found"):
        landmark_follow(frames, points, data_dir / "no-such-folder")
    bad = points.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        follow_distances(detect_face_points(frames[:1], models), bad[:1])


def test_evaluate_rows(portrait, data_dir):
    frames, points = portrait                      # at 256 px (faster); points stay in px of the 512 crop
    frames = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA) for f in frames[:2]])
    points = points[:2]
    moved = shift(frames, 1.0, 2.0)                # whole pixels: (2, 4) px at 512, no blur
    report = evaluate(generated_frames=moved, reference_frames=frames, target_points=points,
                      reference_points=points, models_dir=data_dir / "models")
    assert report["landmark follow"].value == pytest.approx(np.hypot(2, 4), abs=1.0)
    assert report["landmark follow"].unit == "px @512" and report["landmark follow"].higher_is_better is False
    assert 0.85 < report["sharpness ratio"].value < 1.1          # same detail, box content moved a little
    missing = evaluate(generated_frames=moved)
    assert "reference frames" in missing["sharpness ratio"].skipped
    assert "points they were rendered to" in missing["landmark follow"].skipped
    no_model = evaluate(generated_frames=moved, reference_frames=frames, target_points=points,
                        models_dir=data_dir / "no-such-folder")
    assert no_model["landmark follow"].skipped.startswith("error:") and "face_landmarker.task" in \
        no_model["landmark follow"].skipped
    assert no_model["sharpness ratio"].skipped.startswith("error:")
