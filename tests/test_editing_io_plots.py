import argparse
import json

import numpy as np
import pytest
import torch

from moda_core import TalkingRepr
from moda_core.cli import edit as edit_cli
from moda_core.editing import (CURVE_COLUMNS, apply_curves, blink_rate, curves_table, eye_openness, load_curves,
                               mouth_openness, overlay_landmarks, plot_curves, save_curves, scale_head_pose)
from test_editing_support import make_talking, subject, template  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def talking(template):
    return make_talking(template, seconds=3, samples=2, blinks_at=(1.0,))


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_curves_round_trip_exactly(talking, tmp_path, suffix):
    path = save_curves(talking, tmp_path / f"curves{suffix}", sample=1)
    table = load_curves(path)
    assert tuple(table) == CURVE_COLUMNS
    expected = curves_table(talking, sample=1)
    for name in CURVE_COLUMNS[2:]:
        assert np.array_equal(table[name].astype(np.float32), expected[name]), name
    assert np.array_equal(table["frame"], np.arange(talking.num_frames))
    assert np.allclose(table["time"], np.arange(talking.num_frames) / talking.fps, atol=1e-6)
    assert torch.equal(apply_curves(talking, table, sample=1).head_pose, talking.head_pose)
    unchanged = apply_curves(talking, table, sample=1)
    for name, value in talking.tracks().items():
        assert torch.allclose(getattr(unchanged, name), value, atol=1e-5), name


def test_offset_r_exports_pose_only_without_subject(talking, subject, tmp_path):
    offsets = talking.to_offsets(subject)
    assert tuple(curves_table(offsets)) == CURVE_COLUMNS[:9]
    assert tuple(curves_table(offsets, subject)) == CURVE_COLUMNS
    header = (save_curves(offsets, tmp_path / "pose.csv")).read_text().splitlines()[0]
    assert header == "frame,time,yaw,pitch,roll,tx,ty,tz,scale"


def test_edited_curves_apply_back(talking, tmp_path):
    table = curves_table(talking)
    table["yaw"] = np.full(talking.num_frames, 7.5, np.float32)
    table["eye_openness_left"] = table["eye_openness_left"] * 0.5
    table["mouth_openness"] = np.linspace(0, 15, talking.num_frames)
    path = tmp_path / "edited.csv"
    with open(path, "w") as handle:
        handle.write(",".join(table) + "\n")
        for row in zip(*table.values()):
            handle.write(",".join(str(v) for v in row) + "\n")
    edited = apply_curves(talking, load_curves(path))                        # every sample
    assert torch.equal(edited.head_pose[..., 0], torch.full((2, talking.num_frames), 7.5))
    assert torch.equal(edited.head_pose[..., 1:], talking.head_pose[..., 1:])
    openness = eye_openness(edited)
    assert torch.allclose(openness[..., 0], torch.from_numpy(table["eye_openness_left"]).expand(2, -1), atol=1e-5)
    assert torch.allclose(openness[..., 1], eye_openness(talking)[..., 1], atol=1e-5)
    assert torch.allclose(mouth_openness(edited), torch.linspace(0, 15, talking.num_frames).expand(2, -1),
                          atol=1e-4)
    assert torch.equal(edited.torso, talking.torso)
    one = apply_curves(talking, load_curves(path), sample=1)
    assert torch.equal(one.head_pose[0], talking.head_pose[0])


