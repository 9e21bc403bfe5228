"""Streaming H.264 + AAC mp4 writing with PyAV.

Frames are encoded as they arrive, so memory does not grow with the video's length. The file is written
under a temporary name beside the target and renamed only when complete: an error or an interrupt never
leaves a partial mp4 under the final name. With ``background=True`` the 8-bit conversion and the encoding run
in a worker thread (PyAV and numpy release the GIL), overlapping whatever produces the next frames.
"""
from __future__ import annotations

import os
import queue
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from moda_core.fileio import commit, temp_beside

# AAC sample rates kept as they are; any other input rate (e.g. the models' 16 kHz) is encoded at 48 kHz
KEPT_AUDIO_RATES = (44100, 48000)
OUTPUT_AUDIO_RATE = 48000


def output_audio_rate(rate: int) -> int:
    """The rate the mp4's AAC track gets for audio given at ``rate`` Hz."""
    return int(rate) if int(rate) in KEPT_AUDIO_RATES else OUTPUT_AUDIO_RATE


def _to_uint8_frames(frames: torch.Tensor | np.ndarray, quantize: str = "round") -> np.ndarray:
    """[T, H, W, 3] float 0..1 or uint8 -> C-contiguous uint8 numpy; ``quantize="truncate"`` is the authors'
    astype(uint8). Float frames: clamp to 0..1, times 255 (in their own float type), rounded half to even
    (or truncated) -- in numpy, one thread, in place after the first pass."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        frames = frames.float() if frames.is_floating_point() and frames.dtype != torch.float64 else frames
        frames = frames.numpy()
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    scaled = np.clip(frames, 0, 1, out=np.empty(frames.shape, np.result_type(frames.dtype, np.float32)))
    scaled *= 255
    if quantize == "round":
        np.rint(scaled, out=scaled)
    return scaled.astype(np.uint8)


def _audio_layout(wave: np.ndarray) -> str:
    """mono for ``[N]``, ``[1, N]`` and more than two channels (down-mixed), else stereo."""
    wave = np.asarray(wave)
    return "stereo" if wave.ndim == 2 and wave.shape[0] == 2 else "mono"


class VideoWriter:
    """``with VideoWriter(path, fps, audio=(wave, rate)) as w: w.write(frames)``.

    ``frames``: ``[T, H, W, 3]`` RGB, float in 0..1 or uint8, any number per call. ``audio``: mono or
    ``[C, N]`` float waveform in -1..1 and its sample rate; it is trimmed to the video's duration on close and
    encoded as AAC at 44.1 or 48 kHz (kept) or else resampled to 48 kHz (:func:`output_audio_rate`).

    ``background=True``: :meth:`write` checks the frames and queues them (at most ``queue_size`` calls ahead);
    a worker thread converts and encodes them, in order. The caller must not change frames it has written. An
    encoding error is raised by the next :meth:`write` or by :meth:`close`; :meth:`abort` stops the worker.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, audio: tuple[np.ndarray, int] | None = None,
                 crf: int = 18, preset: str = "veryfast", quantize: str = "round", background: bool = False,
                 queue_size: int = 2):
        if quantize not in ("round", "truncate"):
            raise ValueError(f"quantize must be 'round' or 'truncate', got {quantize!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.quantize = quantize
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"output folder {self.path.parent} does not exist")
        if not os.access(self.path.parent, os.W_OK):
            raise PermissionError(f"output folder {self.path.parent} is not writable")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.audio = audio
        self.crf, self.preset = crf, preset
        self.frames_written = 0
        self._container = None
        self._video = None
        self._tmp = temp_beside(self.path)
        self.background = background
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, height: int, width: int) -> None:
        import av

        if height % 2 or width % 2:
            raise ValueError(f"H.264 needs even frame sizes, got {width}x{height}")
        self._container = av.open(self._tmp, mode="w", format="mp4")
        self._video = self._container.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(self.crf), "preset": self.preset}
        if self.audio is not None:
            self._audio_stream = self._container.add_stream("aac", rate=output_audio_rate(self.audio[1]),
                                                            layout=_audio_layout(self.audio[0]))
            self._audio_stream.bit_rate = 128_000

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        if not isinstance(frames, (torch.Tensor, np.ndarray)):
            frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3] RGB, got {list(frames.shape)}")
        if self._container is None:
            self._open(frames.shape[1], frames.shape[2])
        elif (frames.shape[1], frames.shape[2]) != (self._video.height, self._video.width):
            raise ValueError(f"frame size changed from {self._video.width}x{self._video.height} to "
                             f"{frames.shape[2]}x{frames.shape[1]}")
        if not self.background:
            self._encode(frames)
            return
        self._raise_worker_error()
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="moda-video-writer", daemon=True)
            self._worker.start()
        from moda_core.streaming import put_until

        if not put_until(self._queue, frames, self._stop):     # the worker stopped: its error, or an abort
            self._raise_worker_error()
            raise RuntimeError(f"the video writer of {self.path} was stopped")

    def _encode(self, frames: torch.Tensor | np.ndarray) -> None:
        import av

        for frame in _to_uint8_frames(frames, self.quantize):
            self._container.mux(self._video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            self.frames_written += 1

    def _work(self) -> None:
        """The background worker: encode queued frames until ``None`` (close) or a stop (abort, error)."""
        while not self._stop.is_set():
            try:
                frames = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if frames is None:
                return
            try:
                self._encode(frames)
            except BaseException as err:           # noqa: BLE001 - raised in the caller's thread
                self._error = err
                self._stop.set()
                return

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _finish_worker(self) -> None:
        """Wait until every queued frame is encoded; raise the worker's error if it had one."""
        if self._worker is not None:
            from moda_core.streaming import put_until

            put_until(self._queue, None, self._stop)
            self._worker.join()
            self._worker = None
        self._raise_worker_error()

    def _write_audio(self) -> None:
        import av

        wave, rate = self.audio
        wave = np.asarray(wave, dtype=np.float32)
        wave = wave[None] if wave.ndim == 1 else wave
        if wave.shape[0] > 2:
            wave = wave.mean(0, keepdims=True)
        wave = wave[:, : int(round(self.frames_written / float(self.fps) * rate))]
        layout = _audio_layout(wave)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave), format="fltp", layout=layout)
        frame.sample_rate = int(rate)
        resampler = av.AudioResampler(format=self._audio_stream.format.name, layout=layout,
                                      rate=output_audio_rate(rate))
        for resampled in resampler.resample(frame) + resampler.resample(None):
            self._container.mux(self._audio_stream.encode(resampled))
        self._container.mux(self._audio_stream.encode(None))

    def close(self) -> Path:
        """Finish encoding and move the file to its final name."""
        if self._container is None:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}")
        try:
            self._finish_worker()
            self._container.mux(self._video.encode(None))
            if self.audio is not None:
                self._write_audio()
            self._container.close()
            self._container = None
            commit(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop everything written so far (a background worker is stopped first)."""
        if self._worker is not None:
            self._stop.set()
            self._worker.join()
            self._worker = None
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already broken; the temp file is removed below
                pass
            self._container = None
        Path(self._tmp).unlink(missing_ok=True)


def read_video_info(path: str | os.PathLike) -> dict:
    """Frame count, fps, size and audio duration of a video file (for tests and summaries)."""
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        info = {"frames": frames, "fps": float(video.average_rate or 0), "width": video.width,
                "height": video.height, "audio_seconds": None}
    with av.open(str(path)) as container:
        if container.streams.audio:
            samples = sum(f.samples for f in container.decode(container.streams.audio[0]))
            info["audio_seconds"] = samples / container.streams.audio[0].rate
    return info
