"""Nodes that edit R between stages: head pose, eyes and blinks, mouth and torso, timing, curves files.

Every node takes R (``MODA_REPR``) and returns a new R; the input is never modified (moda_core edits return new
objects). The edits are :mod:`moda_core.editing` functions; widget ids use the same names as their parameters, so
an error from moda_core names the widget to fix. Eye and mouth edits measure lids and lips in absolute canonical
points: R from the motion generator holds offsets from the subject's template, so those nodes take an optional
``subject`` (MODA_SUBJECT) and ask for it when R holds offsets.

Head-pose axes: ``yaw`` (+ turns the face toward image left), ``pitch`` (+ nods the head down, - raises the
chin), ``roll`` (+ tilts it counter-clockwise on screen), all in degrees; ``tx``, ``ty``, ``tz`` (head position,
image px: x right, y down, z toward the camera); ``scale`` (canonicalisation scale, 120 / eye distance in px:
larger = smaller head). Offset R holds these relative to the subject's mean pose.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

import numpy as np
from comfy_api.latest import io, ui

from moda_core import editing
from moda_core.editing.curves_io import CURVES_FORMAT
from moda_core.editing.head_pose import FIT_MODES, HOLD_MODES, KEYFRAME_MODES, drive_head_pose_axis
from moda_core.editing.keyframes import INTERPOLATIONS
from moda_core.geometry import HEAD_POSE_AXES
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

from .types import CATEGORY, MODA_REPR, MODA_SUBJECT, node_error
from .util import (
    check_choice,
    check_repr,
    check_sample,
    check_subject,
    file_fingerprint,
    list_user_files,
    resolve_user_file,
    save_target,
    user_file_options,
    validate_user_file,
)

EDIT_CATEGORY = f"{CATEGORY}/Edit"
INSPECT_CATEGORY = f"{CATEGORY}/Inspect"        # nodes that read R without changing it
CURVE_SUFFIXES = (".csv", ".json")
CURVES_WHAT = ".csv or .json curves file"
CURVE_FORMATS = ("csv", "json")
TIME_UNITS = {"seconds": "s", "frames": "f"}
MAX_FRAMES = 1_000_000

AXIS_HELP = {
    "yaw": ("degrees", "turn: + toward image left"),
    "pitch": ("degrees", "nod: + head down, - chin up"),
    "roll": ("degrees", "tilt: + counter-clockwise on screen"),
    "tx": ("px", "horizontal head position, + right"),
    "ty": ("px", "vertical head position, + down"),
    "tz": ("px", "depth, + toward the camera"),
    "scale": ("scale units", "canonicalisation scale 120 / eye distance: + makes the head smaller"),
}
OFFSET_LIMITS = {"yaw": 90.0, "pitch": 90.0, "roll": 90.0, "tx": 512.0, "ty": 512.0, "tz": 512.0, "scale": 2.0}
OFFSET_STEPS = {"yaw": 0.5, "pitch": 0.5, "roll": 0.5, "tx": 1.0, "ty": 1.0, "tz": 1.0, "scale": 0.01}
AXES_TOOLTIP = ("Which head-pose axes, comma separated: yaw, pitch, roll (degrees), tx, ty, tz (px; x, y, z also "
                "accepted), scale, or 'all'.")
SUBJECT_ACTION = "connect the subject (MODA_SUBJECT) this motion was made for"
SUBJECT_TOOLTIP = ("The person R was made for. Needed when R holds offsets (what the motion generator outputs): "
                   "lids and lips are measured in absolute points, i.e. offsets plus the subject's template.")


# ---------------------------------------------------------------- shared helpers
def _blamed_input(message: str, inputs: tuple[str, ...], default: str) -> str:
    """The input an error message from moda_core is about: the first input id it names, else ``default``."""
    if "needs the subject" in message and "subject" in inputs:
        return "subject"
    for input_name in sorted(inputs, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(input_name)}(?![\w-])", message):
            return input_name
    return default


@contextmanager
def edit_errors(name: str, inputs: tuple[str, ...], default: str = "repr", action: str = "change it and run again"):
    """Turn a ValueError from moda_core into the pack's error style, naming the input it is about."""
    try:
        yield
    except ValueError as err:
        message = str(err)
        input_name = _blamed_input(message, inputs, default)
        raise node_error(name, input_name, message, SUBJECT_ACTION if input_name == "subject" else action) from err


def repr_input(tooltip: str = "The motion (R) to edit. It is not modified; the node outputs an edited copy."):
    return MODA_REPR.Input("repr", tooltip=tooltip)


def repr_output(tooltip: str = "The edited motion (R): a new object, the input R stays as it was."):
    return MODA_REPR.Output("repr", display_name="repr", tooltip=tooltip)


def subject_input():
    return MODA_SUBJECT.Input("subject", optional=True, tooltip=SUBJECT_TOOLTIP)


def ease_inputs() -> list:
    return [
        io.Int.Input("ease_in_frames", default=0, min=0, max=MAX_FRAMES, step=1,
                     tooltip="Fade the edit in over the first N frames (frames; 0 = full strength from the start)."),
        io.Int.Input("ease_out_frames", default=0, min=0, max=MAX_FRAMES, step=1,
                     tooltip="Fade the edit out over the last N frames (frames; 0 = full strength to the end)."),
    ]


