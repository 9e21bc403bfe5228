"""``moda prepare video FOLDER``: one sample folder per video, worker processes, skip finished, report failures."""
from __future__ import annotations

import json
import os

import pytest

from moda_core.cli import main
from moda_core.fileio import current_umask
from moda_core.preprocess.batch import is_prepared_sample, prepare_videos, video_files

CLIPS = ("may_5s.mp4", "vr_man_5s.mp4")
SECONDS = "0.4"


@pytest.fixture
def video_folder(tmp_path, data_dir):
    """Two shared clips (linked) and a file that only looks like a video."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in CLIPS:
        os.symlink(data_dir / "video" / name, folder / name)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "notes.txt").write_text("not a video either")
    return folder


def _lines(text: str) -> dict[str, str]:
    """``{video file: line}`` of the per-video lines."""
    return {line.split(" -> ")[0].split(": ", 1)[1]: line for line in text.splitlines()
            if line.startswith(("prepared: ", "skipped: ", "failed: "))}


def test_folder_in_two_workers_then_skipped(video_folder, tmp_path, data_dir, capsys):
    out = tmp_path / "samples"
    args = ["prepare", "video", str(video_folder), "--out", str(out), "--fps", "25", "--max-seconds", SECONDS,
            "--models", str(data_dir / "models")]
    assert main(args + ["--workers", "2"]) == 1                 # broken.mp4 failed, the others went on
    captured = capsys.readouterr()
    lines = _lines(captured.out)
    assert sorted(lines) == ["broken.mp4", "may_5s.mp4", "vr_man_5s.mp4"]
    assert lines["broken.mp4"].startswith("failed: ") and "cannot open video" in lines["broken.mp4"]
    for name in CLIPS:
        stem = name.split(".")[0]
        assert lines[name].startswith("prepared: ") and "10 frames at 25 fps" in lines[name]
        assert is_prepared_sample(out / stem)
        assert json.loads((out / stem / "sample.json").read_text())["num_frames"] == 10
    assert "2 prepared, 0 skipped, 1 failed" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["may_5s", "vr_man_5s"]    # no temporary folders left

    stamp = (out / "may_5s" / "sample.json").stat().st_mtime_ns
    assert main(args) == 1
    lines = _lines(capsys.readouterr().out)
    assert lines["may_5s.mp4"].startswith("skipped: ") and lines["vr_man_5s.mp4"].startswith("skipped: ")
    assert lines["broken.mp4"].startswith("failed: ")
    assert (out / "may_5s" / "sample.json").stat().st_mtime_ns == stamp


def test_incomplete_folder_is_not_skipped(tmp_path, data_dir):
    out = tmp_path / "samples"
    (out / "may_5s").mkdir(parents=True)
    (out / "may_5s" / "frames").mkdir()                         # e.g. copied by hand, no sample.json
    assert not is_prepared_sample(out / "may_5s")
    (outcome,) = prepare_videos([data_dir / "video" / "may_5s.mp4"], out, fps=25, max_seconds=0.2,
                                models_dir=data_dir / "models")
    assert outcome.status == "failed" and "already exists" in outcome.detail      # not silently taken as done
    (outcome,) = prepare_videos([data_dir / "video" / "may_5s.mp4"], out, fps=25, max_seconds=0.2,
                                models_dir=data_dir / "models", overwrite=True)
    assert outcome.status == "prepared" and is_prepared_sample(out / "may_5s")


def test_same_stem_and_listing(tmp_path, data_dir):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "a.MOV", ".hidden.mp4", "b.txt"):
        (folder / name).write_bytes(b"x")
    assert [p.name for p in video_files(folder)] == ["a.MOV", "a.mp4"]
    outcomes = list(prepare_videos(video_files(folder), tmp_path / "out", models_dir=data_dir / "models"))
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert "same sample folder as a.MOV" in outcomes[0].detail          # reported before any work
    assert "cannot open video" in outcomes[1].detail


def test_single_file_skips_a_finished_sample(tmp_path, data_dir, capsys):
    out = tmp_path / "may"
    args = ["prepare", "video", str(data_dir / "video/may_5s.mp4"), "--out", str(out), "--fps", "25",
            "--max-seconds", "0.2", "--models", str(data_dir / "models")]
    assert main(args) == 0 and is_prepared_sample(out)
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask(), "the usual folder mode, not mkdtemp's 0700"
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("skipped: may_5s.mp4")


def test_folder_errors(tmp_path, data_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "video", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "holds no video files" in capsys.readouterr().err
    assert main(["prepare", "video", str(empty), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_frames_are_streamed_not_kept(tmp_path, data_dir, monkeypatch):
    """Both passes take decoded frames one at a time and let them go: memory does not grow with the clip's length
    by frames (a list of all frames, or a frame queue without bound, would keep dozens alive here)."""
    import weakref

    from moda_core.preprocess import sample

    alive, most, decoded = set(), [0], [0]
    real_read_frames = sample.read_frames

    def counted(*args, **kwargs):
        for k, source, rgb in real_read_frames(*args, **kwargs):
            if id(rgb) not in alive:
                decoded[0] += 1
                alive.add(id(rgb))
                weakref.finalize(rgb, alive.discard, id(rgb))
            most[0] = max(most[0], len(alive))
            yield k, source, rgb

    monkeypatch.setattr(sample, "read_frames", counted)
    summary = sample.prepare_video_sample(data_dir / "video" / "may_5s.mp4", tmp_path / "may", fps=25,
                                          max_seconds=0.6, models_dir=data_dir / "models")
    assert summary.num_frames == 15 and decoded[0] == 30                 # two passes over 15 frames
    assert most[0] <= 3, f"{most[0]} decoded frames alive at once"


def crashing_worker(video, folder, *options):
    """Stand-in for one video's work in a worker process: ``crash.mp4`` kills its process, as the kernel's
    out-of-memory killer or a native crash would."""
    if video.name == "crash.mp4":
        os._exit(9)
    return "prepared", f"pretend {video.name}"


def test_a_dying_worker_fails_only_its_video(tmp_path):
    videos = [tmp_path / name for name in ("a.mp4", "crash.mp4", "b.mp4")]
    outcomes = {o.video.name: o for o in prepare_videos(videos, tmp_path / "out", workers=2, worker=crashing_worker)}
    assert sorted(outcomes) == ["a.mp4", "b.mp4", "crash.mp4"]
    assert outcomes["crash.mp4"].status == "failed" and "worker process died" in outcomes["crash.mp4"].detail
    for name in ("a.mp4", "b.mp4"):
        assert (outcomes[name].status, outcomes[name].detail) == ("prepared", f"pretend {name}")
