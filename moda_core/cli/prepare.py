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
    from moda_core.cli.checks import ArgumentError, check_input_file, check_input_folder, check_output_folder

    if args.workers < 1:
        raise ArgumentError(f"--workers must be at least 1, got {args.workers}")
    source = Path(args.video)
    if source.is_dir():
        return _video_folder(args, source)
    check_input_file(source, "VIDEO")
    check_input_folder(args.models and Path(args.models), "--models")
    check_output_folder(Path(args.out).parent, "--out")
    from moda_core.cli.progress import StageProgress
    from moda_core.preprocess import prepare_video_sample
    from moda_core.preprocess.batch import is_prepared_sample

    if not args.overwrite and is_prepared_sample(args.out):
        print(f"skipped: {source.name} -> {args.out}: already prepared (sample.json present; --overwrite redoes it)")
        return 0
    with StageProgress() as progress:
        summary = prepare_video_sample(args.video, args.out, fps=args.fps, models_dir=args.models,
                                       max_seconds=args.max_seconds, overwrite=args.overwrite, progress=progress)
    for warning in summary.warnings:
        print(f"moda prepare: warning: {warning}", file=sys.stderr)
    print(summary.one_line())
    return 0


def _video_folder(args: argparse.Namespace, source: Path) -> int:
    """A folder of videos -> ``--out/<stem>/`` each; one line per video; exit 1 when any failed."""
    from moda_core.cli.checks import ArgumentError, check_input_folder, check_output_folder

    check_input_folder(args.models and Path(args.models), "--models")
    from moda_core.preprocess.batch import VIDEO_SUFFIXES, prepare_videos, video_files

    videos = video_files(source)
    if not videos:
        raise ArgumentError(f"VIDEO: the folder {source} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
    check_output_folder(Path(args.out), "--out")
    from tqdm import tqdm

    from moda_core.cli.progress import StageProgress

    counts = {"prepared": 0, "skipped": 0, "failed": 0}
    frames = StageProgress(disable=args.workers > 1)
    with tqdm(total=len(videos), desc="videos", unit="video", dynamic_ncols=True) as bar:
        for outcome in prepare_videos(videos, args.out, workers=args.workers, fps=args.fps, models_dir=args.models,
                                      max_seconds=args.max_seconds, overwrite=args.overwrite, progress=frames):
            frames.close()
            counts[outcome.status] += 1
            bar.write(outcome.line())
            bar.update(1)
    print(f"moda prepare: {counts['prepared']} prepared, {counts['skipped']} skipped, {counts['failed']} failed "
          f"in {args.out}", file=sys.stderr)
    return 1 if counts["failed"] else 0


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
    video.add_argument("video", help="video file with an audio track, or a folder of them (each -> OUT/<name>/)")
    video.add_argument("--out", required=True, help="sample folder to create (for a folder of videos: the folder "
                                                    "that gets one sample folder per video)")
    video.add_argument("--fps", type=float, default=30.0, help="frame rate of the sample (default 30)")
    video.add_argument("--models", default=None, help=models_help)
    video.add_argument("--max-seconds", type=float, default=None, help="use only the start of the clip")
    video.add_argument("--overwrite", action="store_true",
                       help="prepare again and replace an existing output folder (else finished samples are skipped)")
    video.add_argument("--workers", type=int, default=1,
                       help="videos prepared at once, each in its own process (folder input)")
    video.set_defaults(func=_video)
