"""Peak RSS of `animate` for short vs long audio (tiny random networks): memory must not grow with length.

    python benchmarks/bench_streaming_memory.py [--short 10] [--long 60] [--output-size 512]

Each length runs in a fresh process; the speech sample is looped to the length. Target: peaks within 20 %.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, tempfile, time
import numpy as np, torch
from moda_core.bench import build_models
from moda_core.pipeline import AnimateOptions, animate
from moda_core.preprocess import load_audio
from moda_core.subject import Subject

seconds, output_size, samples = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
models = build_models("tiny")
subject = Subject.load(sys.argv[4])
speech, rate = load_audio(samples + "/speech.wav")
wave = np.resize(speech, int(seconds * rate))
start = time.perf_counter()
with tempfile.TemporaryDirectory() as folder:
    result = animate(models, wave, subject, folder + "/out.mp4", AnimateOptions(output_size=output_size))
print(json.dumps({"frames": result.frames, "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=10.0)
    parser.add_argument("--long", type=float, default=60.0)
    parser.add_argument("--output-size", type=int, default=512)
    args = parser.parse_args()
    samples = Path(__file__).resolve().parents[1] / "samples"
    subject_file = Path("/tmp/moda_bench_subject.safetensors")
    from moda_core.preprocess import subject_from_photo
    subject_from_photo(samples / "portrait.jpg", models_dir=samples / "models")[0].save(subject_file)
    results = {}
    for seconds in (args.short, args.long):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(seconds), str(args.output_size), str(samples),
                              str(subject_file)], capture_output=True, text=True, check=True)
        results[seconds] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[seconds]
        print(f"{seconds:6.1f} s audio: {r['frames']:5d} frames, {r['seconds']:6.1f} s animate, "
              f"{time.perf_counter() - started:6.1f} s process, peak RSS {r['peak_rss_mb']:7.1f} MB")
    ratio = results[args.long]["peak_rss_mb"] / results[args.short]["peak_rss_mb"]
    print(f"peak RSS ratio {args.long:g} s / {args.short:g} s = {ratio:.3f} "
          f"(target < 1.20: {'met' if ratio < 1.2 else 'NOT met'})")


if __name__ == "__main__":
    main()
