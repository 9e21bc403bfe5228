import cv2
import numpy as np
import pytest
import torch

from moda_core import drawing, landmarks
from moda_core.geometry import canonical_to_image
from moda_core.tpe import TPEConfig, temporal_positional_encoding, tpe_values

LIPS_APPENDIX_A = [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267,
                   269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415]


def test_index_sets_are_the_authors():
    mouth, eyes = landmarks.mouth_indices(), landmarks.eye_indices()
    assert mouth.tolist() == LIPS_APPENDIX_A
    assert len(eyes) == 60 and len(set(eyes.tolist())) == 60
    assert eyes[:4].tolist() == [474, 475, 476, 477] and eyes[30:34].tolist() == [469, 470, 471, 472]
    assert eyes[4:6].tolist() == [249, 263] and eyes[-1] == 107
    assert all(0 <= i < 478 for i in np.concatenate([mouth, eyes]))
    assert not set(mouth) & set(eyes)
    assert len(landmarks.non_semantic_indices()) == 376
    assert len(landmarks.face_oval_indices()) == 36


def test_vendored_connections_equal_mediapipe_tasks_constants():
    conn = pytest.importorskip("mediapipe.tasks.python.vision").FaceLandmarksConnections
    groups = landmarks.connection_groups()
    for name, pairs in groups.items():
        live = [[c.start, c.end] for c in getattr(conn, f"FACE_LANDMARKS_{name.upper()}")]
        assert pairs.tolist() == live, name
    assert len(groups["tesselation"]) == 2556 and len(groups["contours"]) == 124


def _line_reference(face_xy):
    """Edge-by-edge cv2.line rendering in the authors' order, the slow way."""
    canvas = np.zeros((512, 512, 3), np.uint8)
    groups, p = landmarks.connection_groups(), np.trunc(face_xy).astype(np.int32)
    order = [("tesselation", drawing.GREY, 1), ("lips", drawing.WHITE, 2), ("face_oval", drawing.WHITE, 2),
             ("left_eye", drawing.GREEN, 2), ("left_eyebrow", drawing.GREEN, 2), ("right_eye", drawing.RED, 2),
             ("right_eyebrow", drawing.RED, 2), ("left_iris", drawing.GREEN, 2), ("right_iris", drawing.RED, 2)]
    for name, color, thickness in order:
        for a, b in groups[name]:
            cv2.line(canvas, tuple(map(int, p[a])), tuple(map(int, p[b])), color, thickness)
    return canvas


@pytest.fixture(scope="module")
def cathy(parity_dir):
    from safetensors import safe_open
    with safe_open(str(parity_dir / "moda_net.safetensors"), "pt") as handle:
        template = handle.get_tensor("templete").clone()
    with safe_open(str(parity_dir / "renderer.safetensors"), "pt") as handle:
        condition = handle.get_tensor("condition_rgb256_uint8").clone().numpy()
    pose = torch.tensor([0.3784, 0.0469, 3.4380, 276.378, 245.738, 2.7956, 1.16772], dtype=torch.float64)
    return template, pose, condition


def test_batched_drawing_equals_line_by_line(cathy):
    template, pose, _ = cathy
    xy = canonical_to_image(template, pose)[:, :2].numpy()
    fast = drawing.draw_condition_images(xy[None], as_uint8=True)[0].numpy()
    assert np.array_equal(fast, _line_reference(xy))


def test_authors_condition_image_reproduced(cathy):
    """The golden renderer input was drawn by the authors' code from the Cathy template and mean pose."""
    template, pose, golden = cathy
    xy = canonical_to_image(template, pose)[None, :, :2]
    ours = drawing.draw_condition_images(xy, size=256, as_uint8=True)[0].numpy()
    face_rows = slice(0, 185)        # above the shoulders (their 3-D points are not in the parity files)
    differs = np.abs(ours[face_rows].astype(int) - golden[face_rows].astype(int)).max(-1) > 0
    assert differs.mean() < 0.002    # pose given to 4 decimals: a few truncation flips at most
    # the colours sit where the authors put them: subject-right eye red, left eye green (RGB)
    eye_r = canonical_to_image(template, pose)[landmarks.eye_contour_indices()[1], :2].mean(0) / 2
    patch = ours[int(eye_r[1]) - 6:int(eye_r[1]) + 6, int(eye_r[0]) - 10:int(eye_r[0]) + 10].reshape(-1, 3)
    assert ((patch[:, 0] > 200) & (patch[:, 1] < 120)).any()


