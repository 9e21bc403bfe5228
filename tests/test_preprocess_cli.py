"""``moda prepare photo|video`` end to end through the command-line entry point."""
from __future__ import annotations

import json

from moda_core.cli import main
from moda_core.subject import Subject


def test_prepare_photo(tmp_path, data_dir, capsys):
    out = tmp_path / "obama.safetensors"
    assert main(["prepare", "photo", str(data_dir / "portraits/obama.jpg"), "--out", str(out),
                 "--models", str(data_dir / "models")]) == 0
    assert Subject.load(out).name == "obama"
    assert "face 1 of 1" in capsys.readouterr().out


def test_prepare_video(tmp_path, data_dir, capsys):
    out = tmp_path / "may"
    assert main(["prepare", "video", str(data_dir / "video/may_5s.mp4"), "--out", str(out), "--fps", "25",
                 "--max-seconds", "0.5", "--models", str(data_dir / "models")]) == 0
    assert json.loads((out / "sample.json").read_text())["num_frames"] == 12
    assert "12 frames at 25 fps" in capsys.readouterr().out


def test_prepare_errors_exit_with_a_message(tmp_path, data_dir, capsys):
    assert main(["prepare", "photo", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "s.safetensors"),
                 "--models", str(data_dir / "models")]) == 2
    assert "missing.jpg does not exist" in capsys.readouterr().err
    assert main(["prepare", "photo", str(data_dir / "portraits/obama.jpg"), "--out", str(tmp_path / "s.safetensors"),
                 "--models", str(tmp_path)]) == 2
    assert "face_landmarker.task" in capsys.readouterr().err
