"""`moda eval` on R files and videos with known answers."""
import json

import cv2
import numpy as np
import torch

from moda_core.cli import main
from moda_core.repr import TalkingRepr
from moda_core.video import VideoWriter


def _absolute_repr(shift: float = 0.0, frames: int = 20) -> TalkingRepr:
    g = torch.Generator().manual_seed(0)
    mouth = torch.rand(1, frames, 40, 3, generator=g) * 40 + 230
    return TalkingRepr(mouth=mouth + shift, eyes=torch.rand(1, frames, 60, 3, generator=g) * 100 + 150,
                       head_pose=torch.zeros(1, frames, 7).index_fill_(2, torch.tensor([6]), 1.0),
                       torso=torch.zeros(1, frames, 18, 3), fps=30)


def test_eval_reports_known_lmd(tmp_path, capsys):
    _absolute_repr().save(tmp_path / "ref.npz")
    shifted = _absolute_repr()
    shifted = shifted.replace(mouth=shifted.mouth + torch.tensor([3.0, 4.0, 0.0]))
    shifted.save(tmp_path / "gen.npz")
    assert main(["eval", "--generated", str(tmp_path / "gen.npz"), "--reference", str(tmp_path / "ref.npz"),
                 "--format", "json", "--out", str(tmp_path / "table.json")]) == 0
    rows = {row["name"]: row for row in json.loads((tmp_path / "table.json").read_text())["metrics"]}
    assert abs(rows["LMD"]["value"] - 5.0) < 1e-4                  # a (3, 4) px shift
    assert abs(rows["LMD-v"]["value"]) < 1e-4


def test_eval_identical_videos(tmp_path, capsys):
    frames = (np.random.default_rng(0).random((6, 64, 64, 3)) * 255).astype(np.uint8)
    for name in ("a.mp4", "b.mp4"):
        with VideoWriter(tmp_path / name, 25) as writer:
            writer.write(frames)
    assert main(["eval", "--generated-video", str(tmp_path / "a.mp4"), "--reference-video", str(tmp_path / "b.mp4"),
                 "--size", "64", "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["PSNR"]["value"] == 100.0 and abs(rows["SSIM"]["value"] - 1.0) < 1e-9
    assert rows["NIQE"]["skipped"]


def test_eval_needs_an_input(capsys):
    assert main(["eval"]) == 2
    assert "give --generated" in capsys.readouterr().err


def test_eval_sync_of_a_video_with_user_weights(tmp_path, capsys, data_dir):
    from moda_core.models.syncnet import SyncNet, SyncNetConfig

    torch.manual_seed(0)
    weights = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet(SyncNetConfig.tiny()).state_dict(), weights)
    video = data_dir / "video" / "may_5s.mp4"
    assert main(["eval", "--generated-video", str(video), "--syncnet", str(weights), "--models",
                 str(data_dir / "models"), "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["Sync"]["value"] >= 0 and rows["Sync-D"]["value"] > 0
    assert rows["Sync"]["details"]["windows"] == 120 and rows["Sync"]["details"]["weights"] == str(weights)
    assert abs(rows["Sync"]["details"]["min_distance"] - rows["Sync-D"]["value"]) < 1e-12
    assert rows["Sync offset"]["value"] == rows["Sync"]["details"]["offset_frames"] and \
        -15 <= rows["Sync offset"]["value"] <= 15
    from scipy.io import wavfile

    from moda_core.preprocess import load_audio

    wave, rate = load_audio(data_dir / "audio" / "en_hdtf_radio31.wav")
    wavfile.write(tmp_path / "two_seconds.wav", rate, wave[:2 * rate])            # --audio replaces the track
    assert main(["eval", "--generated-video", str(video), "--syncnet", str(weights), "--audio",
                 str(tmp_path / "two_seconds.wav"), "--models", str(data_dir / "models"), "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["Sync"]["details"]["windows"] == 2 * 25 - 5


def test_eval_sync_needs_a_video(tmp_path, capsys):
    _absolute_repr().save(tmp_path / "gen.npz")
    assert main(["eval", "--generated", str(tmp_path / "gen.npz"), "--syncnet", str(tmp_path / "w.model")]) == 2
    assert "--syncnet scores a video" in capsys.readouterr().err


def test_eval_sharpness_and_landmark_follow_of_a_still_portrait(tmp_path, capsys, data_dir, monkeypatch):
    """A still portrait 'rendered' at its own pose: its points are on target, its sharpness equals the real one's."""
    from moda_core.preprocess import read_image, subject_from_photo

    models = data_dir / "models"
    subject, _ = subject_from_photo(data_dir / "portraits" / "macron.png", models_dir=models)
    subject.save(tmp_path / "subject.safetensors")
    frames = 4
    zeros = lambda *shape: torch.zeros(1, frames, *shape)         # noqa: E731  offsets: the subject's own pose
    TalkingRepr(mouth=zeros(40, 3), eyes=zeros(60, 3), head_pose=zeros(7), torso=zeros(18, 3), fps=25,
                is_offset=True).save(tmp_path / "still.npz")
    video = np.stack([subject.reference_image.numpy()] * frames)
    with VideoWriter(tmp_path / "still.mp4", 25) as writer:
        writer.write(video)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in video])
    with VideoWriter(tmp_path / "blurred.mp4", 25) as writer:
        writer.write(blurred)
    common = ["--generated", str(tmp_path / "still.npz"), "--subject", str(tmp_path / "subject.safetensors"),
              "--models", str(models), "--size", "512", "--format", "json", "--face-center", "canonical"]
    assert main(["eval", *common, "--generated-video", str(tmp_path / "still.mp4"),
                 "--reference-video", str(tmp_path / "still.mp4")]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["landmark follow"]["value"] < 1.5, rows["landmark follow"]
    assert abs(rows["sharpness ratio"]["value"] - 1.0) < 1e-9
    assert main(["eval", *common, "--generated-video", str(tmp_path / "blurred.mp4"),
                 "--reference-video", str(tmp_path / "still.mp4")]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}
    assert rows["sharpness ratio"]["value"] < 0.5
    monkeypatch.setenv("MODA_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["eval", *common[:4], "--generated-video", str(tmp_path / "still.mp4"), "--format", "json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}
    assert "needs both generated and reference frames" in rows["sharpness ratio"]["skipped"]
    assert rows["landmark follow"]["skipped"].startswith("error:")            # no MediaPipe models given


def test_eval_niqe_of_a_video_alone_at_its_own_size(tmp_path, capsys, data_dir):
    photo = cv2.imread(str(data_dir / "portraits" / "sadtalker_woman.png"))[96:288, 96:384, ::-1]   # 288x192 px
    with VideoWriter(tmp_path / "clip.mp4", 25) as writer:
        writer.write(np.stack([photo] * 3))
    assert main(["eval", "--generated-video", str(tmp_path / "clip.mp4"), "--format", "json"]) == 0
    row = {row["name"]: row for row in json.loads(capsys.readouterr().out)["metrics"]}["NIQE"]
    assert row["skipped"] is None and 2 < row["value"] < 15            # computed at 288x192, not --size 256
    assert row["details"] == {"frames": 3, "of_frames": 3, "channel": "y"}