def test_small_mesh_pixels_and_shoulders():
    face = np.full((478, 2), 5.0)                # every point on one pixel -> only dots
    face[61], face[146] = (100, 100), (200, 100)  # one lip edge, horizontal
    torso = np.stack([np.linspace(10, 90, 18), np.full(18, 400.0)], -1)
    img = drawing.draw_condition_images(face[None], torso[None], as_uint8=True)[0].numpy()
    assert img[100, 150].tolist() == list(drawing.WHITE)
    assert img[400, 30].tolist() == list(drawing.SHOULDER) and img[400, 70].tolist() == list(drawing.SHOULDER)
    assert img[400, 50].tolist() == [0, 0, 0]     # the two shoulders are separate polylines (points 8 -> 9 open)
    assert img[300, 300].tolist() == [0, 0, 0] and img[50, 450].tolist() == [0, 0, 0]
    as_float = drawing.draw_condition_images(face[None], torso[None])
    assert as_float.dtype == torch.float32 and as_float.shape == (1, 512, 512, 3)
    assert torch.allclose(as_float[0, 100, 150], torch.tensor(drawing.WHITE) / 255.0)


def test_thick_lines_leaving_the_canvas_match_opencv_4_10():
    """2-px lines with an end off the canvas come out as OpenCV 4.10 (the authors' version) drew them, whatever
    OpenCV is installed (>= 4.13 clips them first and draws other pixels). Hashes made with 4.10: see the file."""
    import hashlib
    import json
    from pathlib import Path

    reference = json.loads((Path(__file__).parent / "data" / "opencv410_thick_lines.json").read_text())
    segments = np.asarray(reference["segments"], np.int32)
    assert len(segments) > 100 and not ((segments >= 0) & (segments < drawing.DRAW_SIZE)).all(axis=(1, 2)).any()
    for segment, expected in zip(segments, reference["sha256_16"]):
        canvas = np.zeros((drawing.DRAW_SIZE, drawing.DRAW_SIZE), np.uint8)
        drawing._draw_segments(canvas, segment[None], (255,), 2, cv2.LINE_8)
        assert hashlib.sha256(np.packbits(canvas > 0).tobytes()).hexdigest()[:16] == expected, segment.tolist()


def test_drawing_input_errors():
    with pytest.raises(ValueError, match=r"face_xy must be \[T, 478, 2\]"):
        drawing.draw_condition_images(np.zeros((2, 468, 2)))
    with pytest.raises(ValueError, match="NaN"):
        drawing.draw_condition_images(np.full((1, 478, 2), np.nan))
    with pytest.raises(ValueError, match="style"):
        drawing.draw_condition_frame(np.zeros((478, 2)), style="fancy")


def test_tpe_authors_values_frame7(parity_dir):
    from safetensors import safe_open
    with safe_open(str(parity_dir / "renderer.safetensors"), "pt") as handle:
        golden = handle.get_tensor("tpe_frame7_values").clone()
    assert torch.allclose(tpe_values([7])[0], golden, atol=1e-7)
    planes = temporal_positional_encoding([0, 7, 299], 8, 4)
    assert planes.shape == (3, 13, 8, 4)
    assert torch.equal(planes[1, :, 3, 2], tpe_values([7])[0])
    assert planes[0, 0].abs().max() == 0 and planes[0, 2].eq(1).all()    # v = 0, cos 0 = 1


def test_tpe_paper_form_and_training_offset():
    from moda_core.tpe import AUTHORS_TRAIN_OFFSET
    paper = tpe_values([50], TPEConfig.paper())[0]
    assert paper.shape == (12,)
    expected = [f(50 * 2 ** i / 100) for i in range(6) for f in (np.sin, np.cos)]
    np.testing.assert_allclose(paper.numpy(), expected, atol=1e-6)
    train = tpe_values([5], TPEConfig(offset=AUTHORS_TRAIN_OFFSET))[0]
    assert train[0].item() == pytest.approx(1.005)
    with pytest.raises(ValueError, match="form"):
        TPEConfig(form="learned")
