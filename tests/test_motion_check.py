"""The motion check of trained MODA weights (moda_core.motion_check): measured, stored, and said when loaded."""
import torch

from moda_core.checkpoints import load_model, read_metadata, save_model
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.motion_check import MotionCheck, MotionFigures, motion_warning, record_motion_check

from test_train_common import _seeded, sample, sample_dir  # noqa: F401  (fixtures)


def test_an_untrained_moda_is_flat_next_to_its_clip_and_the_file_says_so(sample, tmp_path, capsys):
    path = save_model(MODANet(MODAConfig.tiny()), tmp_path / "moda.safetensors", "moda")
    before = load_model(path).state_dict()
    check = record_motion_check(path, sample.audio, sample.subject, sample.repr, steps=0, seeds=2)
    clip, model = check.clip, check.model
    assert clip.yaw_range > 1.0 and clip.spread > 0.1                    # the real clip moves
    assert model.yaw_range < 0.5 * clip.yaw_range and 0 <= model.spread < 0.01 * clip.spread
    flat = check.flat()
    assert any(item.startswith("yaw range") for item in flat) and any("diversity" in item for item in flat)
    assert "flatter than the clip" in check.summary()

    assert MotionCheck.from_metadata(read_metadata(path)) == check                  # stored with the weights
    after = load_model(path).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)                     # weights untouched
    warning = motion_warning(path)
    assert "flatter than its training clip after 0 training steps" in warning and "--blink-rate" in warning

    from moda_core.cli.animate import warn_flat_motion
    warn_flat_motion(tmp_path)
    assert "moda: warning:" in capsys.readouterr().err


def test_weights_as_lively_as_their_clip_or_without_a_check_give_no_warning(tmp_path):
    figures = MotionFigures(blinks_per_min=20, yaw_range=6, pitch_range=5, roll_range=9, spread=5)
    lively = MotionCheck(figures, MotionFigures(24, 9, 7, 14, 5.2), steps=3000)
    assert lively.flat() == [] and "within 50 %" in lively.summary()
    net = MODANet(MODAConfig.tiny())
    plain = save_model(net, tmp_path / "plain.safetensors", "moda")
    checked = save_model(net, tmp_path / "checked.safetensors", "moda", extra_metadata=lively.to_metadata())
    assert motion_warning(plain) is None and motion_warning(checked) is None
    blinkless = MotionCheck(MotionFigures(0, 6, 5, 9, 5), lively.clip)
    assert blinkless.flat() == ["blinks 0/min (clip 24)"]
    assert MotionCheck.from_metadata({"motion_check": "not json"}) is None


def test_moda_train_cli_records_the_check(sample_dir, tmp_path, capsys):
    from moda_core.cli import main

    assert main(["train", "moda", str(sample_dir), "--out", str(tmp_path), "--preset", "tiny", "--steps", "2",
                 "--window", "30", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "moda train moda: motion on the clip's audio:" in out
    check = MotionCheck.from_metadata(read_metadata(tmp_path / "moda.safetensors"))
    assert check is not None and check.steps in (1, 2) and check.clip.yaw_range > 1.0     # steps of the best weights
    assert ("moda: warning:" in err) == bool(check.flat())