def axes_input(default: str):
    return io.String.Input("axes", default=default, tooltip=AXES_TOOLTIP)


def edit_schema(cls, node_id: str, description: str, inputs: list, outputs: list | None = None,
                is_output_node: bool = False, category: str = EDIT_CATEGORY) -> io.Schema:
    return io.Schema(node_id=node_id, display_name=cls.DISPLAY_NAME, category=category,
                     description=description, inputs=inputs, outputs=outputs or [repr_output()],
                     is_output_node=is_output_node)


# ---------------------------------------------------------------- head pose
class MODAHeadPoseGain(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose Gain"

    @classmethod
    def define_schema(cls) -> io.Schema:
        gains = [io.Float.Input(axis, default=1.0, min=0.0, max=10.0, step=0.05,
                                tooltip=f"{axis} ({AXIS_HELP[axis][1]}): motion gain around the clip's mean "
                                        "(unitless; 1 = unchanged, 0.5 = calmer, 2 = double, 0 = hold the mean).")
                 for axis in HEAD_POSE_AXES]
        return edit_schema(cls, "MODA_HeadPoseGain",
                           "Scales head motion per axis around its mean over the clip: gain 0.5 on yaw halves the "
                           "side-to-side turning, 2 doubles it; 1 leaves an axis exactly as it was. Every sample "
                           "is edited; only the head pose changes.",
                           [repr_input(), *gains, *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, yaw: float, pitch: float, roll: float, tx: float, ty: float, tz: float,
                scale: float, ease_in_frames: int, ease_out_frames: int) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, (*HEAD_POSE_AXES, "ease_in_frames", "ease_out_frames")):
            return io.NodeOutput(editing.scale_head_pose(r, yaw=yaw, pitch=pitch, roll=roll, tx=tx, ty=ty, tz=tz,
                                                         scale=scale, ease_in_frames=ease_in_frames,
                                                         ease_out_frames=ease_out_frames))


class MODAHeadPoseOffset(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose Offset"

    @classmethod
    def define_schema(cls) -> io.Schema:
        offsets = [io.Float.Input(axis, default=0.0, min=-OFFSET_LIMITS[axis], max=OFFSET_LIMITS[axis],
                                  step=OFFSET_STEPS[axis],
                                  tooltip=f"{axis} ({AXIS_HELP[axis][1]}): added to every frame, in "
                                          f"{AXIS_HELP[axis][0]} (0 = unchanged).")
                   for axis in HEAD_POSE_AXES]
        return edit_schema(cls, "MODA_HeadPoseOffset",
                           "Adds a constant to head-pose axes: e.g. pitch -5 raises the chin by 5 degrees for the "
                           "whole clip, tx 10 moves the head 10 px right. Every sample is edited; only the head "
                           "pose changes.",
                           [repr_input(), *offsets, *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, yaw: float, pitch: float, roll: float, tx: float, ty: float, tz: float,
                scale: float, ease_in_frames: int, ease_out_frames: int) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, (*HEAD_POSE_AXES, "ease_in_frames", "ease_out_frames")):
            return io.NodeOutput(editing.offset_head_pose(r, yaw=yaw, pitch=pitch, roll=roll, tx=tx, ty=ty, tz=tz,
                                                          scale=scale, ease_in_frames=ease_in_frames,
                                                          ease_out_frames=ease_out_frames))


class MODAHeadPoseSmooth(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose Smooth"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_HeadPoseSmooth",
                           "Smooths head motion in time (Gaussian) on the chosen axes: removes jitter, and with a "
                           "large sigma only slow swaying is left.",
                           [repr_input(), axes_input("all"),
                            io.Float.Input("sigma_frames", default=2.0, min=0.0, max=1000.0, step=0.5,
                                           tooltip="Gaussian sigma in frames (0 = none; 2 removes jitter, 10+ "
                                                   "keeps only slow motion)."),
                            *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, axes: str, sigma_frames: float, ease_in_frames: int,
                ease_out_frames: int) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, ("axes", "sigma_frames", "ease_in_frames", "ease_out_frames")):
            return io.NodeOutput(editing.smooth_head_pose(r, sigma_frames, axes, ease_in_frames=ease_in_frames,
                                                          ease_out_frames=ease_out_frames))


class MODAHeadPoseClamp(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose Clamp"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_HeadPoseClamp",
                           "Limits the chosen head-pose axes to a range, e.g. yaw to -10..10 degrees. Values are "
                           "R's own: offsets from the subject's mean pose when R holds offsets.",
                           [repr_input(), axes_input("yaw, pitch, roll"),
                            io.Float.Input("minimum", default=-30.0, min=-4096.0, max=4096.0, step=0.5,
                                           tooltip="Lowest allowed value, in the axes' units (degrees for "
                                                   "yaw/pitch/roll, px for tx/ty/tz)."),
                            io.Float.Input("maximum", default=30.0, min=-4096.0, max=4096.0, step=0.5,
                                           tooltip="Highest allowed value, in the axes' units (degrees for "
                                                   "yaw/pitch/roll, px for tx/ty/tz)."),
                            *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, axes: str, minimum: float, maximum: float, ease_in_frames: int,
                ease_out_frames: int) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, ("axes", "minimum", "maximum", "ease_in_frames", "ease_out_frames"),
                         default="minimum"):
            return io.NodeOutput(editing.clamp_head_pose(r, axes, minimum, maximum, ease_in_frames=ease_in_frames,
                                                         ease_out_frames=ease_out_frames))


class MODAHeadPoseFreeze(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose Freeze"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_HeadPoseFreeze",
                           "Holds the chosen head-pose axes still: at the first frame's pose, the clip's mean, the "
                           "subject's rest pose, or a given value. E.g. freeze roll to stop head tilting.",
                           [repr_input(), axes_input("roll"),
                            io.Combo.Input("hold", options=list(HOLD_MODES), default="first",
                                           tooltip="first: the first frame's pose; mean: the clip's mean; rest: the "
                                                   "subject's mean pose (needs the subject on absolute R); value: "
                                                   "the value below."),
                            io.Float.Input("value", default=0.0, min=-4096.0, max=4096.0, step=0.5,
                                           tooltip="Held value with hold = value, in the axes' units (degrees or "
                                                   "px; offsets when R holds offsets)."),
                            *ease_inputs(), subject_input()])

    @classmethod
    def execute(cls, repr: TalkingRepr, axes: str, hold: str, value: float, ease_in_frames: int,
                ease_out_frames: int, subject: Subject | None = None) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        check_choice(cls.DISPLAY_NAME, "hold", hold, HOLD_MODES)
        subject = check_subject(cls.DISPLAY_NAME, subject)
        with edit_errors(cls.DISPLAY_NAME, ("axes", "hold", "value", "ease_in_frames", "ease_out_frames",
                                            "subject")):
            return io.NodeOutput(editing.freeze_head_pose(r, axes, hold, value, subject,
                                                          ease_in_frames=ease_in_frames,
                                                          ease_out_frames=ease_out_frames))


class MODAHeadPoseKeyframes(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose Keyframes"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_HeadPoseKeyframes",
                           "Drives one head-pose axis through keyframes such as '0s: 0, 1.5s: 10, 3s: -5': replace "
                           "the axis with the curve, or add the curve to the generated motion (e.g. a look to the "
                           "side at 2 s). Before the first and after the last key the curve holds its end values.",
                           [repr_input(),
                            io.Combo.Input("axis", options=list(HEAD_POSE_AXES), default="yaw",
                                           tooltip="The axis to drive: yaw, pitch, roll (degrees), tx, ty, tz (px), "
                                                   "scale."),
                            io.String.Input("keyframes", multiline=True, default="0s: 0\n1s: 5\n2s: 0",
                                            tooltip="'time: value' pairs separated by commas or new lines; time in "
                                                    "seconds ('1.5s' or '1.5') or frames ('45f'), inside the clip; "
                                                    "value in the axis' units. JSON also works: "
                                                    "[{\"t\": 1.5, \"value\": 10}]."),
                            io.Combo.Input("interpolation", options=list(INTERPOLATIONS), default="linear",
                                           tooltip="linear: straight lines between keys; cubic: smooth, never "
                                                   "overshoots the keyed values."),
                            io.Combo.Input("mode", options=list(KEYFRAME_MODES), default="add",
                                           tooltip="add: the curve is added to the existing motion (0 = unchanged); "
                                                   "replace: the axis becomes the curve (offsets when R holds "
                                                   "offsets)."),
                            *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, axis: str, keyframes: str, interpolation: str, mode: str,
                ease_in_frames: int, ease_out_frames: int) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        check_choice(cls.DISPLAY_NAME, "axis", axis, HEAD_POSE_AXES)
        check_choice(cls.DISPLAY_NAME, "interpolation", interpolation, INTERPOLATIONS)
        check_choice(cls.DISPLAY_NAME, "mode", mode, KEYFRAME_MODES)
        with edit_errors(cls.DISPLAY_NAME, ("keyframes", "ease_in_frames", "ease_out_frames"), default="keyframes",
                         action="write 'time: value' pairs inside the clip, like '0s: 0, 1.5s: 10'"):
            return io.NodeOutput(editing.keyframe_head_pose(r, axis, keyframes, interpolation=interpolation,
                                                            mode=mode, ease_in_frames=ease_in_frames,
                                                            ease_out_frames=ease_out_frames))


class MODAHeadPoseBlend(io.ComfyNode):
    DISPLAY_NAME = "MODA Head Pose From Other R"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_HeadPoseBlend",
                           "Replaces (weight 1) or mixes (0..1) the head pose of R with the head pose of another R, "
                           "e.g. one tracked from a real video or another seed. The other R is resampled to R's fps "
                           "and fitted to its length.",
                           [repr_input(),
                            MODA_REPR.Input("pose_source", tooltip="The R whose head pose is taken (1 sample, or as "
                                                                   "many as R)."),
                            io.Float.Input("weight", default=1.0, min=0.0, max=1.0, step=0.05,
                                           tooltip="0 = keep R's pose, 1 = take the other pose, between = mix "
                                                   "(unitless)."),
                            axes_input("all"),
                            io.Combo.Input("fit", options=list(FIT_MODES), default="loop",
                                           tooltip="When the other R is shorter: loop (repeat with a 0.5 s "
                                                   "crossfade), hold (hold its last frame) or stretch (resample to "
                                                   "R's duration). Longer ones are cut."),
                            io.Boolean.Input("motion_only", default=False,
                                             tooltip="Take only the other pose's motion around its mean and put it "
                                                     "around R's mean (keeps R's framing). Needed when one R holds "
                                                     "offsets and the other absolute values, or the subjects "
                                                     "differ."),
                            *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, pose_source: TalkingRepr, weight: float, axes: str, fit: str,
                motion_only: bool, ease_in_frames: int, ease_out_frames: int) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        other = check_repr(cls.DISPLAY_NAME, pose_source, "pose_source")
        check_choice(cls.DISPLAY_NAME, "fit", fit, FIT_MODES)
        with edit_errors(cls.DISPLAY_NAME, ("weight", "axes", "fit", "ease_in_frames", "ease_out_frames"),
                         default="pose_source",
                         action="connect a matching R or set motion_only"):
            return io.NodeOutput(editing.blend_head_pose(r, other, weight, axes, motion_only=motion_only, fit=fit,
                                                         ease_in_frames=ease_in_frames,
                                                         ease_out_frames=ease_out_frames))


def _curve_values(curve, xs: np.ndarray) -> np.ndarray:
    """Evaluate a CURVE widget value (a core CurveInput, or its raw {"points", "interpolation"} / point list)."""
    if hasattr(curve, "interp_array"):
        return np.asarray(curve.interp_array(xs), dtype=np.float64)
    try:                                                 # newer core: the same evaluation as its Curve Editor
        from comfy_api.input import CurveInput
        return np.asarray(CurveInput.from_raw(curve).interp_array(xs), dtype=np.float64)
    except (ImportError, AttributeError):
        pass
    raw = curve.get("points") if isinstance(curve, dict) else curve
    interpolation = curve.get("interpolation", "monotone_cubic") if isinstance(curve, dict) else "monotone_cubic"
    points = sorted((float(x), float(y)) for x, y in raw)
    px, py = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    if len(points) == 1:
        return np.full_like(xs, py[0])
    if interpolation == "linear" or len(points) == 2:
        return np.interp(xs, px, py)
    from scipy.interpolate import PchipInterpolator
    return PchipInterpolator(px, py)(np.clip(xs, px[0], px[-1]))


def _check_curve_points(curve) -> str | None:
    """Why a raw curve value is unusable, or None."""
    if hasattr(curve, "interp_array"):
        return None
    raw = curve.get("points") if isinstance(curve, dict) else curve
    try:
        points = [(float(x), float(y)) for x, y in raw]
    except (TypeError, ValueError):
        return f"{curve!r} is not a list of (x, y) points"
    if not points:
        return "the curve has no points"
    if not np.isfinite(np.asarray(points)).all() or any(not 0 <= x <= 1 for x, _ in points):
        return f"points must be finite with x in 0..1, got {points}"
    return None


class MODAHeadPoseCurve(io.ComfyNode):
    """Registered only when the running ComfyUI has the CURVE widget (``io.Curve``, newer than 0.8.0)."""

    DISPLAY_NAME = "MODA Head Pose Curve"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_HeadPoseCurve",
                           "Drives one head-pose axis with a drawn curve: the curve's x runs over the clip's "
                           "duration (0 = first frame, 1 = last), its y (0..1) maps to min_value..max_value in the "
                           "axis' units. Add it to the generated motion or replace the axis.",
                           [repr_input(),
                            io.Combo.Input("axis", options=list(HEAD_POSE_AXES), default="yaw",
                                           tooltip="The axis to drive: yaw, pitch, roll (degrees), tx, ty, tz (px), "
                                                   "scale."),
                            io.Curve.Input("curve", default=[(0.0, 0.5), (1.0, 0.5)],
                                           tooltip="x: time over the clip (0..1 = start..end); y: value, 0 = "
                                                   "min_value, 1 = max_value. The default flat line at 0.5 is 0 "
                                                   "with the default range (no change in add mode)."),
                            io.Float.Input("min_value", default=-10.0, min=-4096.0, max=4096.0, step=0.5,
                                           tooltip="Value at curve y = 0, in the axis' units (degrees or px)."),
                            io.Float.Input("max_value", default=10.0, min=-4096.0, max=4096.0, step=0.5,
                                           tooltip="Value at curve y = 1, in the axis' units (degrees or px)."),
                            io.Combo.Input("mode", options=list(KEYFRAME_MODES), default="add",
                                           tooltip="add: the curve value is added to the existing motion; replace: "
                                                   "the axis becomes the curve value."),
                            *ease_inputs()])

    @classmethod
    def execute(cls, repr: TalkingRepr, axis: str, curve, min_value: float, max_value: float, mode: str,
                ease_in_frames: int, ease_out_frames: int) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        r = check_repr(name, repr)
        check_choice(name, "axis", axis, HEAD_POSE_AXES)
        check_choice(name, "mode", mode, KEYFRAME_MODES)
        problem = _check_curve_points(curve)
        if problem:
            raise node_error(name, "curve", problem, "reset the curve widget")
        xs = np.arange(r.num_frames, dtype=np.float64) / max(r.num_frames - 1, 1)
        values = float(min_value) + _curve_values(curve, xs) * (float(max_value) - float(min_value))
        if not np.isfinite(values).all():
            raise node_error(name, "curve", "evaluates to non-finite values", "reset the curve widget")
        with edit_errors(name, ("ease_in_frames", "ease_out_frames"), default="curve"):
            return io.NodeOutput(drive_head_pose_axis(r, axis, values, mode, ease_in_frames, ease_out_frames))


# ---------------------------------------------------------------- curves files
def _looks_like_curves(path: str) -> bool:
    """A CSV whose header has a 'frame' column, or a JSON whose start says "moda-curves" (reads the start only)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(512).decode("utf-8", errors="replace")
    except OSError:
        return False
    if path.endswith(".csv"):
        return "frame" in [cell.strip() for cell in start.splitlines()[0].split(",")] if start else False
    return f'"{CURVES_FORMAT}"' in start


def list_curve_files() -> list[str]:
    """Curves files in the input folder (any depth), then MODA Export Curves results as ``moda/<name> [output]``."""
    return list_user_files(CURVE_SUFFIXES, _looks_like_curves)


def resolve_curves_path(name: str) -> str:
    return resolve_user_file(MODAApplyCurves.DISPLAY_NAME, "curves_file", name)


class MODAExportCurves(io.ComfyNode):
    DISPLAY_NAME = "MODA Export Curves"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_ExportCurves",
                           "Writes one sample's curves (head pose per axis; eye and mouth openness when measurable) "
                           "to output/moda/<prefix>_00001_.csv or .json, one row per frame, to edit in a "
                           "spreadsheet or script and apply back with MODA Apply Curves.",
                           [repr_input("The motion (R) whose curves are written."),
                            io.String.Input("filename_prefix", default="curves",
                                            tooltip="File name start, inside output/moda/. May contain sub-folders "
                                                    "(e.g. 'cathy/take'); a counter _00001_ is added."),
                            io.Combo.Input("format", options=list(CURVE_FORMATS), default="csv",
                                           tooltip="csv: a header row and one row per frame; json: "
                                                   "{\"format\": \"moda-curves\", \"fps\", \"frames\": [...]}."),
                            io.Int.Input("sample", default=0, min=0, max=4095, step=1,
                                         tooltip="Which sample of R to write (0 = first seed)."),
                            subject_input()],
                           outputs=[io.String.Output("path", display_name="path",
                                                     tooltip="Full path of the curves file written.")],
                           is_output_node=True, category=INSPECT_CATEGORY)

    @classmethod
    def execute(cls, repr: TalkingRepr, filename_prefix: str, format: str, sample: int,
                subject: Subject | None = None) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        r = check_repr(name, repr)
        subject = check_subject(name, subject)
        check_choice(name, "format", format, CURVE_FORMATS)
        check_sample(name, r, sample)
        output_dir, folder, stem = save_target(name, filename_prefix, "curves")
        with edit_errors(name, ("sample", "subject")):
            path = str(editing.save_curves(r, os.path.join(folder, f"{stem}.{format}"), subject, sample))
        measured = "" if r.is_offset and subject is None else ", eye and mouth openness"
        return io.NodeOutput(path, ui=ui.PreviewText(f"saved {os.path.relpath(path, output_dir)} ({r.num_frames} "
                                                     f"frames, head pose{measured})"))


class MODAApplyCurves(io.ComfyNode):
    DISPLAY_NAME = "MODA Apply Curves"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_ApplyCurves",
                           "Sets R's head pose, eye openness and mouth openness from a curves file (.csv or .json, "
                           "as written by MODA Export Curves, edited anywhere). Columns left out stay as they are; "
                           "the file must have as many frames as R.",
                           [repr_input(),
                            io.Combo.Input("curves_file", options=user_file_options(list_curve_files(), CURVES_WHAT),
                                           tooltip="A curves .csv/.json in the input folder, or 'moda/... [output]' "
                                                   "for one written by MODA Export Curves."),
                            io.Int.Input("sample", default=-1, min=-1, max=4095, step=1,
                                         tooltip="Which sample of R gets the curves (-1 = every sample)."),
                            subject_input()])

    @classmethod
    def execute(cls, repr: TalkingRepr, curves_file: str, sample: int,
                subject: Subject | None = None) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        r = check_repr(name, repr)
        subject = check_subject(name, subject)
        if sample != -1:
            check_sample(name, r, sample)
        path = resolve_curves_path(curves_file)
        with edit_errors(name, ("curves_file",), default="curves_file",
                         action="fix the file (see MODA Export Curves for the layout)"):
            curves = editing.load_curves(path)
        with edit_errors(name, ("sample", "subject"), default="curves_file",
                         action="use a curves file with one row per frame of R"):
            return io.NodeOutput(editing.apply_curves(r, curves, subject, None if sample == -1 else sample))

    @classmethod
    def validate_inputs(cls, curves_file: str) -> bool | str:
        return validate_user_file(cls.DISPLAY_NAME, "curves_file", curves_file, CURVE_SUFFIXES, CURVES_WHAT,
                                  "write it with MODA Export Curves")

    @classmethod
    def fingerprint_inputs(cls, curves_file: str, **_):
        """Re-run when the file's bytes change (sha256, as core LoadAudio does)."""
        return file_fingerprint(lambda: resolve_curves_path(curves_file))


# ---------------------------------------------------------------- eyes
def _depth_input():
    return io.Float.Input("depth", default=1.0, min=0.0, max=1.0, step=0.05,
                          tooltip="How far new blinks close the eyes (unitless: 1 = fully shut, 0.5 = half way).")


class MODAAddBlinks(io.ComfyNode):
    DISPLAY_NAME = "MODA Add Blinks"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_AddBlinks",
                           "Adds blinks at random times until each sample blinks the target number of times per "
                           "minute (existing blinks count; none are removed). People blink about 15-20 times a "
                           "minute while talking.",
                           [repr_input(),
                            io.Float.Input("per_minute", default=15.0, min=0.0, max=120.0, step=0.5,
                                           tooltip="Target blink rate in blinks per minute (existing blinks "
                                                   "included)."),
                            io.Int.Input("seed", default=0, min=0, max=2**31 - 1, step=1,
                                         control_after_generate=False,    # an edit stays put between runs
                                         tooltip="Seed for the blink times (the same seed gives the same blinks)."),
                            _depth_input(), subject_input()])

    @classmethod
    def execute(cls, repr: TalkingRepr, per_minute: float, seed: int, depth: float,
                subject: Subject | None = None) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        subject = check_subject(cls.DISPLAY_NAME, subject)
        with edit_errors(cls.DISPLAY_NAME, ("per_minute", "seed", "depth", "subject")):
            return io.NodeOutput(editing.add_blinks(r, per_minute, seed=seed, subject=subject, depth=depth))


class MODARemoveBlinks(io.ComfyNode):
    DISPLAY_NAME = "MODA Remove Blinks"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_RemoveBlinks",
                           "Removes the blinks of R: eye contours and irises are interpolated across each blink "
                           "from the open eye around it (brows untouched).",
                           [repr_input(),
                            io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.05,
                                           tooltip="A blink is where eye openness drops below this fraction of the "
                                                   "open level (unitless; lower = only deep blinks)."),
                            subject_input()])

    @classmethod
    def execute(cls, repr: TalkingRepr, threshold: float, subject: Subject | None = None) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        subject = check_subject(cls.DISPLAY_NAME, subject)
        with edit_errors(cls.DISPLAY_NAME, ("threshold", "subject")):
            return io.NodeOutput(editing.remove_blinks(r, subject, threshold))


