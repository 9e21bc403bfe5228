"""A trained (e.g. quickstart) renderer on its clip's held-out 20 %, ground-truth conditions: PSNR, SSIM,
sharpness ratio and landmark-follow error at 512 px, the warp protocol's rows for the neural renderer.

    python benchmarks/renderer_heldout_metrics.py WEIGHTS_DIR --models samples/models

WEIGHTS_DIR holds renderer.safetensors (with its render settings) and sample/ (a quickstart output folder).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--models", type=Path, default=None, help="MediaPipe models folder")
    parser.add_argument("--size", type=int, default=512, help="px the renders are compared at")
    args = parser.parse_args(argv)

    from moda_core.metrics import evaluate
    from moda_core.models.renderer import render
    from moda_core.pipeline import MODAModels
    from moda_core.projection import project_repr
    from moda_core.train.datasets import RenderFrames, load_sample, read_frame, split_range

    models = MODAModels.load(args.weights)
    settings = models.render_settings
    sample = load_sample(args.weights / "sample", fps=30.0)
    size = models.renderer.config.image_size
    frames = RenderFrames(sample, "val", size, tpe=settings.tpe, val_fraction=0.2, face_center=settings.face_center)
    renders, reals = [], []
    models.renderer.eval()
    with torch.no_grad():
        for batch in DataLoader(frames, batch_size=8):
            images = (render(models.renderer, batch["input"]).clamp(-1, 1) + 1.0) / 2.0
            images = F.interpolate(images, size=(args.size, args.size), mode="bilinear", antialias=True,
                                   align_corners=False)
            renders.append(images.clamp(0, 1).permute(0, 2, 3, 1))
            reals.append(torch.stack([read_frame(sample, int(t), args.size) for t in batch["index"]]))
    held_out = split_range(sample.num_frames, "val", 0.2)
    truth = sample.repr.slice_time(held_out.start, held_out.stop)
    face = project_repr(truth, sample.subject, face_center=settings.face_center)[0][..., :2]
    tracked = project_repr(truth, sample.subject, face_center="canonical")[0][..., :2]
    report = evaluate(generated_frames=torch.cat(renders), reference_frames=torch.cat(reals), target_points=face,
                      reference_points=tracked, models_dir=args.models, fps=sample.fps)
    print(f"renderer {size} px, compared at {args.size} px, {len(held_out)} held-out frames")
    for name in ("PSNR", "SSIM", "sharpness ratio", "landmark follow"):
        print(f"{name}: {report[name].format_value()} {report[name].unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
