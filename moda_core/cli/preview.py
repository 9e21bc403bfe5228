"""``moda preview``: the condition images of an R (or of a loudness-driven preview motion) as an mp4.

Runs without any trained network: it shows what the renderer will be given, which checks a subject, its
geometry and an edited R before spending time on rendering.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("preview", help="draw R as condition images (no network needed) -> mp4")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="portrait photo (a subject is prepared from it)")
    source.add_argument("--subject", type=Path, help="subject .safetensors")
    parser.add_argument("--face-index", type=int, default=None,
                        help="with --image: which face when there are several, numbered left to right from 0 "
                             "(default: the largest)")
    parser.add_argument("--repr", type=Path, default=None,
                        help="R file to draw; default: a loudness-driven preview motion of the audio")
    parser.add_argument("--audio", type=Path, default=None, help="audio to drive the preview and to mux")
    parser.add_argument("--seconds", type=float, default=4.0, help="length without audio or R")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the preview motion")
    parser.add_argument("--sample", type=int, default=0, help="which sample of R to draw")
    parser.add_argument("--side-by-side", action="store_true", help="put the subject's reference image beside it")
    parser.add_argument("--models", type=Path, default=None, help="folder with the MediaPipe model files")
    parser.add_argument("--save-subject", type=Path, default=None, help="also write the prepared subject")
    parser.add_argument("--out", type=Path, required=True, help="output .mp4")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from moda_core.cli.animate import check_output, load_subject
    from moda_core.cli.checks import (ArgumentError, check_input_file, check_input_folder, check_output_file,
                                      check_output_folder)

    check_output_file(args.out, "--out", (".mp4",))
    check_output_file(args.save_subject, "--save-subject", (".safetensors",))
    for option in ("image", "subject", "repr", "audio"):
        check_input_file(getattr(args, option), f"--{option}")
    check_input_folder(args.models, "--models")
    if args.face_index is not None and args.image is None:
        raise ArgumentError("--face-index picks a face in --image; a --subject already holds one face")
    check_output(args.out)
    check_output_folder(args.save_subject and args.save_subject.parent, "--save-subject")

    import torch

    from moda_core.cli.progress import StageProgress
    from moda_core.pipeline import condition_batches
    from moda_core.preview import loudness_envelope, loudness_motion
    from moda_core.repr import TalkingRepr
    from moda_core.video import VideoWriter

    started = time.perf_counter()
    progress = StageProgress()
    subject = load_subject(args, progress)
    if args.image is not None and args.save_subject is not None:
        subject.save(args.save_subject)
    wave = None
    if args.audio is not None:
        from moda_core.preprocess import load_audio

        wave, rate = load_audio(args.audio)
        source_audio = load_audio(args.audio, target_rate=None)    # muxed at its own rate
    if args.repr is not None:
        r = TalkingRepr.load(args.repr)
    else:
        seconds = len(wave) / rate if wave is not None else args.seconds
        frames = max(1, int(seconds * args.fps))
        level = loudness_envelope(wave, rate, args.fps, frames) if wave is not None else None
        r = loudness_motion(subject, frames, args.fps, level)
    reference = subject.reference_float()
    with progress, VideoWriter(args.out, r.fps, audio=None if wave is None else source_audio) as out:
        for start, images in condition_batches(r, subject, sample=args.sample, batch_size=16):
            if args.side_by_side:
                images = torch.cat([reference.expand_as(images), images], dim=2)
            out.write(images)
            progress("draw", start + images.shape[0], r.num_frames)
    print(f"moda preview: wrote {args.out} ({r.num_frames} frames, {r.duration:.2f} s at {r.fps:g} fps) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0