class MODABlinksAt(io.ComfyNode):
    DISPLAY_NAME = "MODA Blinks At Times"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_BlinksAt",
                           "Adds blinks with the eyes fully shut at the given times (every sample), e.g. on a "
                           "pause or a stressed word.",
                           [repr_input(),
                            io.String.Input("times", default="1.0s, 3.5s",
                                            tooltip="Times of the blinks, comma separated: seconds ('1.2s' or "
                                                    "'1.2') or frames ('45f'), inside the clip."),
                            _depth_input(), subject_input()])

    @classmethod
    def execute(cls, repr: TalkingRepr, times: str, depth: float, subject: Subject | None = None) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        subject = check_subject(cls.DISPLAY_NAME, subject)
        with edit_errors(cls.DISPLAY_NAME, ("times", "depth", "subject"), default="times",
                         action="write times inside the clip, like '1.2s, 3.5s' or '45f'"):
            return io.NodeOutput(editing.add_blinks_at(r, times, subject=subject, depth=depth))


class MODAEyeOpenness(io.ComfyNode):
    DISPLAY_NAME = "MODA Eye Openness"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_EyeOpenness",
                           "Scales eye openness: gain opens the eyes wider or narrows them, blink_depth makes the "
                           "blinks deeper or shallower (0 removes them by flattening).",
                           [repr_input(),
                            io.Float.Input("gain", default=1.0, min=0.0, max=3.0, step=0.05,
                                           tooltip="Openness gain around closed (unitless: 1.2 = eyes 20% wider, 0.8 "
                                                   "narrower, 1 = unchanged)."),
                            io.Float.Input("blink_depth", default=1.0, min=0.0, max=3.0, step=0.05,
                                           tooltip="Gain of the blinks around the open level (unitless: 0 = no "
                                                   "blinks, 0.5 = half-depth, 1 = unchanged)."),
                            subject_input()])

    @classmethod
    def execute(cls, repr: TalkingRepr, gain: float, blink_depth: float,
                subject: Subject | None = None) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        subject = check_subject(cls.DISPLAY_NAME, subject)
        with edit_errors(cls.DISPLAY_NAME, ("gain", "blink_depth", "subject")):
            return io.NodeOutput(editing.scale_eye_openness(r, gain, blink_depth, subject))


