"""Keep MediaPipe's / TFLite's native info and warning lines off the terminal.

MediaPipe (absl logging) and TFLite write lines such as ``W0000 00:00:... face_landmarker_graph.cc:181] ...`` and
``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to file descriptor 2; no environment
variable turns them off in current MediaPipe. :func:`filtered_native_stderr` routes descriptor 2 through a
pipe whose reader drops exactly those lines and forwards everything else (Python messages, tqdm bars, native
errors) unchanged. The reader is a small child process (standard library only), not a thread: a native fatal
error (``F...] Check failed``) followed by ``abort()`` still reaches the terminal, and native code writing a lot
while holding the GIL cannot block on a full pipe waiting for a Python thread.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys

_NOISE_STARTS = (b"WARNING: Logging before InitGoogle()", b"INFO: Created TensorFlow Lite",
                 b"INFO: Initialized TensorFlow Lite")
# absl/glog info (I) and warning (W) lines and TFLite's INFO lines; errors (E) and fatal (F) lines pass
NATIVE_NOISE = re.compile(rb"(?:[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] |"
                          + b"|".join(map(re.escape, _NOISE_STARTS)) + b")")


def _may_become_noise(partial: bytes) -> bool:
    """Whether an unfinished line could still turn out to be a native log line (TFLite writes in pieces)."""
    return bool(NATIVE_NOISE.match(partial) or re.fullmatch(rb"[IW]\d{0,4}(?: [\d:.]*(?: +\d*)?)?", partial)
                or any(start.startswith(partial) or partial.startswith(start[:6]) for start in _NOISE_STARTS))


def quiet_native_env() -> None:
    """Environment settings older MediaPipe/TensorFlow builds honour (set before they are imported)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _without_noise(piece: bytes) -> bytes:
    """A line without the native log line in it (which may follow an unfinished progress bar)."""
    found = NATIVE_NOISE.search(piece)
    return piece if found is None else piece[:found.start()]


def _filter_process_main() -> None:
    """The reader process: standard input (the pipe) -> filtered -> standard output (the real stderr) until every
    writer has closed the pipe. Ctrl-C and SIGTERM reach the whole process group: the reader ignores them and
    ends with the pipe, so nothing written before the command stopped is lost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _copy_filtered(0, 1)
    except OSError:                                    # the terminal went away: nothing left to show
        pass


def _copy_filtered(read_fd: int, out_fd: int) -> None:
    pending = b""
    while chunk := os.read(read_fd, 65536):
        pieces = re.split(rb"(?<=[\n\r])", pending + chunk)
        pending = b""
        if pieces and not pieces[-1].endswith((b"\n", b"\r")) and _may_become_noise(pieces[-1]):
            pending = pieces.pop()                     # a native line cut in pieces: wait for its end
        kept = b"".join(_without_noise(p) for p in pieces)
        if kept:
            os.write(out_fd, kept)
    if pending:
        os.write(out_fd, pending)


@contextlib.contextmanager
def filtered_native_stderr():
    """Within the block, descriptor 2 passes through the filter; restored afterwards (the reader process drains
    what is left and ends once every writer, worker processes included, has closed the pipe).

    ``sys.stderr`` keeps writing to the terminal itself (so tqdm still sees a TTY and Python's messages are not
    delayed); only what native code writes to descriptor 2 goes through the filter.
    """
    python_stderr = sys.stderr
    script = os.path.abspath(__file__)
    saved = _dup_stderr(python_stderr) if sys.executable and os.path.isfile(script) else None
    if saved is None:                                  # no real stderr (e.g. embedded) or no script to run
        yield
        return
    read_fd, write_fd = os.pipe()
    try:
        reader = subprocess.Popen([sys.executable, "-I", "-S", script], stdin=read_fd,
                                  stdout=saved, stderr=subprocess.DEVNULL, close_fds=True)
    except (OSError, ValueError):                      # no interpreter to start: leave stderr as it is
        for fd in (read_fd, write_fd, saved):
            os.close(fd)
        yield
        return
    os.close(read_fd)
    direct = open(os.dup(saved), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                  errors="backslashreplace")
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stderr = direct
    try:
        yield
    finally:
        sys.stderr = python_stderr
        direct.close()
        os.dup2(saved, 2)                              # closes the last write end we hold: the reader sees EOF
        os.close(saved)
        try:
            reader.wait(timeout=2.0)                   # (worker processes may still hold one: do not wait long)
        except subprocess.TimeoutExpired:
            pass


def _dup_stderr(python_stderr) -> int | None:
    try:
        python_stderr.flush()
        return os.dup(2)
    except (OSError, ValueError, AttributeError):
        return None


if __name__ == "__main__":
    _filter_process_main()
