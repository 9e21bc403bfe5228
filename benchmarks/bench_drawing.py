"""Condition-image drawing speed: ms per 512x512 frame on one core (target < 5 ms).

    python benchmarks/bench_drawing.py [--frames 300]
"""
from __future__ import annotations

import argparse
import time

import torch

torch.set_num_threads(1)

from moda_core.drawing import draw_condition_images  # noqa: E402
from moda_core.geometry import canonical_to_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    import cv2
    cv2.setNumThreads(1)
    from pathlib import Path

    from moda_core.preprocess import subject_from_photo
    samples = Path(__file__).resolve().parents[1] / "samples"
    subject, _ = subject_from_photo(samples / "portrait.jpg", models_dir=samples / "models")
    template = subject.template.to(torch.float64)          # a real face mesh: realistic edge lengths
    pose = subject.mean_head_pose.to(torch.float64).expand(args.frames, -1).clone()
    pose[:, 0] += torch.linspace(-10, 10, args.frames, dtype=torch.float64)
    face = canonical_to_image(template.expand(args.frames, -1, -1), pose)[..., :2]
    torso = canonical_to_image(subject.mean_torso.to(torch.float64).expand(args.frames, -1, -1), pose)[..., :2]
    draw_condition_images(face[:5], torso[:5])                           # warm-up
    for label, kwargs in [("uint8", {"as_uint8": True}), ("float 0..1", {})]:
        start = time.perf_counter()
        draw_condition_images(face, torso, **kwargs)
        per_frame = (time.perf_counter() - start) / args.frames * 1000
        print(f"drawing {label:10s}: {per_frame:6.2f} ms/frame on 1 thread ({args.frames} frames, 512x512); "
              f"target < 5 ms: {'met' if per_frame < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