class MODAGaze(io.ComfyNode):
    DISPLAY_NAME = "MODA Gaze Offset"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_Gaze",
                           "Moves both irises by (dx, dy) canonical px (the eyes are 120 px apart), e.g. to look "
                           "slightly up or to the side for the whole clip.",
                           [repr_input(),
                            io.Float.Input("dx", default=0.0, min=-30.0, max=30.0, step=0.5,
                                           tooltip="Horizontal iris shift in canonical px (+ = image right; the eyes "
                                                   "are 120 px apart, about 3 px is a clear glance)."),
                            io.Float.Input("dy", default=0.0, min=-30.0, max=30.0, step=0.5,
                                           tooltip="Vertical iris shift in canonical px (+ = down, - = up).")])

    @classmethod
    def execute(cls, repr: TalkingRepr, dx: float, dy: float) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, ("dx", "dy")):
            return io.NodeOutput(editing.shift_gaze(r, dx, dy))


def describe_blinks(r: TalkingRepr, subject: Subject | None, threshold: float) -> str:
    lines = [f"{r.num_frames} frames at {r.fps:g} fps ({r.duration:.2f} s), blink threshold {threshold:g}"]
    spans = editing.detect_blinks(r, subject, threshold)
    openness = editing.eye_openness(r, subject)
    mouth = editing.mouth_openness(r, subject)
    for s, blinks in enumerate(spans):
        times = ", ".join(f"{(start + stop - 1) / 2 / r.fps:.2f}s" for start, stop in blinks) or "none"
        lines.append(f"sample {s}: {len(blinks)} blink(s), {len(blinks) * 60.0 / r.duration:.1f} per minute; "
                     f"at {times}")
        lines.append(f"  eye openness median {float(openness[s].median()):.3f} (left/right mean "
                     f"{float(openness[s, :, 0].mean()):.3f}/{float(openness[s, :, 1].mean()):.3f}); mouth "
                     f"openness {float(mouth[s].min()):.1f}..{float(mouth[s].max()):.1f} px")
    return "\n".join(lines)


