"""``moda eval``: the paper's metrics between a generated and a reference result (R files and/or videos)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="metrics (LMD, LMD-v, MA, PSNR, SSIM, TCM, motion statistics)")
    parser.add_argument("--generated", type=Path, default=None, help="generated R (.safetensors/.npz)")
    parser.add_argument("--reference", type=Path, default=None, help="reference R, e.g. a prepared sample's repr")
    parser.add_argument("--subject", type=Path, default=None, help="subject file (needed when an R holds offsets)")
    parser.add_argument("--generated-video", type=Path, default=None, help="generated video for image metrics")
    parser.add_argument("--reference-video", type=Path, default=None, help="reference video for image metrics")
    parser.add_argument("--size", type=int, default=256, help="frames are resized to this square size (px)")
    parser.add_argument("--syncnet", type=Path, default=None, help="SyncNet weights (optional)")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.set_defaults(func=run)


def read_video_frames(path: Path, size: int, fps: float | None = None):
    """Decode a video to uint8 ``[T, size, size, 3]`` (resized) and its fps."""
    import cv2
    import numpy as np

    from moda_core.preprocess.video import probe_video, read_frames

    rate = fps or probe_video(path).fps
    frames = [cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA) for _, _, rgb in read_frames(path, rate)]
    if not frames:
        raise ValueError(f"{path} has no video frames")
    return np.stack(frames), rate


def run(args: argparse.Namespace) -> int:
    from moda_core.metrics import evaluate
    from moda_core.repr import TalkingRepr
    from moda_core.subject import Subject

    if args.generated is None and args.generated_video is None:
        raise ValueError("give --generated (an R file) and/or --generated-video")
    generated = TalkingRepr.load(args.generated) if args.generated else None
    reference = TalkingRepr.load(args.reference) if args.reference else None
    subject = Subject.load(args.subject) if args.subject else None
    generated_frames = reference_frames = None
    if args.generated_video is not None and args.reference_video is not None:
        generated_frames, fps = read_video_frames(args.generated_video, args.size)
        reference_frames, _ = read_video_frames(args.reference_video, args.size, fps)
        count = min(len(generated_frames), len(reference_frames))
        generated_frames, reference_frames = generated_frames[:count], reference_frames[:count]
    if generated is not None and reference is not None and generated.num_frames != reference.num_frames:
        count = min(generated.num_frames, reference.num_frames)
        generated, reference = generated.slice_time(0, count), reference.slice_time(0, count)
    report = evaluate(generated, reference, subject=subject, generated_frames=generated_frames,
                      reference_frames=reference_frames, syncnet_weights=args.syncnet)
    text = {"text": report.to_text, "markdown": report.to_markdown, "json": report.to_json}[args.format]()
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0
