"""``moda animate`` (photo/subject + audio -> mp4) and ``moda render`` (edited R -> mp4)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from moda_core.cli.checks import (ArgumentError, check_device, check_input_file, check_input_folder,
                                  check_output_file, check_output_folder)
from moda_core.cli.progress import StageProgress

# the paper's video size; smaller renderers (e.g. the quickstart's 256 px) are upscaled to it
DEFAULT_OUTPUT_SIZE = 512


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None,
                        help="folder with moda/faco/renderer .safetensors (default: $MODA_WEIGHTS_DIR or "
                             "~/.cache/moda/weights)")
    parser.add_argument("--out", type=Path, required=True, help="output .mp4")
    parser.add_argument("--renderer", choices=["neural", "warp"], default=None,
                        help="neural: the trained per-person renderer (renderer.safetensors); warp: warps the "
                             "photo itself, any face, no renderer weights (default: neural when the weights folder "
                             "has a renderer, else warp)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="renderer precision; auto: bf16 on CPUs with AVX512-BF16/AMX and on recent GPUs (else "
                             "fp16 on GPUs), fp32 otherwise; fp32 reproduces the authors")
    parser.add_argument("--backend", choices=["auto", "torch", "openvino"], default="auto",
                        help="renderer backend; auto: OpenVINO on a CPU when installed (pip install "
                             "comfyui-moda[openvino]) and faster than torch in a one-frame probe (cached), else torch")
    parser.add_argument("--batch-size", type=int, default=8, help="frames rendered per batch")
    parser.add_argument("--output-size", type=int, default=DEFAULT_OUTPUT_SIZE,
                        help=f"output frame size in px (default {DEFAULT_OUTPUT_SIZE}, the paper's: a smaller "
                             "renderer's frames are upscaled; 0: the renderer's own size; ignored with --paste-back "
                             "and --layout debug)")
    parser.add_argument("--paste-back", action="store_true", help="paste the render back into the source photo")
    parser.add_argument("--layout", choices=["render", "debug"], default="render",
                        help="debug: [render | reference | condition] side by side like the authors' output")
    parser.add_argument("--face-center-y", type=float, default=None,
                        help="canonical face-centre y used to de-normalise (default: what the renderer was trained "
                             "with, else the authors' inference value 235; their canonicalisation used 232)")
    parser.add_argument("--models", type=Path, default=None, help="folder with the MediaPipe model files")
    parser.add_argument("--save-condition", type=Path, default=None, metavar="DIR",
                        help="also write the condition images (renderer input) as lossless PNG DIR/000000.png ...")
    parser.add_argument("--save-frames", type=Path, default=None, metavar="DIR",
                        help="also write the rendered frames as lossless PNG DIR/000000.png ...")
    parser.add_argument("--quantize", choices=["round", "truncate"], default="round",
                        help="8-bit output frames: round to the nearest level, or truncate as the authors do")
    parser.add_argument("--renderer-layout", choices=["channels_last", "plain"], default="channels_last",
                        help="renderer memory layout: channels_last is faster on CPU; plain is the authors' "
                             "(their frames within 3 levels; channels_last moves a few values by up to 9)")


def register(subparsers) -> None:
    animate = subparsers.add_parser("animate", help="photo or subject + audio -> talking-portrait mp4")
    source = animate.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="portrait photo")
    source.add_argument("--subject", type=Path, help="subject .safetensors (from `moda prepare`)")
    animate.add_argument("--face-index", type=int, default=None,
                         help="with --image: which face when there are several, numbered left to right from 0 "
                              "(default: the largest)")
    animate.add_argument("--audio", type=Path, required=True, help="speech audio (wav, mp3, m4a, video...)")
    animate.add_argument("--seed", type=int, default=0, help="seed of the probabilistic branch")
    animate.add_argument("--samples", type=int, default=None,
                         help="motion samples to draw (seeds seed, seed+1, ...; default 1, or as many as --noise "
                              "holds)")
    animate.add_argument("--noise", type=Path, default=None, metavar="FILE",
                         help="replay a recorded VAE draw instead of seeded sampling: .safetensors with noise.0, "
                              "noise.1, ... one [samples, frames, latent] tensor per 20 s window")
    animate.add_argument("--save-noise", type=Path, default=None, metavar="FILE",
                         help="also write the VAE draw used (seeded or --noise) as such a .safetensors, to replay "
                              "it later with --noise")
    animate.add_argument("--sample", type=int, default=0, help="which sample to render")
    animate.add_argument("--fps", type=float, default=30.0, help="video frame rate (the authors' models: 30)")
    animate.add_argument("--no-smoothing", action="store_true", help="skip the authors' temporal smoothing")
    animate.add_argument("--window-blend", choices=["average", "crossfade"], default="average",
                         help="how overlapping 20 s windows of long audio are merged")
    animate.add_argument("--frame-count", choices=["exact", "authors"], default="exact",
                         help="exact: floor(seconds * fps) frames (8.00 s -> 240); authors: their float64 count "
                              "and window merge (8.00 s -> 239, 25 s -> 749)")
    animate.add_argument("--save-repr", type=Path, default=None,
                         help="also write R (.safetensors or .npz) for editing and `moda render`")
    _add_render_options(animate)
    animate.set_defaults(func=run_animate)

    render = subparsers.add_parser("render", help="render an (edited) R file to mp4")
    render.add_argument("--repr", type=Path, required=True, help="R file (.safetensors or .npz)")
    render.add_argument("--subject", type=Path, required=True, help="subject .safetensors")
    render.add_argument("--audio", type=Path, default=None, help="audio to mux (optional)")
    render.add_argument("--sample", type=int, default=0, help="which sample of R to render")
    _add_render_options(render)
    render.set_defaults(func=run_render)


def choose_renderer(args) -> str:
    """``--renderer``, else neural when the weights folder holds a renderer file, else warp (said once)."""
    if args.renderer is not None:
        return args.renderer
    from moda_core.pipeline import WEIGHT_FILES, default_weights_dir, has_weight_file

    if has_weight_file("renderer", args.weights):
        return "neural"
    folder = args.weights if args.weights is not None else default_weights_dir()
    print(f"moda: no {WEIGHT_FILES['renderer']} in {folder}; using the warp renderer (any photo, no training; "
          "--renderer neural to insist)", file=sys.stderr)
    return "warp"


def _options(args, **extra):
    from moda_core.pipeline import AnimateOptions

    return AnimateOptions(renderer=args.renderer, precision=args.precision, batch_size=args.batch_size,
                          output_size=args.output_size or None,
                          paste_back=args.paste_back, layout=args.layout,
                          face_center=None if args.face_center_y is None else (256.0, args.face_center_y, 128.0),
                          quantize=args.quantize, models_dir=getattr(args, "models", None), **extra)


def load_subject(args, progress: StageProgress):
    """``--image`` prepared into a subject (warnings printed), else ``--subject`` loaded."""
    from moda_core.subject import Subject

    if getattr(args, "image", None) is not None:
        from moda_core.preprocess import subject_from_photo

        face_index = getattr(args, "face_index", None)
        with progress.stage("subject", 1):
            try:
                subject, diagnostics = subject_from_photo(args.image, models_dir=args.models, name=args.image.stem,
                                                          face_index=face_index)
            except ValueError as err:
                raise ArgumentError(str(err).replace("face_index", "--face-index")) from None
        for warning in getattr(diagnostics, "warnings", []):
            print(f"moda: warning: {warning.replace('face_index', '--face-index')}", file=sys.stderr)
        return subject
    return Subject.load(args.subject)


def warn_flat_motion(weights_dir) -> None:
    """Say so when the MODA weights were found flatter than their training clip (:mod:`moda_core.motion_check`)."""
    from moda_core.motion_check import motion_warning
    from moda_core.pipeline import find_weight_file

    path = find_weight_file("moda", weights_dir)
    warning = motion_warning(path) if path.suffix == ".safetensors" else None
    if warning:
        print(f"moda: warning: {warning}", file=sys.stderr)


def stage_saver(args, options):
    """``--save-condition`` / ``--save-frames`` as a render_stream hook (None when neither is given); frames are
    made 8-bit as the video is (``options.quantize``)."""
    if args.save_condition is None and args.save_frames is None:
        return None
    from moda_core.frame_files import StageSaver

    return StageSaver(args.save_condition, args.save_frames, quantize=options.quantize)


def check_output(path: Path) -> None:
    """``--out`` must be an .mp4; its folder is created and must take a real write."""
    check_output_file(path, "--out", (".mp4",))
    check_output_folder(path.parent, "--out")


def check_render_args(args) -> None:
    """Everything ``animate``/``render`` can check before heavy imports and work: file names, inputs, output
    folders (a real write), numbers; the device last (it imports torch)."""
    check_output_file(args.out, "--out", (".mp4",))
    save_repr = getattr(args, "save_repr", None)
    check_output_file(save_repr, "--save-repr", (".safetensors", ".npz"))
    save_noise = getattr(args, "save_noise", None)
    check_output_file(save_noise, "--save-noise", (".safetensors",))
    for option in ("image", "subject", "audio", "repr", "noise"):
        check_input_file(getattr(args, option, None), f"--{option}")
    if args.weights is not None and not args.weights.is_dir():
        raise ArgumentError(f"--weights: folder {args.weights} does not exist; make weights with `moda quickstart "
                            f"--out {args.weights}` or get the authors' with `moda download --source authors --out "
                            f"{args.weights}`")
    check_input_folder(args.models, "--models")
    if args.output_size and (args.output_size < 16 or args.output_size % 2):
        raise ArgumentError(f"--output-size must be an even number >= 16 (or 0), got {args.output_size}")
    if args.batch_size < 1:
        raise ArgumentError(f"--batch-size must be >= 1, got {args.batch_size}")
    if getattr(args, "face_index", None) is not None and args.image is None:
        raise ArgumentError("--face-index picks a face in --image; a --subject already holds one face")
    if args.save_condition is not None and args.save_frames is not None and \
            args.save_condition.resolve() == args.save_frames.resolve():
        raise ArgumentError(f"--save-condition and --save-frames both name {args.save_frames}; each writes "
                            "000000.png, 000001.png, ...: give two folders")
    check_device(args.device)
    from moda_core.render_backends import PrecisionError, resolve_precision
    try:
        resolve_precision(args.precision, args.device, log=None)        # warnings are said once, at load
    except PrecisionError as err:
        raise ArgumentError(f"--precision: {err}") from None
    check_output_folder(args.out.parent, "--out")
    check_output_folder(save_repr and save_repr.parent, "--save-repr")
    check_output_folder(save_noise and save_noise.parent, "--save-noise")
    check_output_folder(args.save_condition, "--save-condition")
    check_output_folder(args.save_frames, "--save-frames")


def run_animate(args) -> int:
    check_render_args(args)
    from moda_core.pipeline import MODAModels, animate
    from moda_core.preprocess import load_audio, resample_audio

    started = time.perf_counter()
    progress = StageProgress()
    noise = None
    if args.noise is not None:
        from moda_core.recorded_noise import RecordedNoise
        noise = RecordedNoise.load(args.noise)
    samples = args.samples if args.samples is not None else (noise.num_samples if noise is not None else 1)
    subject = load_subject(args, progress)
    source_audio = load_audio(args.audio, target_rate=None)       # muxed at its own rate, not the models' 16 kHz
    wave = resample_audio(*source_audio)
    args.renderer = choose_renderer(args)
    models = MODAModels.load(args.weights, device=args.device, precision=args.precision,
                             renderer=args.renderer == "neural", renderer_layout=args.renderer_layout,
                             backend=args.backend)
    warn_flat_motion(args.weights)
    options = _options(args, fps=args.fps, seed=args.seed, num_samples=samples, sample=args.sample,
                       smoothing=not args.no_smoothing, window_blend=args.window_blend, noise=noise,
                       frame_count=args.frame_count)
    if args.save_noise is not None and noise is None:          # the seeded draw, made explicit (same result)
        from dataclasses import replace

        from moda_core.models.moda import motion_windows
        from moda_core.recorded_noise import RecordedNoise
        windows, _ = motion_windows(len(wave), options.fps, frame_count=options.frame_count)
        noise = RecordedNoise.from_seed(args.seed, [w.frames for w in windows], samples,
                                        models.moda.config.hidden_size)
        options = replace(options, noise=noise)
    with progress:
        result = animate(models, wave, subject, args.out, options, progress=progress,
                         on_batch=stage_saver(args, options), mux_audio=source_audio)
    if args.save_repr is not None:
        result.repr.save(args.save_repr)
    if args.save_noise is not None:
        noise.save(args.save_noise)
    print(f"moda animate: wrote {result.path} ({result.frames} frames, {result.seconds:.2f} s at {result.fps:g} fps) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def run_render(args) -> int:
    check_render_args(args)
    from moda_core.pipeline import MODAModels, animate
    from moda_core.repr import TalkingRepr
    from moda_core.subject import Subject

    started = time.perf_counter()
    r = TalkingRepr.load(args.repr)
    subject = Subject.load(args.subject)
    wave, source_audio = [], None
    if args.audio is not None:
        from moda_core.preprocess import load_audio, resample_audio
        source_audio = load_audio(args.audio, target_rate=None)
        wave = resample_audio(*source_audio)
    args.renderer = choose_renderer(args)
    models = MODAModels.load(args.weights, device=args.device, precision=args.precision,
                             renderer=args.renderer == "neural", renderer_layout=args.renderer_layout,
                             backend=args.backend)
    if r.face is None:
        from moda_core.pipeline import compose_face
        r = compose_face(models.faco, r, subject)
    progress = StageProgress()
    with progress:
        options = _options(args, fps=r.fps, num_samples=max(r.num_samples, args.sample + 1), sample=args.sample)
        result = animate(models, wave, subject, args.out, options, repr_override=r, progress=progress,
                         mux_audio=source_audio,
                         on_batch=stage_saver(args, options))
    print(f"moda render: wrote {result.path} ({result.frames} frames, {result.seconds:.2f} s at {result.fps:g} fps) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0
