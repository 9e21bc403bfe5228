"""``moda prepare photo|video``: make a Subject from a photo or a sample folder from a talking video."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _photo(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import check_input_file, check_input_folder, check_output_file, check_output_folder

    check_input_file(Path(args.photo), "PHOTO")
    check_input_folder(args.models and Path(args.models), "--models")
    check_output_file(Path(args.out), "--out", (".safetensors",))
    check_output_folder(Path(args.out).parent, "--out")
    from moda_core.preprocess import subject_from_photo

    subject, diagnostics = subject_from_photo(args.photo, models_dir=args.models, face_index=args.face_index,
                                              name=args.name or Path(args.photo).stem)
    for warning in diagnostics.warnings:
        print(f"moda prepare: warning: {warning}", file=sys.stderr)
    subject.save(args.out)
    yaw, pitch, roll = diagnostics.head_pose[:3]
    print(f"{args.out}: face {diagnostics.face_index + 1} of {diagnostics.num_faces}, "
          f"{diagnostics.eye_distance:.0f} px between the eyes in the photo, yaw {yaw:.1f} pitch {pitch:.1f} "
          f"roll {roll:.1f} deg, {diagnostics.torso_sides_found} shoulder(s) seen")
    return 0


def _video(args: argparse.Namespace) -> int:
    from moda_core.cli.checks import check_input_file, check_input_folder, check_output_folder

    check_input_file(Path(args.video), "VIDEO")
    check_input_folder(args.models and Path(args.models), "--models")
    check_output_folder(Path(args.out).parent, "--out")
    from moda_core.cli.progress import StageProgress
    from moda_core.preprocess import prepare_video_sample

    with StageProgress() as progress:
        summary = prepare_video_sample(args.video, args.out, fps=args.fps, models_dir=args.models,
                                       max_seconds=args.max_seconds, overwrite=args.overwrite, progress=progress)
    for warning in summary.warnings:
        print(f"moda prepare: warning: {warning}", file=sys.stderr)
    print(summary.one_line())
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="preprocess a photo (-> subject) or a talking video "
                                                   "(-> training/eval sample folder)")
    kinds = parser.add_subparsers(dest="kind", required=True)
    models_help = ("folder with face_landmarker.task and selfie_segmenter.tflite "
                   "(default: $MODA_MODELS_DIR, else ~/.cache/moda/models)")

    photo = kinds.add_parser("photo", help="photo -> SUBJECT.safetensors")
    photo.add_argument("photo", help="image file (jpg, png, ...)")
    photo.add_argument("--out", required=True, help="subject file to write (.safetensors)")
    photo.add_argument("--models", default=None, help=models_help)
    photo.add_argument("--face-index", type=int, default=None,
                       help="which face when there are several, numbered left to right from 0 (default: largest)")
    photo.add_argument("--name", default="", help="subject name (default: the file name)")
    photo.set_defaults(func=_photo)

    video = kinds.add_parser("video", help="talking video -> sample folder (frames, audio, R, subject)")
    video.add_argument("video", help="video file with an audio track")
    video.add_argument("--out", required=True, help="sample folder to create")
    video.add_argument("--fps", type=float, default=30.0, help="frame rate of the sample (default 30)")
    video.add_argument("--models", default=None, help=models_help)
    video.add_argument("--max-seconds", type=float, default=None, help="use only the start of the clip")
    video.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    video.set_defaults(func=_video)