class MODAMeasureBlinks(io.ComfyNode):
    DISPLAY_NAME = "MODA Measure Blinks"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_MeasureBlinks",
                           "Measures R's blinks: the blink rate (blinks per minute) of one sample, and a text "
                           "summary with each sample's blink times, eye openness and mouth opening range.",
                           [MODA_REPR.Input("repr", tooltip="The motion (R) to measure."),
                            io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.05,
                                           tooltip="A blink is where eye openness drops below this fraction of the "
                                                   "open level (unitless)."),
                            io.Int.Input("sample", default=0, min=0, max=4095, step=1,
                                         tooltip="Sample whose blink rate is output (the summary lists all)."),
                            subject_input()],
                           outputs=[io.Float.Output("blink_rate", display_name="blink_rate",
                                                    tooltip="Blinks per minute of the chosen sample."),
                                    io.String.Output("summary", display_name="summary",
                                                     tooltip="Multi-line text: blink count, rate and times per "
                                                             "sample, eye and mouth openness (connect to Preview "
                                                             "as Text).")], category=INSPECT_CATEGORY)

    @classmethod
    def execute(cls, repr: TalkingRepr, threshold: float, sample: int,
                subject: Subject | None = None) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        subject = check_subject(cls.DISPLAY_NAME, subject)
        check_sample(cls.DISPLAY_NAME, r, sample)
        with edit_errors(cls.DISPLAY_NAME, ("threshold", "subject")):
            rate = editing.blink_rate(r, subject, threshold)[sample]
            return io.NodeOutput(float(rate), describe_blinks(r, subject, threshold))


