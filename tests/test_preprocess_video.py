"""Talking video -> sample folder, on every shared clip (first 2 s; may_5s.mp4 in full)."""
from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from scipy.io import wavfile

from moda_core.geometry import CANONICALISATION_FACE_CENTER, canonical_to_image
from moda_core.landmarks import mouth_indices
from moda_core.preprocess import PreprocessError, prepare_video_sample, probe_video, read_frames
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

VIDEOS = ["may_5s.mp4", "hdtf_aoc_8s.mp4", "vr_man_5s.mp4", "vr_woman_7s.mp4", "halfbody_man_20s.mp4"]
FULL_CLIP = "may_5s.mp4"
SECONDS = 2.0
FPS = 30.0


@pytest.fixture(scope="module")
def models_dir(data_dir):
    return data_dir / "models"


@pytest.fixture(scope="module")
def samples(tmp_path_factory, data_dir, models_dir):
    root = tmp_path_factory.mktemp("samples")
    return {name: prepare_video_sample(data_dir / "video" / name, root / name.split(".")[0], fps=FPS,
                                       models_dir=models_dir, max_seconds=None if name == FULL_CLIP else SECONDS)
            for name in VIDEOS}


def _image_space(points: torch.Tensor, pose: torch.Tensor) -> np.ndarray:
    return canonical_to_image(points.double(), pose.double(), face_center=CANONICALISATION_FACE_CENTER).numpy()


@pytest.mark.parametrize("name", VIDEOS)
def test_sample_folder(samples, data_dir, name):
    summary = samples[name]
    folder = Path(summary.path)
    info = probe_video(data_dir / "video" / name)
    seconds = info.duration if name == FULL_CLIP else SECONDS
    frames = summary.num_frames
    assert abs(frames - seconds * FPS) <= 1

    meta = json.loads((folder / "sample.json").read_text())
    assert meta["format"] == "moda-sample" and meta["version"] == 1
    assert meta["num_frames"] == frames and meta["fps"] == FPS and meta["frames_without_face"] == []
    assert len(list((folder / "frames").glob("*.png"))) == frames
    assert cv2.imread(str(folder / f"frames/{frames - 1:06d}.png")).shape == (512, 512, 3)

    rate, audio = wavfile.read(folder / "audio.wav")
    assert rate == 16000 and audio.ndim == 1 and len(audio) == round(frames * 16000 / FPS)
    assert np.abs(audio).max() > 1000                                          # speech, not silence

    r = TalkingRepr.load(folder / "repr.safetensors")
    assert (r.num_samples, r.num_frames, r.fps, r.is_offset) == (1, frames, FPS, False)
    assert torch.equal(r.mouth[0], r.face[0][:, torch.from_numpy(mouth_indices())])
    subject = Subject.load(folder)
    assert subject.reference_image.shape == (512, 512, 3)
    assert torch.allclose(subject.template, r.face[0].mean(0), atol=1e-3)


@pytest.mark.parametrize("name", VIDEOS)
def test_reprojection_lands_on_the_detected_points(samples, name):
    folder = samples[name].path
    r = TalkingRepr.load(f"{folder}/repr.safetensors")
    tracks = np.load(f"{folder}/tracks.npz")
    face = _image_space(r.face[0], r.head_pose[0])
    stored = np.linalg.norm(face[..., :2] - tracks["landmarks"][..., :2], axis=-1).mean()
    found = tracks["face_found"]
    detected = np.linalg.norm(face[found, :, :2] - tracks["landmarks_raw"][found, :, :2], axis=-1).mean()
    print(f"{name}: reprojection vs R's points {stored:.2e} px, vs raw detections {detected:.3f} px")
    assert stored < 2.0 and detected < 2.0
    assert (face[..., :2] >= 0).all() and (face[..., :2] < 512).all()


