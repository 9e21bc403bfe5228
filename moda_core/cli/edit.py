"""``moda edit R [options]``: edit a saved R (head pose, eyes, mouth, timing), export/import curves, plot them."""
from __future__ import annotations

import argparse
from pathlib import Path

ORDER = ("import curves, trim, shift, loop, head pose (from another R, gain, offset, smooth, clamp, freeze, "
         "keyframes), eyes (remove blinks, blink rate, blinks at, openness, gaze), mouth, torso, ease; then "
         "export curves and plot")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "edit", help="edit a saved R: head pose, blinks, gaze, lips, timing; curves to/from CSV/JSON; plots",
        description=f"Apply edits to an R file (.safetensors / .npz) in this order: {ORDER}. Head-pose axes: yaw, "
                    "pitch, roll (degrees), tx, ty, tz (px; x, y, z also accepted), scale, or 'all'. Times: "
                    "'1.5s' (seconds) or '45f' (frames); bare numbers are seconds.")
    parser.add_argument("r", type=Path, help="input R file")
    parser.add_argument("--out", type=Path, help="write the edited R here (.safetensors or .npz)")
    parser.add_argument("--subject", type=Path, help="subject file or folder (needed for eye/mouth edits on "
                                                     "offset R and for --freeze-hold rest on absolute R)")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--trim", metavar="START:END", help="keep seconds START to END (END empty/0 = to the end, "
                                                            "negative = from the end)")
    timing.add_argument("--shift", type=int, metavar="FRAMES", help="delay (positive) or advance all motion")
    timing.add_argument("--loop", type=float, metavar="SECONDS", help="repeat R to this length")
    timing.add_argument("--crossfade", type=float, default=0.0, metavar="SECONDS", help="crossfade at loop seams")
    head = parser.add_argument_group("head pose")
    head.add_argument("--pose-from", type=Path, metavar="R_FILE", help="take the head pose of another R")
    head.add_argument("--pose-weight", type=float, default=1.0, help="0..1 mix of --pose-from (1 = replace)")
    head.add_argument("--pose-axes", default="all", help="axes taken from --pose-from")
    head.add_argument("--pose-motion-only", action="store_true",
                      help="take only the motion of --pose-from around its mean (keeps this R's framing)")
    head.add_argument("--head-gain", metavar="AXIS=GAIN,...", help="scale motion around the mean, e.g. yaw=1.5,ty=0.5")
    head.add_argument("--head-offset", metavar="AXIS=VALUE,...", help="add constants, e.g. pitch=-4")
    head.add_argument("--head-smooth", metavar="AXES=SIGMA", action="append", default=[],
                      help="Gaussian smoothing in frames, e.g. all=2 or yaw,pitch=4 (repeatable)")
    head.add_argument("--head-clamp", metavar="AXES=MIN:MAX", action="append", default=[],
                      help="limit axes, e.g. yaw=-10:10 (repeatable)")
    head.add_argument("--head-freeze", metavar="AXES", help="hold axes still, e.g. roll or all")
    head.add_argument("--freeze-hold", choices=("first", "mean", "rest", "value"), default="first",
                      help="what --head-freeze holds: the first frame's pose, the mean, the subject's rest pose, or "
                           "--freeze-value")
    head.add_argument("--freeze-value", type=float, default=0.0, help="value held with --freeze-hold value")
    head.add_argument("--keyframes", metavar="AXIS=SPEC", action="append", default=[],
                      help="e.g. 'yaw=0s: 0, 1.5s: 10, 3s: -5' (repeatable)")
    head.add_argument("--keyframe-mode", choices=("replace", "add"), default="replace",
                      help="replace: the axis follows the keyframes; add: they are added to the existing motion")
    head.add_argument("--interpolation", choices=("linear", "cubic"), default="linear",
                      help="curve between --keyframes")
    eyes = parser.add_argument_group("eyes")
    eyes.add_argument("--remove-blinks", action="store_true", help="replace existing blinks by the open eye")
    eyes.add_argument("--blink-rate", type=float, metavar="PER_MINUTE", help="add blinks up to this rate")
    eyes.add_argument("--blinks-at", metavar="TIMES", help="blink at these times, e.g. '1.2s, 4s'")
    eyes.add_argument("--seed", type=int, default=0, help="seed for --blink-rate timing")
    eyes.add_argument("--eye-gain", type=float, default=1.0, help="eye openness gain (1.2 = 20%% wider)")
    eyes.add_argument("--blink-depth", type=float, default=1.0, help="blink depth gain (0 = no blinks)")
    eyes.add_argument("--gaze", metavar="DX,DY", help="move the irises by DX, DY canonical px")
    body = parser.add_argument_group("mouth and torso")
    body.add_argument("--mouth-gain", type=float, default=1.0, help="lip motion gain; closed lips stay closed")
    body.add_argument("--torso-gain", type=float, default=1.0, help="shoulder motion gain around the mean")
    body.add_argument("--ease-in", type=float, default=0, metavar="FRAMES", help="fade all edits in (frames)")
    body.add_argument("--ease-out", type=float, default=0, metavar="FRAMES", help="fade all edits out (frames)")
    files = parser.add_argument_group("curves and previews")
    files.add_argument("--import-curves", type=Path, metavar="FILE", help="set curves from a .csv/.json file first")
    files.add_argument("--export-curves", type=Path, metavar="FILE", help="write the edited curves (.csv/.json)")
    files.add_argument("--sample", type=int, default=0, help="sample for export, plot and overlay")
    files.add_argument("--plot", type=Path, metavar="PNG", help="plot curves before (dashed) and after (solid)")
    parser.set_defaults(func=run)