# ---------------------------------------------------------------- mouth and torso
class MODAMouthGain(io.ComfyNode):
    DISPLAY_NAME = "MODA Mouth Gain"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_MouthGain",
                           "Exaggerates (gain > 1) or calms (< 1) lip motion. Each frame's lips move away from the "
                           "closed-mouth pose by gain times as much, so closed lips on silence stay closed.",
                           [repr_input(),
                            io.Float.Input("gain", default=1.0, min=0.0, max=5.0, step=0.05,
                                           tooltip="Lip motion gain (unitless: 1 = unchanged, 1.3 = 30% wider "
                                                   "articulation, 0 = lips held closed).")])

    @classmethod
    def execute(cls, repr: TalkingRepr, gain: float) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, ("gain",)):
            return io.NodeOutput(editing.scale_mouth(r, gain))


class MODATorsoGain(io.ComfyNode):
    DISPLAY_NAME = "MODA Torso Gain"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_TorsoGain",
                           "Scales shoulder motion around each sample's mean torso: 0 holds the shoulders still, 2 "
                           "doubles their movement.",
                           [repr_input(),
                            io.Float.Input("gain", default=1.0, min=0.0, max=5.0, step=0.05,
                                           tooltip="Shoulder motion gain (unitless: 1 = unchanged, 0 = still).")])

    @classmethod
    def execute(cls, repr: TalkingRepr, gain: float) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, ("gain",)):
            return io.NodeOutput(editing.scale_torso(r, gain))


