"""`moda protocol --renderer warp`: no training, the tracked motion of a clip's last 20 % warps one of its frames."""
import json

import pytest
import torch

from moda_core.cli import main
from moda_core.repr import TalkingRepr
from moda_core.train.protocol import neutral_frame


def test_protocol_warp_on_a_short_clip(data_dir, tmp_path, capsys):
    code = main(["protocol", str(data_dir / "video" / "may_5s.mp4"), "--renderer", "warp", "--seconds", "1.2",
                 "--size", "256", "--out", str(tmp_path / "run"), "--models", str(data_dir / "models"),
                 "--format", "json", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    rows = {row["name"]: row for row in json.loads(out[out.index("{"):])["metrics"]}
    assert list(rows) == ["PSNR", "SSIM", "TCM", "sharpness ratio", "landmark follow"]
    assert all(row["value"] is not None for row in rows.values()), rows
    # the same person in the same crop, moved by its own motion: close to the real frames, on target
    assert rows["PSNR"]["value"] > 20 and 0.6 < rows["SSIM"]["value"] < 1
    assert 0.3 < rows["sharpness ratio"]["value"] < 1.5 and rows["landmark follow"]["value"] < 4
    assert rows["landmark follow"]["details"]["frames"] == 7          # 36 frames at 30 fps, the last 20 %
    run = tmp_path / "run"
    assert (run / "protocol-warp.mp4").is_file() and (run / "sample" / "sample.json").is_file()
    assert "reference = frame" in out


def _repr(gap, openness, yaw):
    """An absolute R of a few frames with the given inner-lip gap, eye opening (px, eyes 10 px wide) and yaw."""
    from moda_core.editing.eyes import _lid_positions
    from moda_core.landmarks import eye_indices, mouth_indices

    frames = len(gap)
    face = torch.zeros(1, frames, 478, 3)
    face[0, :, 14, 1] = torch.tensor(gap)                         # lower inner lip below the upper (point 13)
    eyes = face[:, :, eye_indices()].clone()
    upper, lower, corners = _lid_positions()
    eyes[0, :, lower, 1] = torch.tensor(openness)[:, None, None]
    eyes[0, :, corners[:, 0], 0] = 10.0
    face[:, :, eye_indices()] = eyes
    pose = torch.zeros(1, frames, 7)
    pose[0, :, 0], pose[0, :, 6] = torch.tensor(yaw), 1.0
    return TalkingRepr(mouth=face[:, :, mouth_indices()], eyes=eyes, face=face, head_pose=pose,
                       torso=torch.zeros(1, frames, 18, 3), fps=30)


def test_neutral_frame_prefers_open_eyes_usual_pose_closed_mouth():
    r = _repr(gap=[0.0, 5.0, 1.0, 0.5, 0.2], openness=[0.5, 3.0, 3.0, 3.0, 3.0], yaw=[0, 0, 0, 0, 20])
    # frame 0: mouth shut but eyes closed; frame 4: turned away; of the rest frame 3 has the smallest gap
    assert neutral_frame(r, range(0, 5)) == 3
    assert neutral_frame(r, range(1, 3)) == 2
    with pytest.raises(ValueError, match="dense face"):
        neutral_frame(r.replace(face=None), range(0, 5))
    with pytest.raises(ValueError, match="inside"):
        neutral_frame(r, range(0, 9))
    assert type(neutral_frame(r, range(4, 5))) is int
