"""Warp renderer speed: frames/s at 512x512 on one core (target >= 100), with talking motion (head turns up to
+-12 deg, the mouth opening and closing, a blink every second).

    python benchmarks/bench_warp.py [--frames 300] [--size 512] [--repeats 3] [--no-background]
        [--image samples/portrait.jpg]
"""
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)

from moda_core.landmarks import eye_contour_indices, eye_indices, mouth_indices  # noqa: E402
from moda_core.projection import project_repr  # noqa: E402
from moda_core.repr import TalkingRepr  # noqa: E402
from moda_core.warp_renderer import WarpConfig, WarpRenderer, reference_person_mask  # noqa: E402


def talking_motion(subject, frames: int) -> TalkingRepr:
    """R offsets: head sways, the lower lip drops and rises, the upper eyelids close once a second."""
    t = torch.arange(frames, dtype=torch.float32) / 30.0
    head = torch.zeros(1, frames, 7)
    head[0, :, 0] = 12 * torch.sin(2 * np.pi * 0.4 * t)
    head[0, :, 1] = 5 * torch.sin(2 * np.pi * 0.3 * t)
    head[0, :, 2] = 3 * torch.sin(2 * np.pi * 0.2 * t)
    mouth = torch.zeros(1, frames, 40, 3)
    lips = subject.template[torch.from_numpy(mouth_indices())]
    inner_lower = torch.from_numpy(np.isin(mouth_indices(), (95, 88, 178, 87, 14, 317, 402, 318, 324)))
    outer_lower = (lips[:, 1] > lips[:, 1].mean()) & ~inner_lower
    opening = 8 * torch.sin(2 * np.pi * 2.5 * t).clamp(min=0)               # canonical px (eye distance 120)
    mouth[0, :, inner_lower, 1] = opening[:, None]
    mouth[0, :, outer_lower, 1] = 0.6 * opening[:, None]
    eyes = torch.zeros(1, frames, 60, 3)
    eye_set = eye_indices()
    blink = (((t * 30) % 30) < 4).float()
    for contour in eye_contour_indices():
        upper = [int(np.flatnonzero(eye_set == i)[0]) for i in contour
                 if subject.template[i, 1] < subject.template[contour, 1].mean()]
        eyes[0, :, upper, 1] = (6 * blink)[:, None]
    return TalkingRepr(mouth=mouth, eyes=eyes, head_pose=head, torso=torch.zeros(1, frames, 18, 3), fps=30.0,
                       is_offset=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--map-size", type=int, default=WarpConfig().map_size, help="grid of the inverse map")
    samples = Path(__file__).resolve().parents[1] / "samples"
    parser.add_argument("--image", type=Path, default=samples / "portrait.jpg")
    parser.add_argument("--repeats", type=int, default=3, help="take the best of this many timings")
    parser.add_argument("--no-background", action="store_true", help="warp the whole crop (no still background)")
    args = parser.parse_args()
    from moda_core.preprocess import subject_from_photo

    subject, _ = subject_from_photo(args.image, models_dir=samples / "models")
    face, torso = project_repr(talking_motion(subject, args.frames), subject)
    face, torso = face[..., :2].numpy(), torso[..., :2].numpy()
    mask = None if args.no_background else reference_person_mask(subject, samples / "models")
    renderer = WarpRenderer(subject, args.size, WarpConfig(map_size=args.map_size), person_mask=mask)
    renderer.render_points(face[:4], torso[:4])                          # warm-up

    def cpu_ms(run, count: int) -> float:
        """Best of ``--repeats`` CPU-time measurements, ms per item (the machine may be shared)."""
        best = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            run()
            best = min(best, (time.process_time() - start) / count * 1000)
        return best

    def render_all():
        for i in range(0, args.frames, 8):
            renderer.render_points(face[i:i + 8], torso[i:i + 8])

    start = time.perf_counter()
    frame_ms = cpu_ms(render_all, args.frames)
    wall_fps = args.frames * args.repeats / (time.perf_counter() - start)
    fps = 1000 / frame_ms

    # where the time goes
    targets_ms = cpu_ms(lambda: renderer.target_points(face, torso), args.frames)
    points = renderer.target_points(face, torso)
    maps = [renderer._inverse_map(p) for p in points[:50]]
    map_ms = cpu_ms(lambda: [renderer._inverse_map(p) for p in points[:50]], 50)
    remap_ms = cpu_ms(lambda: [cv2.remap(renderer.reference, m1, m2, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                               for m1, m2 in maps], 50)
    raw = renderer._raw_targets(*renderer._check(face, torso))[0]
    flips = np.array([renderer._flipped(p).sum() for p in raw])
    print(f"warp renderer: {fps:6.1f} frames/s of CPU time at {args.size}x{args.size} on 1 thread ({args.frames} "
          f"frames of talking motion, map grid {args.map_size}, still background "
          f"{'off' if args.no_background else 'on'}, best of {args.repeats}; wall clock {wall_fps:.1f} "
          f"frames/s); target >= 100: {'met' if fps >= 100 else 'NOT met'}")
    print(f"  per frame: targets + unfolding {targets_ms:.2f} ms, inverse map {map_ms:.2f} ms, "
          f"remap (bicubic, whole frame) {remap_ms:.2f} ms, painting, background and the rest "
          f"{frame_ms - targets_ms - map_ms - remap_ms:.2f} ms (parts timed apart: on a busy machine they need not "
          f"add up)")
    print(f"  flipped triangles before unfolding: {flips.mean():.1f} per frame, in {(flips > 0).sum()} of "
          f"{len(flips)} frames (after unfolding: none)")


if __name__ == "__main__":
    main()