# ---------------------------------------------------------------- time
def _unit_input(tooltip: str):
    return io.Combo.Input("unit", options=list(TIME_UNITS), default="seconds", tooltip=tooltip)


class MODATrim(io.ComfyNode):
    DISPLAY_NAME = "MODA Trim"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_Trim",
                           "Keeps the part of R from start to end (every track; the audio must be trimmed the same "
                           "way to stay in sync).",
                           [repr_input(),
                            io.Float.Input("start", default=0.0, min=0.0, max=float(MAX_FRAMES), step=0.1,
                                           tooltip="First kept time, in seconds or frames (see unit)."),
                            io.Float.Input("end", default=0.0, min=-float(MAX_FRAMES), max=float(MAX_FRAMES),
                                           step=0.1,
                                           tooltip="End (excluded), in seconds or frames: 0 = to the end, negative "
                                                   "= counted back from the end."),
                            _unit_input("Unit of start and end: seconds (rounded to the nearest frame) or frames.")])

    @classmethod
    def execute(cls, repr: TalkingRepr, start: float, end: float, unit: str) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        check_choice(cls.DISPLAY_NAME, "unit", unit, TIME_UNITS)
        with edit_errors(cls.DISPLAY_NAME, ("start", "end"), default="end",
                         action="keep at least one frame inside R"):
            return io.NodeOutput(editing.trim(r, start, end, unit=TIME_UNITS[unit]))


