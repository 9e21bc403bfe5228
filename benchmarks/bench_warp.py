"""Warp renderer speed: frames/s at 512x512 on one core (target >= 100), with talking motion (head turns up to
+-12 deg, the mouth opening and closing, a blink every second).

    python benchmarks/bench_warp.py [--frames 300] [--size 512] [--repeats 3] [--no-background]
        [--image samples/portrait.jpg] [--baseline OLD_WARP_RENDERER.py]

``--baseline``: an earlier ``moda_core/warp_renderer.py`` (``git show REV:moda_core/warp_renderer.py > FILE``), timed
in the same run alternating with the current one (a shared machine's load changes from minute to minute): both
frames/s, their ratio and the largest difference between their frames.
"""
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
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


def load_baseline(path: Path):
    """An earlier ``warp_renderer.py`` imported by path (``git show REV:moda_core/warp_renderer.py > FILE``)."""
    spec = importlib.util.spec_from_file_location("baseline_warp_renderer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module                       # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--map-size", type=int, default=WarpConfig().map_size, help="grid of the inverse map")
    samples = Path(__file__).resolve().parents[1] / "samples"
    parser.add_argument("--image", type=Path, default=samples / "portrait.jpg")
    parser.add_argument("--repeats", type=int, default=3, help="take the best of this many timings")
    parser.add_argument("--no-background", action="store_true", help="warp the whole crop (no still background)")
    parser.add_argument("--baseline", type=Path, help="an earlier warp_renderer.py to time side by side")
    args = parser.parse_args()
    from moda_core.preprocess import subject_from_photo

    subject, _ = subject_from_photo(args.image, models_dir=samples / "models")
    face, torso = project_repr(talking_motion(subject, args.frames), subject)
    face, torso = face[..., :2].numpy(), torso[..., :2].numpy()
    mask = None if args.no_background else reference_person_mask(subject, samples / "models")
    renderer = WarpRenderer(subject, args.size, WarpConfig(map_size=args.map_size), person_mask=mask)
    renderers = {"current": renderer}
    if args.baseline is not None:
        old = load_baseline(args.baseline)
        renderers["baseline"] = old.WarpRenderer(subject, args.size, old.WarpConfig(map_size=args.map_size),
                                                 person_mask=mask)
    for each in renderers.values():
        each.render_points(face[:4], torso[:4])                          # warm-up

    def render_all(each):
        for i in range(0, args.frames, 8):
            each.render_points(face[i:i + 8], torso[i:i + 8])

    # best of --repeats CPU-time measurements (the machine may be shared); with a baseline the two alternate,
    # so both see the same load, and each pair gives a ratio
    best = dict.fromkeys(renderers, float("inf"))
    ratios = []
    start = time.perf_counter()
    for repeat in range(args.repeats):
        pair = {}
        for name in (list(renderers) if repeat % 2 == 0 else list(renderers)[::-1]):
            begin = time.process_time()
            render_all(renderers[name])
            pair[name] = (time.process_time() - begin) / args.frames * 1000
            best[name] = min(best[name], pair[name])
        if len(pair) == 2:
            ratios.append(pair["baseline"] / pair["current"])
    wall_fps = args.frames * args.repeats * len(renderers) / (time.perf_counter() - start)
    frame_ms = best["current"]
    fps = 1000 / frame_ms

    def cpu_ms(run, count: int) -> float:
        """Best of ``--repeats`` CPU-time measurements, ms per item."""
        least = float("inf")
        for _ in range(args.repeats):
            begin = time.process_time()
            run()
            least = min(least, (time.process_time() - begin) / count * 1000)
        return least

    # where the time goes (parts timed apart: on a busy machine they need not add up)
    count = min(args.frames, 48)
    targets_ms = cpu_ms(lambda: [renderer.target_points(face[i:i + 8], torso[i:i + 8])
                                 for i in range(0, count, 8)], count)
    points = renderer.target_points(face[:count], torso[:count])
    triangle_maps = renderer._triangle_maps(points)
    per_frame = [tuple(m[b] for m in triangle_maps) for b in range(count)]
    maps = [renderer._inverse_map(points[b], per_frame[b])[0].copy() for b in range(count)]
    coarse = []                                                          # the coarse source grids of each map
    for b in range(count):
        renderer._inverse_map(points[b], per_frame[b])
        coarse.append(renderer._coarse_source)
    map_ms = cpu_ms(lambda: (renderer._triangle_maps(points),
                             [renderer._inverse_map(points[b], per_frame[b]) for b in range(count)]), count)
    frame = np.empty((args.size, args.size, 3), np.float32)

    def remap_all():
        for b in range(count):
            if renderer._plate is None:
                cv2.remap(renderer.reference, maps[b], None, dst=frame, interpolation=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
            else:
                renderer._coarse_source = coarse[b]
                renderer._composite(frame, maps[b])

    remap_ms = cpu_ms(remap_all, count)
    raw = renderer._raw_targets(*renderer._check(face, torso))[0]
    flips = np.array([renderer._flipped(p).sum() for p in raw])
    print(f"warp renderer: {fps:6.1f} frames/s of CPU time at {args.size}x{args.size} on 1 thread ({args.frames} "
          f"frames of talking motion, map grid {args.map_size}, still background "
          f"{'off' if args.no_background else 'on'}, best of {args.repeats}; wall clock {wall_fps:.1f} "
          f"frames/s); target >= 100: {'met' if fps >= 100 else 'NOT met'}")
    print(f"  per frame: targets + unfolding {targets_ms:.2f} ms, inverse map {map_ms:.2f} ms, "
          f"bicubic remap {'(whole frame)' if renderer._plate is None else 'over the person + background'} "
          f"{remap_ms:.2f} ms, painting and the rest {frame_ms - targets_ms - map_ms - remap_ms:.2f} ms (parts "
          f"timed apart: on a busy machine they need not add up)")
    print(f"  flipped triangles before unfolding: {flips.mean():.1f} per frame, in {(flips > 0).sum()} of "
          f"{len(flips)} frames (after unfolding: none)")
    if ratios:
        baseline = renderers["baseline"]
        baseline._walk_start = renderer._walk_start = None
        difference = 0.0
        for i in range(0, args.frames, 8):
            difference = max(difference, float(np.abs(renderer.render_points(face[i:i + 8], torso[i:i + 8])
                                                      - baseline.render_points(face[i:i + 8], torso[i:i + 8])).max()))
        print(f"  baseline {args.baseline}: {1000 / best['baseline']:6.1f} frames/s, best against best "
              f"x{best['baseline'] / frame_ms:.3f}, paired runs x{np.median(ratios):.3f} (median of {len(ratios)}, "
              f"{min(ratios):.2f}-{max(ratios):.2f}); largest frame difference {difference * 255:.3f} / 255")


if __name__ == "__main__":
    main()
