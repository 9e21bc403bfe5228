"""Checks every sub-command runs before heavy imports or work: output paths, input files, device; SIGTERM.

Everything here imports only the standard library, except :func:`check_device` (torch), so a wrong extension
or a missing file is reported at once. Commands call :func:`check_output_folder` (which creates folders) after
every other check, so a rejected command leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path


class ArgumentError(ValueError):
    """A command-line argument cannot work; the message names the option and says what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, systemd, job managers) turned into an interrupt, so writers clean up as on Ctrl-C."""


def check_output_file(path: Path | None, option: str = "--out", suffixes: tuple[str, ...] = (".mp4",)) -> None:
    """``path`` must end in one of ``suffixes`` and must not be a folder (its folder: :func:`check_output_folder`)."""
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise ArgumentError(f"{option} must end in {' or '.join(suffixes)}, got {path}")
    if path.is_dir():
        raise ArgumentError(f"{option} {path} is a folder; give a file name ending in {suffixes[0]}")


def check_output_folder(folder: Path | None, option: str = "--out") -> None:
    """Create ``folder`` (with parents) and probe it with a real write: permissions, read-only mounts and full
    disks show here, before any work, rather than when the result is saved."""
    if folder is None:
        return
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ArgumentError(f"{option}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".moda-write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ArgumentError(f"{option}: cannot write to the folder {folder} ({err.strerror or err}); choose a "
                            "writable folder") from None


def check_input_file(path: Path | None, option: str) -> None:
    """``path`` (when given) must be an existing file."""
    if path is None:
        return
    if not path.exists():
        raise ArgumentError(f"{option}: {path} does not exist")
    if path.is_dir():
        raise ArgumentError(f"{option}: {path} is a folder; give a file")


def check_input_folder(path: Path | None, option: str) -> None:
    """``path`` (when given) must be an existing folder."""
    if path is not None and not path.is_dir():
        raise ArgumentError(f"{option}: {path} is not a folder" if path.exists() else
                            f"{option}: folder {path} does not exist")


def check_device(name: str | None, option: str = "--device") -> None:
    """``name`` must be a torch device this torch can use ("auto" and None pass)."""
    if name is None or name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ArgumentError(f"{option} {name!r} is not a torch device; use cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ArgumentError(f"{option} {name}: this torch ({torch.__version__}) was built without CUDA; use "
                                f"{option} cpu or install a CUDA build of torch")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ArgumentError(f"{option} {name}: no CUDA GPU is visible (driver, CUDA_VISIBLE_DEVICES?); use "
                                f"{option} cpu")
        if device.index is not None and device.index >= count:
            raise ArgumentError(f"{option} {name}: only {count} CUDA GPU(s) visible (cuda:0..cuda:{count - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ArgumentError(f"{option} {name}: Apple MPS is not available in this torch/machine; use "
                                f"{option} cpu")
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ArgumentError(f"{option} {name}: this torch cannot use {device.type} devices here; use "
                                f"{option} cpu")


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)     # a second SIGTERM must not cut the clean-up short
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises :class:`Terminated` (a KeyboardInterrupt): temporary files are removed
    and trainers save their state exactly as on Ctrl-C. The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
