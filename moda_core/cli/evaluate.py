"""``moda eval``: the paper's metrics between a generated and a reference result (R files and/or videos)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="metrics (LMD, LMD-v, MA, PSNR, SSIM, TCM, NIQE, Sync, "
                                                "motion statistics)")
    parser.add_argument("--generated", type=Path, default=None, help="generated R (.safetensors/.npz)")
    parser.add_argument("--reference", type=Path, default=None, help="reference R, e.g. a prepared sample's repr")
    parser.add_argument("--subject", type=Path, default=None, help="subject file (needed when an R holds offsets)")
    parser.add_argument("--generated-video", type=Path, default=None,
                        help="generated video for image metrics (NIQE at its own size)")
    parser.add_argument("--reference-video", type=Path, default=None, help="reference video for image metrics")
    parser.add_argument("--size", type=int, default=256,
                        help="frames are resized to this square size (px); use 512 for the sharpness ratio of 512 "
                             "px renders")
    parser.add_argument("--syncnet", type=Path, default=None,
                        help="SyncNet weights (syncnet_v2.model or .safetensors): adds Sync, Sync-D and Sync offset "
                             "of --generated-video with its own audio track or --audio")
    parser.add_argument("--audio", type=Path, default=None, help="audio for Sync (default: the generated video's)")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder with the MediaPipe face_landmarker.task (faces for Sync, sharpness ratio and "
                             "landmark follow)")
    parser.add_argument("--face-center", choices=["authors", "canonical"], default="authors",
                        help="face centre the generated video was rendered with (as the renderer file records; "
                             "quickstart renderers: canonical): where --generated's points are placed for the "
                             "landmark-follow error of --generated-video")
    parser.add_argument("--device", default="cpu", help="torch device for SyncNet, e.g. cpu or cuda")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text",
                        help="how the table is printed (and written with --out)")
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


def niqe_row(path: Path):
    """NIQE of a video at its own size, on up to ``NIQE_MAX_FRAMES`` evenly spaced frames (streamed)."""
    import numpy as np

    from moda_core.metrics import NIQE_MAX_FRAMES, MetricResult, niqe
    from moda_core.preprocess.video import probe_video, read_frames

    info = probe_video(path)
    wanted = set(np.linspace(0, max(info.num_frames - 1, 0), NIQE_MAX_FRAMES).round().astype(int).tolist())
    frames = [rgb for index, _, rgb in read_frames(path, info.fps) if index in wanted]
    if not frames:
        return MetricResult.skip("NIQE", f"{path} has no video frames", "", False)
    try:
        row = niqe(np.stack(frames))
    except ValueError as err:
        return MetricResult.skip("NIQE", f"error: {err}", "", False)
    row.details["of_frames"] = info.num_frames
    return row


def sync_rows(args: argparse.Namespace):
    """The Sync rows of the generated video at full resolution (streamed, two decoding passes); None to let
    :func:`~moda_core.metrics.evaluate` say why they are skipped."""
    from moda_core.cli.progress import StageProgress
    from moda_core.metrics.syncnet import load_syncnet, score_video, skipped_rows

    if args.syncnet is None or args.generated_video is None:
        return None
    network = load_syncnet(args.syncnet, args.device)
    with StageProgress() as bars:
        try:
            score = score_video(network, args.generated_video, audio=args.audio, models_dir=args.models,
                                progress=lambda done, total: bars("SyncNet", done, total))
        except ValueError as err:
            return skipped_rows(f"error: {err}")
    return score.rows(crop="mediapipe", weights=str(args.syncnet))


def run(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import check_device, check_input_file, check_input_folder, check_output_folder

    if args.generated is None and args.generated_video is None:
        raise ValueError("give --generated (an R file) and/or --generated-video")
    if args.syncnet is not None and args.generated_video is None:
        raise ValueError("--syncnet scores a video: give --generated-video too")
    for option in ("generated", "reference", "subject", "generated_video", "reference_video", "syncnet", "audio"):
        check_input_file(getattr(args, option), "--" + option.replace("_", "-"))
    check_input_folder(args.models, "--models")
    if args.syncnet is not None:
        check_device(args.device)
    if args.out is not None:
        check_output_folder(args.out.parent, "--out")

    from moda_core.metrics import evaluate
    from moda_core.repr import TalkingRepr
    from moda_core.subject import Subject
    generated = TalkingRepr.load(args.generated) if args.generated else None
    reference = TalkingRepr.load(args.reference) if args.reference else None
    subject = Subject.load(args.subject) if args.subject else None
    generated_frames = reference_frames = fps = None
    if args.generated_video is not None and (args.reference_video is not None or generated is not None):
        generated_frames, fps = read_video_frames(args.generated_video, args.size)
    if generated_frames is not None and args.reference_video is not None:
        reference_frames, _ = read_video_frames(args.reference_video, args.size, fps)
        count = min(len(generated_frames), len(reference_frames))
        generated_frames, reference_frames = generated_frames[:count], reference_frames[:count]
    if generated is not None and reference is not None and generated.num_frames != reference.num_frames:
        count = min(generated.num_frames, reference.num_frames)
        generated, reference = generated.slice_time(0, count), reference.slice_time(0, count)
    if generated_frames is not None and generated is not None and generated.num_frames != len(generated_frames):
        count = min(generated.num_frames, len(generated_frames))      # a video may end a frame early
        generated, generated_frames = generated.slice_time(0, count), generated_frames[:count]
        reference_frames = None if reference_frames is None else reference_frames[:count]
        reference = None if reference is None else reference.slice_time(0, min(count, reference.num_frames))
    report = evaluate(generated, reference, subject=subject, generated_frames=generated_frames,
                      reference_frames=reference_frames, sync_rows=sync_rows(args), fps=fps, models_dir=args.models,
                      niqe_row=None if args.generated_video is None else niqe_row(args.generated_video),
                      face_center=args.face_center)
    text = {"text": report.to_text, "markdown": report.to_markdown, "json": report.to_json}[args.format]()
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0