class MODATimeShift(io.ComfyNode):
    DISPLAY_NAME = "MODA Time Shift"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_TimeShift",
                           "Shifts motion in time by whole frames, keeping the length: positive delays it, negative "
                           "advances it. E.g. shift only head_pose against the lips.",
                           [repr_input(),
                            io.Int.Input("frames", default=0, min=-MAX_FRAMES, max=MAX_FRAMES, step=1,
                                         tooltip="Shift in frames: + delays (the first frame is repeated at the "
                                                 "start), - advances (the last frame is repeated at the end)."),
                            io.String.Input("tracks", default="all",
                                            tooltip="Tracks to shift, comma separated: mouth, eyes, face, "
                                                    "head_pose, torso, or 'all'.")])

    @classmethod
    def execute(cls, repr: TalkingRepr, frames: int, tracks: str) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        with edit_errors(cls.DISPLAY_NAME, ("frames", "tracks")):
            return io.NodeOutput(editing.time_shift(r, frames, tracks))


class MODALoop(io.ComfyNode):
    DISPLAY_NAME = "MODA Loop"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return edit_schema(cls, "MODA_Loop",
                           "Repeats R until it lasts the given length (then cuts), with an optional crossfade at "
                           "each seam so motion continues without a jump. A shorter length trims.",
                           [repr_input(),
                            io.Float.Input("length", default=10.0, min=0.0, max=float(MAX_FRAMES), step=0.5,
                                           tooltip="Length of the result, in seconds or frames (see unit)."),
                            io.Float.Input("crossfade", default=0.0, min=0.0, max=float(MAX_FRAMES), step=0.1,
                                           tooltip="Blend across each seam, in seconds or frames (at most half of "
                                                   "R)."),
                            _unit_input("Unit of length and crossfade: seconds or frames.")])

    @classmethod
    def execute(cls, repr: TalkingRepr, length: float, crossfade: float, unit: str) -> io.NodeOutput:
        r = check_repr(cls.DISPLAY_NAME, repr)
        check_choice(cls.DISPLAY_NAME, "unit", unit, TIME_UNITS)
        with edit_errors(cls.DISPLAY_NAME, ("length", "crossfade"), default="length"):
            return io.NodeOutput(editing.loop(r, length, unit=TIME_UNITS[unit], crossfade=crossfade))


# ---------------------------------------------------------------- registration
def node_list() -> list[type[io.ComfyNode]]:
    """The nodes this module registers; the curve-driven one only where ComfyUI has the CURVE widget type."""
    nodes = [MODAHeadPoseGain, MODAHeadPoseOffset, MODAHeadPoseSmooth, MODAHeadPoseClamp, MODAHeadPoseFreeze,
             MODAHeadPoseKeyframes, MODAHeadPoseBlend, MODAExportCurves, MODAApplyCurves, MODAAddBlinks,
             MODARemoveBlinks, MODABlinksAt, MODAEyeOpenness, MODAGaze, MODAMeasureBlinks, MODAMouthGain,
             MODATorsoGain, MODATrim, MODATimeShift, MODALoop]
    if hasattr(io, "Curve"):
        nodes.insert(nodes.index(MODAHeadPoseBlend) + 1, MODAHeadPoseCurve)
    return nodes


NODES = node_list()
