"""Peak RSS of `moda prepare video` on a short and a long clip: decoded frames are streamed, so what grows with
the length is only the per-frame landmark tracks (478 points x 3 x 8 bytes and their working copies).

    python benchmarks/bench_prepare_memory.py [--video ../shared/data/video/halfbody_man_20s.mp4]
                                              [--short 20] [--long 180] [--models DIR]

The long clip is the video looped (packets copied, no re-encoding) into a temporary folder; each length runs in
a fresh process. Prints peak RSS, seconds, and the growth per minute of video.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

CHILD = r"""
import json, resource, sys, time
from moda_core.preprocess import prepare_video_sample
start = time.perf_counter()
summary = prepare_video_sample(sys.argv[1], sys.argv[2], models_dir=sys.argv[3], max_seconds=float(sys.argv[4]))
print(json.dumps({"frames": summary.num_frames, "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def looped(video: Path, seconds: float, out: Path) -> Path:
    """``video`` repeated until it lasts at least ``seconds`` (stream copy; each stream's timestamps shifted by
    its own length, so they stay increasing)."""
    with av.open(str(video)) as source:
        length = source.duration / 1e6
        ends: dict[int, int] = {}                   # per stream: last end - first dts, in its time base
        firsts: dict[int, int] = {}
        for packet in source.demux(*[s for s in source.streams if s.type in ("video", "audio")]):
            if packet.dts is not None:
                index = packet.stream.index
                firsts.setdefault(index, packet.dts)
                end = max(packet.pts, packet.dts) + (packet.duration or 0) - firsts[index]
                ends[index] = max(ends.get(index, 0), end)
    loops = max(1, int(-(-seconds // length)))
    with av.open(str(out), "w") as target:
        streams = {}
        for k in range(loops):
            with av.open(str(video)) as source:
                kept = [s for s in source.streams if s.index in ends]
                for stream in kept:
                    if stream.index not in streams:
                        streams[stream.index] = target.add_stream_from_template(stream)
                for packet in source.demux(*kept):
                    if packet.dts is None:
                        continue
                    shift = k * ends[packet.stream.index]
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = streams[packet.stream.index]
                    target.mux(packet)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DATA / "video" / "halfbody_man_20s.mp4")
    parser.add_argument("--short", type=float, default=20.0, help="seconds of the short run")
    parser.add_argument("--long", type=float, default=180.0, help="seconds of the long run")
    parser.add_argument("--models", type=Path, default=DATA / "models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = looped(args.video, args.long, Path(tmp) / "long.mp4")
        runs = {}
        for label, seconds in (("short", args.short), ("long", args.long)):
            out = subprocess.run([sys.executable, "-c", CHILD, str(clip), str(Path(tmp) / label), str(args.models),
                                  str(seconds)], check=True, capture_output=True, text=True, cwd=REPO)
            runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
            run = runs[label]
            print(f"{label:5s} {seconds:6.0f} s of video: {run['frames']:5d} frames, peak RSS {run['peak_mb']:7.0f} MB,"
                  f" {run['seconds']:6.1f} s")
    growth = (runs["long"]["peak_mb"] - runs["short"]["peak_mb"]) / ((args.long - args.short) / 60)
    print(f"growth: {growth:.0f} MB per minute of video ({growth * 1024 / (30 * 60):.0f} KB per 30-fps frame)")


if __name__ == "__main__":
    main()
