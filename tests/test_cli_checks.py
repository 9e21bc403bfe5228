"""The ``moda`` command's newcomer checks: fast argument errors, device and output-folder checks, SIGTERM clean-up,
help texts, output audio rate, quiet MediaPipe, clean PyAV messages, --face-index."""
from __future__ import annotations

import argparse
import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from moda_core.cli import HelpFormatter, build_parser, error_text, main
from moda_core.cli.checks import ArgumentError, check_device
from pipeline_fixtures import tiny_weights  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "av", "mediapipe", "scipy")


@pytest.fixture(scope="module")
def subject_file(data_dir, tmp_path_factory) -> Path:
    """obama.jpg prepared once: the subprocess tests then skip MediaPipe."""
    from moda_core.preprocess import subject_from_photo

    subject, _ = subject_from_photo(data_dir / "portraits" / "obama.jpg", models_dir=data_dir / "models")
    return subject.save(tmp_path_factory.mktemp("subject") / "obama.safetensors")


@pytest.fixture(scope="module")
def short_speech(data_dir, tmp_path_factory) -> Path:
    """The first 0.5 s of a 44.1 kHz version of zh_news.wav (and its first 3 s beside it as speech3s.wav)."""
    from scipy.io import wavfile

    from moda_core.preprocess import load_audio

    wave, _ = load_audio(data_dir / "audio" / "zh_news.wav", target_rate=44100)
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    wavfile.write(path, 44100, wave[:22050])
    wavfile.write(path.with_name("speech3s.wav"), 44100, wave[:3 * 44100])
    return path