def _pairs(text: str, option: str) -> list[tuple[str, str]]:
    """``"yaw,pitch=4"`` -> [("yaw,pitch", "4")]; ``"yaw=1.5,ty=0.5"`` -> [("yaw", "1.5"), ("ty", "0.5")]."""
    pairs, names = [], []
    for token in (t.strip() for t in text.split(",")):
        if "=" not in token:
            names.append(token)
            continue
        name, value = (part.strip() for part in token.split("=", 1))
        pairs.append((",".join(names + [name]), value))
        names = []
    if names or not pairs:
        raise ValueError(f"{option}: expected AXIS=VALUE pairs, got {text!r}")
    return pairs


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a number") from None


def _per_axis(text: str, option: str) -> dict[str, float]:
    from moda_core.editing.head_pose import parse_axes
    from moda_core.geometry import HEAD_POSE_AXES

    values = {}
    for axes, value in _pairs(text, option):
        for i in parse_axes(axes, param=option):
            values[HEAD_POSE_AXES[i]] = _number(value, option)
    return values


def _edit_head(r, args, subject):
    from moda_core import TalkingRepr
    from moda_core import editing

    if args.pose_from:
        r = editing.blend_head_pose(r, TalkingRepr.load(args.pose_from), args.pose_weight, args.pose_axes,
                                    motion_only=args.pose_motion_only)
    if args.head_gain:
        r = editing.scale_head_pose(r, **_per_axis(args.head_gain, "--head-gain"))
    if args.head_offset:
        r = editing.offset_head_pose(r, **_per_axis(args.head_offset, "--head-offset"))
    for text in args.head_smooth:
        for axes, sigma in _pairs(text, "--head-smooth"):
            r = editing.smooth_head_pose(r, _number(sigma, "--head-smooth"), axes)
    for text in args.head_clamp:
        for axes, limits in _pairs(text, "--head-clamp"):
            low, sep, high = limits.partition(":")
            if not sep:
                raise ValueError(f"--head-clamp: expected AXES=MIN:MAX, got {text!r}")
            r = editing.clamp_head_pose(r, axes, _number(low or "-inf", "--head-clamp"),
                                        _number(high or "inf", "--head-clamp"))
    if args.head_freeze:
        r = editing.freeze_head_pose(r, args.head_freeze, args.freeze_hold, args.freeze_value, subject)
    for text in args.keyframes:
        axis, sep, spec = text.partition("=")
        if not sep:
            raise ValueError(f"--keyframes: expected AXIS=SPEC, got {text!r}")
        r = editing.keyframe_head_pose(r, axis.strip(), spec, interpolation=args.interpolation,
                                       mode=args.keyframe_mode)
    return r


def _edit_face_and_body(r, args, subject):
    from moda_core import editing

    if args.remove_blinks:
        r = editing.remove_blinks(r, subject)
    if args.blink_rate is not None:
        r = editing.add_blinks(r, args.blink_rate, seed=args.seed, subject=subject)
    if args.blinks_at:
        r = editing.add_blinks_at(r, args.blinks_at, subject=subject)
    r = editing.scale_eye_openness(r, args.eye_gain, args.blink_depth, subject)
    if args.gaze:
        dx, sep, dy = args.gaze.partition(",")
        if not sep:
            raise ValueError(f"--gaze: expected DX,DY, got {args.gaze!r}")
        r = editing.shift_gaze(r, _number(dx, "--gaze"), _number(dy, "--gaze"))
    r = editing.scale_mouth(r, args.mouth_gain)
    if args.torso_gain != 1.0:
        r = editing.scale_torso(r, args.torso_gain)
    return r


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from moda_core import Subject, TalkingRepr
    from moda_core import editing

    subject = Subject.load(args.subject) if args.subject else None
    r = TalkingRepr.load(args.r)
    if args.import_curves:
        r = editing.apply_curves(r, editing.load_curves(args.import_curves), subject)
    if args.trim:
        start, sep, end = args.trim.partition(":")
        if not sep:
            raise ValueError(f"--trim: expected START:END in seconds, got {args.trim!r}")
        r = editing.trim(r, _number(start or "0", "--trim"), _number(end or "0", "--trim"))
    if args.shift:
        r = editing.time_shift(r, args.shift)
    if args.loop:
        r = editing.loop(r, args.loop, crossfade=args.crossfade)
    original = r
    r = _edit_face_and_body(_edit_head(r, args, subject), args, subject)
    r = editing.ease_edit(original, r, args.ease_in, args.ease_out)
    if args.out:
        print(f"wrote {r.save(args.out)}: {r}")
    if args.export_curves:
        print(f"wrote {editing.save_curves(r, args.export_curves, subject, args.sample)}")
    if args.plot:
        image = editing.plot_curves(r, original, sample=args.sample, subject=subject,
                                    tracks=_plot_tracks(r, subject))
        Image.fromarray((image.numpy() * 255).round().astype("uint8")).save(args.plot)
        print(f"wrote {args.plot}")
    if not r.is_offset or subject is not None:
        rates = ", ".join(f"{rate:.1f}" for rate in editing.blink_rate(r, subject))
        print(f"{r.num_frames} frames ({r.duration:.2f} s); blinks per minute per sample: {rates}")
    return 0


def _plot_tracks(r, subject) -> tuple[str, ...]:
    """Head always; eyes and mouth when they can be measured."""
    return ("head", "eyes", "mouth") if not r.is_offset or subject is not None else ("head",)
