"""MODA Evaluate node through the ComfyUI doubles."""
from __future__ import annotations

import json

import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import run_node
from test_cli_eval import _absolute_repr


def test_schema(moda_nodes):
    schema = moda_nodes["MODA_Evaluate"].GET_SCHEMA()
    assert schema.is_output_node and schema.category == "MODA" and schema.description
    assert all(i.tooltip for i in schema.inputs)
    assert [o.io_type for o in schema.outputs] == ["STRING"]


def test_table_values(moda_nodes):
    node = moda_nodes["MODA_Evaluate"]
    reference = _absolute_repr()
    generated = reference.replace(mouth=reference.mouth + torch.tensor([0.0, 2.0, 0.0]))
    frames = torch.rand(4, 32, 32, 3)
    out = run_node(node, format="json", syncnet_weights="none", fps=30.0, generated=generated, reference=reference,
                   generated_frames=frames,
                   reference_frames=frames.clone())
    rows = {row["name"]: row for row in json.loads(out.result[0])["metrics"]}
    assert abs(rows["LMD"]["value"] - 2.0) < 1e-4 and rows["PSNR"]["value"] == 100.0
    assert out.ui is not None


def test_errors_name_the_input(moda_nodes):
    node = moda_nodes["MODA_Evaluate"]
    with pytest.raises(ValueError, match="MODA Evaluate: input 'generated': nothing to evaluate"):
        run_node(node, format="text", syncnet_weights="none", fps=30.0)
    with pytest.raises(ValueError, match="input 'reference_frames'"):
        run_node(node, format="text", syncnet_weights="none", fps=30.0, generated_frames=torch.rand(2, 8, 8, 3))


@pytest.fixture
def syncnet_folder(comfy_dirs, data_dir):
    """models/moda with tiny SyncNet weights (published file name) and MediaPipe's face landmarker."""
    import shutil

    from moda_core.models.syncnet import SyncNet, SyncNetConfig

    folder = comfy_dirs.models / "moda"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(SyncNet(SyncNetConfig.tiny()).state_dict(), folder / "syncnet_v2.model")
    shutil.copy(data_dir / "models" / "face_landmarker.task", folder)
    return folder


def may_clip(data_dir, seconds=1.2):
    from moda_core.preprocess import load_audio
    from moda_core.preprocess.video import read_frames

    video = data_dir / "video" / "may_5s.mp4"
    frames = torch.stack([torch.from_numpy(rgb) for _, _, rgb in read_frames(video, 25.0, max_seconds=seconds)])
    wave, rate = load_audio(video)
    return frames.float() / 255, {"waveform": torch.from_numpy(wave)[None, None], "sample_rate": rate}


def test_sync_rows_with_user_weights(moda_nodes, syncnet_folder, data_dir, progress_events):
    node = moda_nodes["MODA_Evaluate"]
    assert "syncnet_v2.model" in next(i for i in node.GET_SCHEMA().inputs if i.id == "syncnet_weights").options
    frames, audio = may_clip(data_dir)
    out = run_node(node, format="json", generated_frames=frames, audio=audio, syncnet_weights="syncnet_v2.model",
                   fps=25.0)
    rows = {row["name"]: row for row in json.loads(out.result[0])["metrics"]}
    assert rows["Sync"]["value"] >= 0 and rows["Sync-D"]["value"] > 0
    assert rows["Sync"]["details"]["windows"] == 30 - 5
    assert rows["PSNR"]["skipped"] and progress_events[-1][:2] == (25, 25)


def test_sync_input_errors(moda_nodes, syncnet_folder, data_dir):
    import shutil

    node = moda_nodes["MODA_Evaluate"]
    frames, audio = may_clip(data_dir, seconds=0.4)
    with pytest.raises(ValueError, match="MODA Evaluate: input 'audio': Sync needs the generated frames and their"):
        run_node(node, format="text", generated_frames=frames, syncnet_weights="syncnet_v2.model", fps=25.0)
    (syncnet_folder / "broken.model").write_bytes(b"junk")
    with pytest.raises(ValueError, match="input 'syncnet_weights'.*not a readable torch checkpoint"):
        run_node(node, format="text", generated_frames=frames, audio=audio, syncnet_weights="broken.model", fps=25.0)
    (syncnet_folder / "face_landmarker.task").unlink()
    with pytest.raises(ValueError, match="input 'syncnet_weights': Sync finds faces with MediaPipe"):
        run_node(node, format="text", generated_frames=frames, audio=audio, syncnet_weights="syncnet_v2.model",
                 fps=25.0)
    shutil.copy(data_dir / "models" / "face_landmarker.task", syncnet_folder)
    short = run_node(node, format="json", generated_frames=frames[:5], audio=audio,
                     syncnet_weights="syncnet_v2.model", fps=25.0)
    rows = {row["name"]: row for row in json.loads(short.result[0])["metrics"]}
    assert rows["Sync"]["skipped"].startswith("error: SyncNet needs at least 7 frames")


def test_sharpness_and_landmark_follow_rows(moda_nodes, comfy_dirs, data_dir):
    """A still portrait at its subject's own pose against a blurred copy: on target, sharper than the reference."""
    import shutil

    import cv2

    from moda_core.preprocess import subject_from_photo
    from moda_core.repr import TalkingRepr

    folder = comfy_dirs.models / "moda"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(data_dir / "models" / "face_landmarker.task", folder)
    subject, _ = subject_from_photo(data_dir / "portraits" / "macron.png", models_dir=data_dir / "models")
    still = subject.reference_image.numpy()
    generated_frames = torch.from_numpy(still).float().div(255).expand(3, -1, -1, -1).contiguous()
    reference_frames = torch.from_numpy(cv2.GaussianBlur(still, (0, 0), 2.0)).float().div(255).expand(3, -1, -1, -1)
    zeros = lambda *shape: torch.zeros(1, 3, *shape)          # noqa: E731  offsets: the subject's own pose
    generated = TalkingRepr(mouth=zeros(40, 3), eyes=zeros(60, 3), head_pose=zeros(7), torso=zeros(18, 3), fps=30,
                            is_offset=True)
    node = moda_nodes["MODA_Evaluate"]
    assert next(i for i in node.GET_SCHEMA().inputs if i.id == "face_center").options == ["authors", "canonical"]
    out = run_node(node, format="json", syncnet_weights="none", fps=30.0, face_center="canonical", generated=generated,
                   subject=subject, generated_frames=generated_frames, reference_frames=reference_frames.contiguous())
    rows = {row["name"]: row for row in json.loads(out.result[0])["metrics"]}
    assert rows["landmark follow"]["value"] < 1.5 and rows["sharpness ratio"]["value"] > 2.0
    authors = run_node(node, format="json", syncnet_weights="none", fps=30.0, face_center="authors",
                       generated=generated, subject=subject, generated_frames=generated_frames)
    rows = {row["name"]: row for row in json.loads(authors.result[0])["metrics"]}
    assert rows["landmark follow"]["value"] > 2.0           # points placed 3 px lower than where the face is
    assert "reference frames" in rows["sharpness ratio"]["skipped"]