def _write_csv(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,message", [
    ("frame,yaw,wobble\n0,1,2\n", "unknown column 'wobble'"),
    ("yaw\n1\n", "include 'frame'"),
    ("frame,yaw\n0,1\n1\n", "line 3 has 1 values, the header has 2"),
    ("frame,yaw\n0,1\n1,nan\n", r"column 'yaw', frame row 1: 'nan' is not a finite number"),
    ("frame,yaw\n0,1\n1,abc\n", r"column 'yaw', frame row 1: 'abc'"),
    ("frame,yaw\n0,1\n2,1\n", "frames must be numbered 0, 1, 2"),
    ("frame,yaw\n", "no frames"),
    ("", "empty curves file"),
])
def test_invalid_csv_is_rejected(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_curves(_write_csv(tmp_path / "bad.csv", text))


def test_invalid_json_and_lengths(talking, tmp_path):
    path = save_curves(talking, tmp_path / "c.json")
    document = json.loads(path.read_text())
    document["frames"][3]["yaw"] = None
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="column 'yaw', frame row 3: None"):
        load_curves(path)
    del document["frames"][3]["yaw"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"frames\[3\] has keys"):
        load_curves(path)
    path.write_text(json.dumps({"format": "something"}))
    with pytest.raises(ValueError, match="not a moda curves file"):
        load_curves(path)
    short = load_curves(save_curves(talking.slice_time(0, 10), tmp_path / "short.csv"))
    with pytest.raises(ValueError, match="curves have 10 frames but R has 90"):
        apply_curves(talking, short)
    with pytest.raises(ValueError, match="use .csv or .json"):
        save_curves(talking, tmp_path / "c.txt")


def test_plot_curves_is_an_image_of_the_requested_size(talking):
    plain = plot_curves(talking, width=640, height=480)
    assert plain.shape == (480, 640, 3) and plain.dtype == torch.float32
    assert float(plain.min()) >= 0 and float(plain.max()) <= 1
    background = plain.reshape(-1, 3).mode(dim=0).values
    assert float((plain - background).abs().amax(-1).gt(0.1).float().mean()) > 0.01
    compared = plot_curves(scale_head_pose(talking, yaw=2.0), talking, width=800, tracks="head")
    assert compared.shape == (3 * 180 + 40, 800, 3)
    assert not torch.equal(compared, plot_curves(scale_head_pose(talking, yaw=2.0), width=800, tracks="head"))
    with pytest.raises(ValueError, match="tracks: unknown name 'lips'"):
        plot_curves(talking, tracks="head,lips")


def test_overlay_draws_landmarks_on_the_reference(talking, subject):
    frames = overlay_landmarks(talking, subject, sample=1, every_n=30)
    assert frames.shape == (3, 512, 512, 3) and frames.dtype == torch.float32
    reference = subject.reference_float()
    changed = (frames - reference).abs().amax(-1) > 0.05
    assert 0.005 < float(changed.float().mean()) < 0.5
    ys, xs = changed[0].nonzero(as_tuple=True)
    assert 150 < float(xs.float().median()) < 360 and 150 < float(ys.float().median()) < 400
    offsets = overlay_landmarks(talking.to_offsets(subject), subject, sample=1, every_n=30)
    assert torch.allclose(offsets, frames, atol=0.02)


def test_cli_edit(talking, subject, tmp_path):
    source = talking.save(tmp_path / "in.safetensors")
    subject_file = subject.save(tmp_path / "subject.safetensors")
    parser = argparse.ArgumentParser()
    edit_cli.register(parser.add_subparsers())
    args = parser.parse_args(["edit",
        str(source), "--out", str(tmp_path / "out.npz"), "--subject", str(subject_file),
        "--head-gain", "yaw=2", "--head-smooth", "tx,ty=2", "--head-clamp", "roll=-1:1",
        "--keyframes", "pitch=0s: 0, 2s: 5", "--blink-rate", "30", "--gaze", "1,0", "--mouth-gain", "1.2",
        "--export-curves", str(tmp_path / "curves.json"), "--plot", str(tmp_path / "plot.png")])
    assert args.func(args) == 0
    out = TalkingRepr.load(tmp_path / "out.npz")
    assert out.num_frames == talking.num_frames
    assert float(out.head_pose[..., 2].abs().max()) <= 1.0
    assert torch.allclose(out.head_pose[:, 60, 1], torch.tensor(5.0))
    assert blink_rate(out)[0] == pytest.approx(40.0)         # 3 s at 30/min: round(1.5) = 2 blinks
    assert load_curves(tmp_path / "curves.json")["yaw"].shape == (talking.num_frames,)
    assert (tmp_path / "plot.png").stat().st_size > 1000
    bad = parser.parse_args(["edit", str(source), "--head-gain", "wobble=2"])
    with pytest.raises(ValueError, match="--head-gain: unknown name 'wobble'"):
        bad.func(bad)
