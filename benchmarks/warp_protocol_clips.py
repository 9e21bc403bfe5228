"""`moda protocol --renderer warp` on several talking clips: one Markdown table, plus where the error sits.

    python benchmarks/warp_protocol_clips.py --out out/warp-protocol --models samples/models CLIP.mp4 ...

Per clip: PSNR, SSIM, sharpness ratio, landmark-follow error (and MediaPipe's floor on the real frames), then
PSNR inside the face box, the mouth box and outside the face box, and the worst frames, so a miss can be traced
to a region. Prepared samples are reused from OUT/<clip>/sample.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TARGETS = {"landmark follow": (3.0, "<="), "sharpness ratio": (0.8, ">="), "PSNR": (26.0, ">="), "SSIM": (0.85, ">=")}


def regions(generated: np.ndarray, real: np.ndarray, face: np.ndarray) -> dict[str, float]:
    """PSNR (dB) over all frames inside the face box, the mouth box and outside the face box."""
    from moda_core.landmarks import mouth_indices
    from moda_core.metrics.sharpness import face_boxes

    size = generated.shape[1]
    inside, mouth_in, outside = [], [], []
    for t, (x0, y0, x1, y1) in enumerate(face_boxes(face, size, size)):
        diff = (generated[t] - real[t]) ** 2
        mask = np.zeros(diff.shape[:2], bool)
        mask[y0:y1, x0:x1] = True
        inside.append(diff[mask])
        outside.append(diff[~mask])
        lips = face[t, mouth_indices()] * size / 512
        (mx0, my0), (mx1, my1) = np.floor(lips.min(0)).astype(int), np.ceil(lips.max(0)).astype(int)
        mouth_in.append(diff[max(my0, 0):my1, max(mx0, 0):mx1].reshape(-1))
    db = lambda parts: 10 * np.log10(1.0 / max(float(np.mean(np.concatenate([p.reshape(-1) for p in parts]))),
                                                1e-10))  # noqa: E731
    return {"face box": db(inside), "mouth box": db(mouth_in), "outside face": db(outside)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)

    from moda_core.metrics.image import psnr_per_frame
    from moda_core.train.protocol import run_warp_protocol

    rows = []
    for clip in args.clips:
        result = run_warp_protocol(clip, args.out / clip.stem, models_dir=args.models, size=args.size,
                                   keep_frames=True, log=lambda line: print(line, file=sys.stderr))
        values = result.report.values()
        generated = result.details["generated_frames"].numpy().astype(np.float64)
        real = result.details["real_frames"].numpy().astype(np.float64) / 255.0
        face = result.details["target_points"]
        per_frame = psnr_per_frame(generated, real)
        worst = np.argsort(per_frame)[:3]
        follow = result.report["landmark follow"].details
        print(f"{clip.stem}: reference frame {result.details['reference_frame']}, held-out from "
              f"{result.details['start']} ({result.frames} frames); region PSNR "
              + ", ".join(f"{k} {v:.2f} dB" for k, v in regions(generated, real, face).items())
              + "; worst frames (held-out index: dB) " + ", ".join(f"{i}: {per_frame[i]:.2f}" for i in worst)
              + f"; follow mouth {follow['mouth']:.2f} px, eyes {follow['eyes']:.2f} px, worst frame "
              f"{follow['worst_frame_index']} {follow['worst_frame']:.2f} px", flush=True)
        rows.append((clip.stem, result.frames, values, result.details["real_frames_follow"]))

    print("\n| clip | held-out frames | landmark follow (px) | real frames' follow (px) | sharpness ratio | PSNR (dB) "
          "| SSIM |\n|---|---|---|---|---|---|---|")
    for name, frames, v, floor in rows:
        print(f"| {name} | {frames} | {v['landmark follow']:.2f} | {floor:.2f} | {v['sharpness ratio']:.2f} | "
              f"{v['PSNR']:.2f} | {v['SSIM']:.3f} |")
    print("targets: " + ", ".join(f"{k} {op} {t}" for k, (t, op) in TARGETS.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