def _run_cli(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moda_core.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# ------------------------------------------------------------------------------------ fast argument errors
@pytest.mark.parametrize("argv, message", [
    (["animate", "--image", "{portrait}", "--audio", "{audio}", "--out", "{tmp}/x.avi"], "--out must end in .mp4"),
    (["animate", "--image", "{portrait}", "--audio", "{tmp}/none.wav", "--out", "{tmp}/new/x.mp4"],
     "--audio: {tmp}/none.wav does not exist"),
    (["animate", "--subject", "{portrait}", "--face-index", "1", "--audio", "{audio}", "--out", "{tmp}/new/x.mp4"],
     "--face-index picks a face in --image"),
    (["animate", "--image", "{portrait}", "--audio", "{audio}", "--out", "{tmp}/new/x.mp4", "--save-repr",
      "{tmp}/r.json"], "--save-repr must end in .safetensors or .npz"),
    (["animate", "--image", "{portrait}", "--audio", "{audio}", "--weights", "{tmp}/w", "--out", "{tmp}/new/x.mp4"],
     "--weights: folder {tmp}/w does not exist; make weights with `moda quickstart --out {tmp}/w`"),
    (["render", "--repr", "{tmp}/r.npz", "--subject", "{portrait}", "--out", "{tmp}/new/x.mp4"],
     "--repr: {tmp}/r.npz does not exist"),
    (["preview", "--image", "{portrait}", "--out", "{tmp}/x.gif"], "--out must end in .mp4"),
    (["prepare", "photo", "{portrait}", "--out", "{tmp}/new/s.pt"], "--out must end in .safetensors"),
    (["train", "renderer", "{tmp}/no-sample", "--out", "{tmp}/new"], "SAMPLES: folder {tmp}/no-sample does not exist"),
    (["convert", "{tmp}/MODA.pkl"], "SRC: {tmp}/MODA.pkl does not exist"),
])
def test_argument_errors_come_before_heavy_imports(argv, message, tmp_path, data_dir):
    """Rejected in a fresh process without importing torch, OpenCV, PyAV or MediaPipe; nothing is created."""
    fill = {"portrait": str(data_dir / "portraits" / "obama.jpg"), "audio": str(data_dir / "audio" / "zh_news.wav"),
            "tmp": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    code = ("import sys\nfrom moda_core.cli import main\n"
            f"code = main({argv!r})\n"
            f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.split("\n")[-2] == "2 []", result.stdout + result.stderr
    assert message.format(**fill) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1                 # one line, no traceback
    assert not (tmp_path / "new").exists()


def test_package_names_load_lazily_but_work_as_before():
    code = r"""
import pickle, sys
import moda_core
assert "torch" not in sys.modules
assert {"Subject", "TalkingRepr"} <= set(dir(moda_core))
assert moda_core.subject.Subject.__name__ == "Subject"    # the submodule, reachable as when it loaded eagerly
from moda_core import *
assert Subject is moda_core.subject.Subject and ReprError is moda_core.repr.ReprError
error = pickle.loads(pickle.dumps(SubjectError("bad subject")))
assert type(error) is SubjectError and str(error) == "bad subject"
try:
    moda_core.no_such_name
except AttributeError as err:
    assert "no_such_name" in str(err)
else:
    raise AssertionError("no AttributeError")
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout == "ok\n", result.stderr


def test_error_text_drops_errno_prefixes():
    assert error_text(PermissionError(errno.EACCES, "Permission denied", "/x/y.mp4")) == "Permission denied: /x/y.mp4"
    assert error_text(ValueError("plain")) == "plain"


# ------------------------------------------------------------------------------------ device
def test_device_check_messages(monkeypatch):
    check_device("cpu")
    check_device("auto")
    check_device(None)
    with pytest.raises(ArgumentError, match="'gpu' is not a torch device"):
        check_device("gpu")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    with pytest.raises(ArgumentError, match=r"--device cuda: this torch \(.*\) was built without CUDA; use --device"):
        check_device("cuda")
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ArgumentError, match="no CUDA GPU is visible"):
        check_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ArgumentError, match=r"only 1 CUDA GPU\(s\) visible"):
        check_device("cuda:2")


def _forbid_work(monkeypatch):
    """Any model loading, photo preparation or training start fails the test."""
    import moda_core.pipeline
    import moda_core.preprocess.photo
    import moda_core.train.loop

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(moda_core.pipeline.MODAModels, "load", forbidden)
    monkeypatch.setattr(moda_core.preprocess.photo, "subject_from_photo", forbidden)
    monkeypatch.setattr(moda_core.train.loop, "run_training", forbidden)


@pytest.mark.parametrize("command", [
    ["animate", "--image", "{portrait}", "--audio", "{audio}", "--out", "{tmp}/out/x.mp4"],
    ["render", "--repr", "{audio}", "--subject", "{portrait}", "--out", "{tmp}/out/x.mp4"],
    ["train", "renderer", "{tmp}", "--out", "{tmp}/out"],
    ["train", "avatar", "{audio}", "--out", "{tmp}/out"],
    ["quickstart", "--out", "{tmp}/out"],
    ["bench"],
    ["eval", "--generated-video", "{audio}", "--syncnet", "{audio}"],
])
def test_every_device_option_is_checked_first(command, tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    _forbid_work(monkeypatch)
    fill = {"portrait": str(data_dir / "portraits" / "obama.jpg"), "audio": str(data_dir / "audio" / "zh_news.wav"),
            "tmp": str(tmp_path)}
    assert main([a.format(**fill) for a in command] + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert f"moda {command[0]}: error: --device cuda: this torch" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ output folder
def test_read_only_output_folder_is_found_before_any_work(tmp_path, data_dir, monkeypatch, capsys):
    """A read-only mount (root ignores chmod, so the failing write is simulated at the system call)."""
    blocked = tmp_path / "mount"
    blocked.mkdir()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == blocked:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(blocked))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    _forbid_work(monkeypatch)
    portrait, audio = data_dir / "portraits" / "obama.jpg", data_dir / "audio" / "zh_news.wav"
    for argv in (["animate", "--image", str(portrait), "--audio", str(audio), "--out", str(blocked / "talk.mp4")],
                 ["prepare", "photo", str(portrait), "--out", str(blocked / "s.safetensors")],
                 ["train", "faco", str(tmp_path), "--out", str(blocked)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"error: --out: cannot write to the folder {blocked} (Read-only file system)" in err
    assert list(blocked.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc (a folder nobody can create files in)")
def test_truly_unwritable_folder(tmp_path, data_dir, capsys):
    assert main(["preview", "--image", str(data_dir / "portraits" / "obama.jpg"), "--out", "/proc/talk.mp4"]) == 2
    assert "error: --out: cannot write to the folder /proc" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ SIGTERM
def test_sigterm_mid_write_leaves_no_temporary_file(tiny_weights, subject_file, short_speech, tmp_path):  # noqa: F811
    out_dir = tmp_path / "videos"
    out_dir.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "moda_core.cli", "animate", "--subject", str(subject_file),
         "--audio", str(short_speech.with_name("speech3s.wav")),
         "--weights", str(tiny_weights), "--out", str(out_dir / "talk.mp4"), "--batch-size", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out_dir.glob(".talk.*.tmp.mp4")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the video was never started"
        time.sleep(0.02)
    time.sleep(0.3)                                                  # some frames encoded
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "moda animate: stopped by SIGTERM" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_sigterm_handler_is_restored_after_main(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["info", "--tiny"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------------------------ help texts
def _options(parser: argparse.ArgumentParser, name: str = "moda"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif not isinstance(action, argparse._HelpAction):
            yield name, parser, action


def test_every_option_has_help_and_shows_its_default():
    seen = set()
    for command, parser, action in _options(build_parser()):
        seen.add(command)
        label = f"{command} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and len(action.help) > 8, f"{label} has no help text"
        shown = HelpFormatter(command)._get_help_string(action)
        if action.option_strings and action.default not in (None, False, []):
            assert "default" in shown.lower(), f"{label}: default {action.default!r} not shown"
        assert parser.formatter_class is HelpFormatter, f"{command} does not use the shared formatter"
        assert "usage: " + command in parser.format_help()          # every page renders (e.g. '%' in help texts)
    assert {"moda animate", "moda edit", "moda bench", "moda eval", "moda protocol", "moda train renderer"} <= seen
    text = build_parser()._subparsers._group_actions[0].choices["edit"].format_help()
    assert "--freeze-hold {first,mean,rest,value}" in text and "(default: first)" in text


# ------------------------------------------------------------------------------------ audio, messages, logs
@pytest.mark.parametrize("rate, channels, expected_rate", [(16000, 1, 48000), (44100, 2, 44100), (22050, 3, 48000)])
def test_video_audio_keeps_44_1_and_48_khz_and_level(rate, channels, expected_rate, tmp_path):
    import av

    from moda_core.video import VideoWriter

    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    wave = tone if channels == 1 else np.stack([tone] * channels)
    with VideoWriter(tmp_path / "a.mp4", 25, audio=(wave, rate)) as writer:
        writer.write(np.zeros((25, 32, 32, 3), np.uint8))
    with av.open(str(tmp_path / "a.mp4")) as container:
        stream = container.streams.audio[0]
        decoded = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1)
        assert (stream.rate, stream.channels) == (expected_rate, 2 if channels == 2 else 1)
    middle = decoded[:, expected_rate // 4: 3 * expected_rate // 4]
    assert np.allclose(middle.std(axis=1) * np.sqrt(2), 0.3, atol=0.01)      # no -3 dB mono-to-stereo loss


def test_animate_muxes_the_source_audio_rate(tiny_weights, subject_file, short_speech, tmp_path):  # noqa: F811
    import av

    out = tmp_path / "talk.mp4"
    assert main(["animate", "--subject", str(subject_file), "--audio", str(short_speech), "--weights",
                 str(tiny_weights), "--output-size", "0", "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        assert container.streams.audio[0].rate == 44100
        assert (container.streams.video[0].width, container.streams.video[0].height) == (64, 64)   # renderer's


def test_default_output_size_is_512(tiny_weights, subject_file, short_speech, tmp_path):  # noqa: F811
    from moda_core.preprocess.video import probe_video

    assert main(["animate", "--subject", str(subject_file), "--audio", str(short_speech), "--weights",
                 str(tiny_weights), "--out", str(tmp_path / "t.mp4")]) == 0
    info = probe_video(tmp_path / "t.mp4")
    assert (info.width, info.height) == (512, 512)                  # tiny 64 px renderer, upscaled


def test_pyav_errors_are_plain_and_advice_fits_the_file(tmp_path):
    from moda_core.preprocess import PreprocessError, load_audio
    from moda_core.preprocess.video import probe_video

    for name in ("speech.wav", "talk.mp4", "speech.xyz"):
        (tmp_path / name).write_bytes(b"not media at all" * 64)
    with pytest.raises(PreprocessError) as wav:
        load_audio(tmp_path / "speech.wav")
    assert "[Errno" not in str(wav.value) and "Convert it to wav" not in str(wav.value)
    assert "not really wav" in str(wav.value)
    with pytest.raises(PreprocessError, match="Convert it to wav, mp3 or m4a") as other:
        load_audio(tmp_path / "speech.xyz")
    assert "[Errno" not in str(other.value)
    with pytest.raises(PreprocessError) as video:
        probe_video(tmp_path / "talk.mp4")
    assert "[Errno" not in str(video.value) and "not really mp4" in str(video.value)


def test_native_log_lines_are_filtered_and_the_rest_passes():
    code = r"""
import os, sys
from moda_core.cli.native_logs import filtered_native_stderr
terminal = os.fstat(2)
with filtered_native_stderr():
    inside = os.fstat(sys.stderr.fileno())       # Python's stderr stays the terminal (tqdm still sees a TTY)
    assert (inside.st_dev, inside.st_ino) == (terminal.st_dev, terminal.st_ino)
    print("moda: warning: 2 faces found", file=sys.stderr)
    sys.stderr.write("\rrender:  50%|#####     | 5/10"); sys.stderr.flush()
    os.write(2, b"WARNING: Logging before InitGoogle() is written to STDERR\n")
    os.write(2, b"W0000 00:00:1796306445.564569   12769 face_landmarker_graph.cc:181] Sets acceleration.\n")
    os.write(2, b"INFO: ")
    os.write(2, b"Created TensorFlow Lite XNNPACK delegate for CPU.")
    os.write(2, b"\n")
    os.write(2, b"E0000 00:00:1796306445.6   12770 graph.cc:9] a real error\n")
    os.write(2, b"render: 60%")
    os.write(2, b"I0000 00:00:1796306445.7   12771 gl_context.cc:357] GL version: 3.2\n")
print("done")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=30)
    assert result.stdout == b"done\n", result.stderr
    assert result.stderr == (b"moda: warning: 2 faces found\n\rrender:  50%|#####     | 5/10"
                             b"E0000 00:00:1796306445.6   12770 graph.cc:9] a real error\nrender: 60%")


@pytest.mark.skipif(sys.platform == "win32", reason="abort() and libc write are POSIX here")
def test_native_fatal_error_before_abort_and_big_writes_under_the_gil_reach_the_terminal():
    # a thread reader lost the F line (the process died first) and deadlocked on > 64 KiB written with the GIL held
    code = r"""
import ctypes, os, sys
from moda_core.cli.native_logs import filtered_native_stderr
with filtered_native_stderr():
    data = b"E0000 big error\n" * 8000
    ctypes.PyDLL(None).write(2, data, len(data))                 # PyDLL keeps the GIL during the call
    os.write(2, b"F0000 00:00:1.0   12 graph.cc:9] Check failed: fatal\n")
    os.abort()
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.count(b"E0000 big error\n") == 8000
    assert result.stderr.endswith(b"F0000 00:00:1.0   12 graph.cc:9] Check failed: fatal\n")

def test_prepare_photo_stderr_has_no_mediapipe_lines(tmp_path, data_dir):
    result = _run_cli(["prepare", "photo", str(data_dir / "portraits" / "obama.jpg"), "--models",
                       str(data_dir / "models"), "--out", str(tmp_path / "s.safetensors")])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "face 1 of 1" in result.stdout


def test_face_index_is_offered_and_named_in_warnings(tmp_path, data_dir, capsys):
    from PIL import Image

    left = Image.open(data_dir / "portraits" / "obama.jpg").convert("RGB").resize((512, 512))
    right = Image.open(data_dir / "portraits" / "macron.png").convert("RGB").resize((512, 512))
    pair = Image.new("RGB", (1024, 512))
    pair.paste(left, (0, 0))
    pair.paste(right, (512, 0))
    pair.save(tmp_path / "pair.png")
    common = ["--models", str(data_dir / "models"), "--seconds", "0.2"]
    assert main(["preview", "--image", str(tmp_path / "pair.png"), *common, "--out", str(tmp_path / "a.mp4")]) == 0
    captured = capsys.readouterr()
    assert "2 faces found" in captured.err and "Pass --face-index to choose another" in captured.err
    assert "warning" not in captured.out
    assert main(["preview", "--image", str(tmp_path / "pair.png"), "--face-index", "1", *common, "--out",
                 str(tmp_path / "b.mp4")]) == 0
    assert "faces found" not in capsys.readouterr().err
    assert main(["preview", "--image", str(tmp_path / "pair.png"), "--face-index", "5", *common, "--out",
                 str(tmp_path / "c.mp4")]) == 2
    assert "--face-index 5 is out of range" in capsys.readouterr().err


def test_readme_python_snippet_runs_from_the_repository_root(tiny_weights, tmp_path, monkeypatch):  # noqa: F811
    import re

    from moda_core.preprocess.video import probe_video

    snippet = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S).group(1)
    assert '"samples/portrait.jpg"' in snippet and '"samples/speech.wav"' in snippet
    out = tmp_path / "talk.mp4"
    code = snippet.replace('"out/quickstart"', repr(str(tiny_weights))).replace('"out/talk.mp4"', repr(str(out)))
    code = re.sub(r"(wave, _ = load_audio\(.*\)\n)", r"\1wave = wave[:8000]  # 0.5 s keeps the test fast\n", code)
    assert "wave[:8000]" in code
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    info = probe_video(out)
    assert (info.width, info.height, info.has_audio) == (512, 512, True)


# ------------------------------------------------------------------------------------ training budget estimate
def test_budget_estimate_says_what_fits_and_suggests_a_smaller_network():
    from moda_core.train.loop import LoopConfig, budget_estimate

    paper_cpu = LoopConfig(max_minutes=30, max_epochs=100, slow_hint="try --preset small")
    line = budget_estimate("renderer", 30.0, 500, 2, 40.0, paper_cpu)
    # (1800 s - 40 s) / 30 s per step = 58 steps, 0.12 of an epoch of 500 steps
    assert line.startswith("renderer: 30.00 s per step here: the budget leaves about 58 more steps (0.12 epochs")
    assert line.endswith("in about 29 min. try --preset small")
    fits = budget_estimate("renderer", 0.01, 500, 2, 1.0, paper_cpu)       # the epochs budget is reached first
    assert "about 49998 more steps (100 epochs of 500 steps) in about 8 min" in fits
    assert "try --preset small" not in fits
    few = budget_estimate("renderer", 30.0, 500, 2, 40.0, LoopConfig(max_steps=10, slow_hint="try --preset small"))
    assert "about 8 more steps" in few and "try" not in few            # a steps budget the user chose: no advice
    days = budget_estimate("moda", 5.0, 100, 2, 1.0, LoopConfig(max_epochs=200, slow_hint="smaller"))
    assert "about 19998 more steps (200 epochs of 100 steps) in about 27.8 h. smaller" in days
    instant = budget_estimate("faco", 0.0, 100, 2, 1.0, paper_cpu)       # a step under the clock's resolution
    assert "about 9998 more steps (100 epochs of 100 steps)" in instant


def test_train_hint_names_the_preset_that_fits():
    from moda_core.cli.train import slow_hint

    parser = build_parser()
    full = parser.parse_args(["train", "renderer", "x", "--out", "y"])
    assert "--preset small (the quickstart's 256 px renderer" in slow_hint(full, "renderer")
    small = parser.parse_args(["train", "renderer", "x", "--out", "y", "--preset", "small"])
    assert "--preset" not in slow_hint(small, "renderer") and "--minutes" in slow_hint(small, "renderer")
    tuned = parser.parse_args(["train", "moda", "x", "--out", "y", "--init", "MODA.safetensors"])
    assert "GPU" in slow_hint(tuned, "moda")