@pytest.mark.parametrize("name", VIDEOS)
def test_torso_ordered_and_below_the_chin(samples, name):
    r = TalkingRepr.load(f"{samples[name].path}/repr.safetensors")
    torso = _image_space(r.torso[0], r.head_pose[0])                          # [T, 18, 3]
    chin_y = _image_space(r.face[0], r.head_pose[0])[:, 152, 1]
    x = torso[..., 0]
    assert (np.diff(x[:, :9], axis=1) > 0).all() and (np.diff(x[:, 9:], axis=1) > 0).all()
    assert (x[:, 8] < x[:, 9]).all()
    assert (torso[..., 1] > chin_y[:, None]).all()
    assert samples[name].frames_without_torso == []


def _write_clip(path, frames: int | list[np.ndarray], audio: bool, fps: int = 25) -> Path:
    """An mpeg4 clip of the given RGB frames (or that many grey frames), optionally with AAC noise."""
    images = [np.full((128, 128, 3), 128, np.uint8)] * frames if isinstance(frames, int) else frames
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps, options={"qscale": "2"})
        video.height, video.width = images[0].shape[:2]
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for image in images:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            noise = (np.random.default_rng(0).normal(0, 3000, (1, 16000 * len(images) // fps))).astype(np.int16)
            chunk = av.AudioFrame.from_ndarray(noise, format="s16", layout="mono")
            chunk.sample_rate = 16000
            container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def test_missing_video(tmp_path, models_dir):
    with pytest.raises(PreprocessError, match="video file not found"):
        prepare_video_sample(tmp_path / "missing.mp4", tmp_path / "out", models_dir=models_dir)


def test_video_without_audio(tmp_path, models_dir):
    _write_clip(tmp_path / "silent.mp4", 10, audio=False)
    with pytest.raises(PreprocessError, match="no audio track"):
        prepare_video_sample(tmp_path / "silent.mp4", tmp_path / "out", models_dir=models_dir)
    assert not (tmp_path / "out").exists()


def test_video_without_face_leaves_nothing_behind(tmp_path, models_dir):
    _write_clip(tmp_path / "grey.mp4", 10, audio=True)
    out = tmp_path / "samples"
    out.mkdir()
    with pytest.raises(PreprocessError, match="face was found in only 0 of"):
        prepare_video_sample(tmp_path / "grey.mp4", out / "grey", models_dir=models_dir)
    assert list(out.iterdir()) == []


def test_existing_folder_and_overwrite_and_fps(tmp_path, data_dir, models_dir):
    video = data_dir / "video/may_5s.mp4"
    out = tmp_path / "may"
    out.mkdir()
    with pytest.raises(PreprocessError, match="already exists"):
        prepare_video_sample(video, out, models_dir=models_dir, max_seconds=0.5)
    summary = prepare_video_sample(video, out, fps=25, models_dir=models_dir, max_seconds=1.0, overwrite=True)
    assert summary.num_frames == 25 and len(list((out / "frames").glob("*.png"))) == 25
    assert [p.name for p in tmp_path.iterdir()] == ["may"]


def test_frames_without_face_are_interpolated(tmp_path, data_dir, models_dir):
    frames = [rgb for k, _, rgb in read_frames(data_dir / "video/may_5s.mp4", 25, max_seconds=1.2)]
    gap = range(12, 16)
    for k in gap:
        frames[k] = np.full_like(frames[k], 128)
    _write_clip(tmp_path / "gap.mp4", frames, audio=True)
    summary = prepare_video_sample(tmp_path / "gap.mp4", tmp_path / "gap", fps=25, models_dir=models_dir)
    assert set(gap) <= set(summary.frames_without_face) and len(summary.frames_without_face) <= len(gap) + 2
    assert "interpolated" in summary.warnings[0]
    meta = json.loads((tmp_path / "gap/sample.json").read_text())
    assert meta["frames_without_face"] == summary.frames_without_face
    tracks = np.load(tmp_path / "gap/tracks.npz")
    assert not tracks["face_found"][list(gap)].any() and np.isfinite(tracks["landmarks"]).all()
    before, after = tracks["landmarks"][gap.start - 1], tracks["landmarks"][gap.stop]
    middle = tracks["landmarks"][(gap.start + gap.stop) // 2]
    assert np.abs(middle - (before + after) / 2).mean() < 5                   # in between its neighbours
