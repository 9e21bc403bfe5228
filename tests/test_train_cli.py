"""`moda train` and `moda quickstart` command lines."""
from __future__ import annotations

import pytest

from moda_core.cli import build_parser, main
from test_train_common import _seeded, sample_dir  # noqa: F401  (fixtures)


@pytest.mark.parametrize("argv", [["train", "--help"], ["train", "moda", "--help"], ["train", "faco", "--help"],
                                  ["train", "renderer", "--help"], ["quickstart", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 0
    assert "usage: moda " + argv[0] in capsys.readouterr().out


def test_train_faco_command(sample_dir, tmp_path, capsys):
    code = main(["train", "faco", str(sample_dir), "--out", str(tmp_path), "--preset", "tiny", "--steps", "2",
                 "--window", "16", "--no-progress"])
    assert code == 0
    captured = capsys.readouterr()
    assert "moda train faco: 2 steps" in captured.out
    assert "faco: " in captured.err and "s per step here: the budget leaves about 0 more steps" in captured.err
    assert (tmp_path / "faco.safetensors").is_file() and (tmp_path / "runs" / "faco" / "losses.csv").is_file()


def test_quickstart_reports_missing_inputs(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--video", str(tmp_path / "none.mp4")]) == 2
    err = capsys.readouterr().err
    assert "--video" in err and "none.mp4 does not exist" in err
    assert not (tmp_path / "q").exists()                     # rejected before anything was created
