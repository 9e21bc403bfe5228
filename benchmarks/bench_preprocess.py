"""Preprocessing speed on CPU: frames/s of decoding, face landmarks, person segmentation and the whole
video -> sample folder pipeline (output frames at 30 fps, 512x512 crops).

Usage: python benchmarks/bench_preprocess.py [--video data/video/may_5s.mp4] [--models DIR] [--fps 30]
(defaults: the shared may_5s.mp4 clip and models from ../shared/data).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moda_core.preprocess import (FaceLandmarks, PersonSegmenter, prepare_video_sample,  # noqa: E402
                                  read_frames)


def timed(label: str, frames: int, run) -> float:
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"{label:<34} {frames:>5} frames {seconds:7.2f} s {frames / seconds:8.1f} frames/s "
          f"{1000 * seconds / frames:7.1f} ms/frame")
    return seconds


def main() -> None:
    data = REPO.parent / "shared" / "data"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=data / "video" / "may_5s.mp4")
    parser.add_argument("--models", type=Path, default=data / "models")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()

    frames = [rgb for _, _, rgb in read_frames(args.video, args.fps)]
    count = len(frames)
    print(f"{args.video.name}: {count} output frames at {args.fps:g} fps, {frames[0].shape[1]}x{frames[0].shape[0]}")

    timed("decode + fps resample (PyAV)", count, lambda: sum(1 for _ in read_frames(args.video, args.fps)))

    def landmarks() -> None:
        with FaceLandmarks(args.models, video=True) as landmarker:
            for k, rgb in enumerate(frames):
                landmarker.detect(rgb, timestamp_ms=int(k * 1000 / args.fps))

    def segmentation() -> None:
        with PersonSegmenter(args.models) as segmenter:
            for rgb in frames:
                segmenter.person_probability(rgb)

    timed("face landmarks (VIDEO mode)", count, landmarks)
    timed("person segmentation", count, segmentation)
    with tempfile.TemporaryDirectory() as tmp:
        total = timed("total: video -> sample folder", count,
                      lambda: prepare_video_sample(args.video, Path(tmp) / "sample", fps=args.fps,
                                                   models_dir=args.models))
        png_mb = sum(p.stat().st_size for p in (Path(tmp) / "sample" / "frames").glob("*.png")) / 2**20
    print(f"total per second of video: {total / (count / args.fps):.2f} s; frames/ on disk {png_mb:.1f} MiB "
          f"({png_mb / count * 1024:.0f} KiB/frame)")


if __name__ == "__main__":
    main()
