"""Reading video frames with PyAV, resampled in time to a target frame rate.

Resampling picks, for output frame ``k`` at time ``k / fps``, the source frame nearest in time (frames are
repeated or dropped, like FFmpeg's ``fps`` filter); the output covers the source duration, so it has
``round(duration * fps)`` frames (+-1).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from moda_core.preprocess.errors import PreprocessError, ffmpeg_message


@dataclass(frozen=True)
class VideoInfo:
    """Container facts: ``fps`` of the video stream, ``duration`` in seconds (frame count / fps)."""

    path: Path
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    has_audio: bool


def _open(path: Path):
    if not path.is_file():
        raise PreprocessError(f"video file not found: {path}")
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError) as err:
        advice = ("The file is damaged or not really mp4 (maybe renamed): export it again as mp4 (H.264)."
                  if path.suffix.lower() == ".mp4" else "Convert it to mp4 (H.264).")
        raise PreprocessError(f"cannot open video {path}: {ffmpeg_message(err)}. {advice}") from err
    if not container.streams.video:
        container.close()
        raise PreprocessError(f"{path} has no video stream")
    return container


def _frame_rate(stream, path: Path) -> float:
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if fps <= 0:
        raise PreprocessError(f"{path}: the video stream has no frame rate")
    return fps


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the stream header of ``path`` (no decoding)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = _frame_rate(stream, path)
        frames = stream.frames
        if not frames:
            seconds = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
            frames = int(round(seconds * fps))
        return VideoInfo(path, stream.codec_context.width, stream.codec_context.height, fps, int(frames),
                         frames / fps, bool(container.streams.audio))


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def read_frames(path: str | os.PathLike, fps: float,
                max_seconds: float | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(output_index, source_index, rgb)`` with ``rgb`` uint8 ``[H, W, 3]`` (C-contiguous).

    Output frames are at ``fps``; ``max_seconds`` stops after ``round(max_seconds * fps)`` output frames.
    """
    path = Path(path)
    limit = None if max_seconds is None else max(1, int(round(max_seconds * fps)))
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_fps = _frame_rate(stream, path)
        start, previous, rgb, k = None, None, None, 0     # previous: (time, source index, av frame)
        try:
            for source_index, frame in enumerate(container.decode(stream)):
                time = frame.time if frame.time is not None else source_index / source_fps
                start = time if start is None else start
                time -= start
                if previous is not None:
                    while k / fps < (previous[0] + time) / 2:
                        if limit is not None and k >= limit:
                            return
                        rgb = _rgb(previous[2]) if rgb is None else rgb      # dropped frames are never converted
                        yield k, previous[1], rgb
                        k += 1
                previous, rgb = (time, source_index, frame), None
            if previous is None:
                raise PreprocessError(f"{path} contains no video frames")
            total = max(k, int(round((previous[0] + 1.0 / source_fps) * fps)))
            total = total if limit is None else min(total, limit)
            if k < total:
                rgb = _rgb(previous[2])
        except av.error.FFmpegError as err:
            raise PreprocessError(f"cannot decode video {path} (frame {k}): {ffmpeg_message(err)}") from err
        for k in range(k, total):
            yield k, previous[1], rgb
