"""R-editing nodes (head pose, eyes, mouth, torso, timing, curves files) and plot nodes, run through the doubles.

moda_core.editing itself is tested in test_editing_*.py; here: schemas, wiring (widget -> parameter), that the
input R is never modified, that untouched tracks stay equal, and the pack's error style naming the input.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import REPO_ROOT, ValidationFailed, fingerprint, object_info, run_node

from moda_core import TalkingRepr
from moda_core.editing import (blink_rate, detect_blinks, eye_openness, load_curves, mouth_openness,
                               overlay_landmarks)
from moda_core.geometry import HEAD_POSE_AXES
from moda_core.landmarks import eye_indices
from test_editing_support import make_talking, subject, template  # noqa: F401  (fixtures)

EDIT_NODES = {"MODA_HeadPoseGain", "MODA_HeadPoseOffset", "MODA_HeadPoseSmooth", "MODA_HeadPoseClamp",
              "MODA_HeadPoseFreeze", "MODA_HeadPoseKeyframes", "MODA_HeadPoseBlend", "MODA_ApplyCurves",
              "MODA_AddBlinks", "MODA_RemoveBlinks", "MODA_BlinksAt", "MODA_EyeOpenness", "MODA_Gaze",
              "MODA_MouthGain", "MODA_TorsoGain", "MODA_Trim", "MODA_TimeShift", "MODA_Loop"}
OTHER_NODES = {"MODA_ExportCurves", "MODA_MeasureBlinks", "MODA_PlotCurves", "MODA_OverlayLandmarks"}
WITH_SUBJECT = {"MODA_HeadPoseFreeze", "MODA_ApplyCurves", "MODA_AddBlinks", "MODA_RemoveBlinks", "MODA_BlinksAt",
                "MODA_EyeOpenness", "MODA_ExportCurves", "MODA_MeasureBlinks", "MODA_PlotCurves"}
EASE = {"ease_in_frames": 0, "ease_out_frames": 0}
GAINS = {axis: 1.0 for axis in HEAD_POSE_AXES}
OFFSETS = {axis: 0.0 for axis in HEAD_POSE_AXES}


# ---------------------------------------------------------------- data
@pytest.fixture(scope="module")
def talking(template):
    """Absolute R: 3 s at 30 fps, 2 samples, a blink at 1 s."""
    return make_talking(template, seconds=3, samples=2, blinks_at=(1.0,))


@pytest.fixture(scope="module")
def long_talking(template):
    """Absolute R: 12 s, one blink at 2 s (5 blinks per minute), with a face track."""
    return make_talking(template, seconds=12, blinks_at=(2.0,), face=True)


def snapshot(r: TalkingRepr) -> dict:
    return {k: v.clone() for k, v in r.tracks().items()}


def assert_unchanged(r: TalkingRepr, before: dict):
    for name, value in before.items():
        assert torch.equal(getattr(r, name), value), f"input R.{name} was modified"


def assert_only(changed: set[str], before: TalkingRepr, after: TalkingRepr):
    assert after is not before
    for name, value in before.tracks().items():
        if name not in changed:
            assert torch.equal(getattr(after, name), value), f"R.{name} changed"


def run(moda_nodes, node_id: str, **inputs) -> Any:
    """Run a node; returns its single output (or the tuple of outputs)."""
    args = run_node(moda_nodes[node_id], **inputs).args
    return args[0] if len(args) == 1 else args


def amplitude(values: torch.Tensor) -> torch.Tensor:
    return values - values.mean(dim=1, keepdim=True)


# ---------------------------------------------------------------- schemas
@pytest.fixture(scope="module")
def infos(moda_nodes):
    return {node_id: object_info(moda_nodes[node_id]) for node_id in EDIT_NODES | OTHER_NODES}


def test_nodes_are_registered_under_moda_edit_and_inspect(moda_nodes, infos):
    """Nodes that change R sit in MODA/Edit; those that only read it (plots, measures, export) in MODA/Inspect."""
    assert EDIT_NODES | OTHER_NODES <= set(moda_nodes)
    for node_id, info in infos.items():
        assert info["category"] == ("MODA/Edit" if node_id in EDIT_NODES else "MODA/Inspect"), node_id
        assert info["display_name"].startswith("MODA "), node_id
        assert len(info["description"]) > 60, node_id
        for category in ("required", "optional"):
            for name, (_, options) in info["input"].get(category, {}).items():
                assert len(options.get("tooltip", "")) > 15, f"{node_id}.{name}"
        assert all(t and len(t) > 15 for t in info["output_tooltips"]), node_id


def test_edit_nodes_take_and_return_r(infos):
    for node_id in EDIT_NODES:
        info = infos[node_id]
        assert info["input"]["required"]["repr"][0] == "MODA_REPR", node_id
        assert info["output"] == ["MODA_REPR"] and info["output_name"] == ["repr"], node_id
        assert not info["output_node"], node_id
    for node_id in WITH_SUBJECT:
        assert infos[node_id]["input"]["optional"]["subject"][0] == "MODA_SUBJECT", node_id
        assert "offsets" in infos[node_id]["input"]["optional"]["subject"][1]["tooltip"]
    assert infos["MODA_OverlayLandmarks"]["input"]["required"]["subject"][0] == "MODA_SUBJECT"


def test_head_pose_widgets_carry_defaults_and_units(infos):
    gain = infos["MODA_HeadPoseGain"]["input"]["required"]
    offset = infos["MODA_HeadPoseOffset"]["input"]["required"]
    assert list(gain) == ["repr", *HEAD_POSE_AXES, "ease_in_frames", "ease_out_frames"]
    for axis in HEAD_POSE_AXES:
        assert gain[axis][0] == "FLOAT" and gain[axis][1]["default"] == 1.0 and gain[axis][1]["min"] == 0.0
        assert offset[axis][0] == "FLOAT" and offset[axis][1]["default"] == 0.0
    for axis in ("yaw", "pitch", "roll"):
        assert "degrees" in offset[axis][1]["tooltip"]
    for axis in ("tx", "ty", "tz"):
        assert "px" in offset[axis][1]["tooltip"]
    assert "frames" in gain["ease_in_frames"][1]["tooltip"]
    keyframes = infos["MODA_HeadPoseKeyframes"]["input"]["required"]
    assert keyframes["keyframes"][1]["multiline"] is True
    assert keyframes["axis"][1]["options"] == list(HEAD_POSE_AXES)
    assert keyframes["interpolation"][1]["options"] == ["linear", "cubic"]
    assert keyframes["mode"][1]["options"] == ["replace", "add"]
    assert infos["MODA_HeadPoseFreeze"]["input"]["required"]["hold"][1]["options"] == ["first", "mean", "rest",
                                                                                       "value"]
    blend = infos["MODA_HeadPoseBlend"]["input"]["required"]
    assert blend["pose_source"][0] == "MODA_REPR" and blend["weight"][1]["max"] == 1.0


def test_other_schemas(infos):
    assert infos["MODA_ExportCurves"]["output_node"] is True
    assert infos["MODA_ExportCurves"]["output"] == ["STRING"]
    assert infos["MODA_ExportCurves"]["input"]["hidden"] == {"prompt": ("PROMPT",), "extra_pnginfo": ("EXTRA_PNGINFO",)}
    assert infos["MODA_MeasureBlinks"]["output"] == ["FLOAT", "STRING"]
    assert infos["MODA_MeasureBlinks"]["output_name"] == ["blink_rate", "summary"]
    assert "per minute" in infos["MODA_AddBlinks"]["input"]["required"]["per_minute"][1]["tooltip"]
    assert "px" in infos["MODA_Gaze"]["input"]["required"]["dx"][1]["tooltip"]
    plot = infos["MODA_PlotCurves"]
    assert plot["output"] == ["IMAGE"] and plot["input"]["optional"]["before"][0] == "MODA_REPR"
    assert plot["input"]["required"]["width"][1]["default"] == 1024
    overlay = infos["MODA_OverlayLandmarks"]
    assert overlay["output"] == ["IMAGE"] and overlay["input"]["required"]["every_n"][1]["min"] == 1


# ---------------------------------------------------------------- head pose
def test_gain_scales_one_axis_around_its_mean(moda_nodes, talking):
    before = snapshot(talking)
    out = run(moda_nodes, "MODA_HeadPoseGain", repr=talking, **{**GAINS, "yaw": 2.0}, **EASE)
    assert torch.allclose(amplitude(out.head_pose[..., 0]), 2 * amplitude(talking.head_pose[..., 0]), atol=1e-4)
    assert torch.allclose(out.head_pose[..., 0].mean(1), talking.head_pose[..., 0].mean(1), atol=1e-4)
    assert torch.equal(out.head_pose[..., 1:], talking.head_pose[..., 1:])
    assert_only({"head_pose"}, talking, out)
    assert_unchanged(talking, before)
    calmer = run(moda_nodes, "MODA_HeadPoseGain", repr=talking, **{**GAINS, "yaw": 0.5, "tx": 0.0}, **EASE)
    assert torch.allclose(calmer.head_pose[..., 3], talking.head_pose[..., 3].mean(1, keepdim=True).expand(2, -1),
                          atol=1e-4)


def test_offset_and_ease(moda_nodes, talking):
    out = run(moda_nodes, "MODA_HeadPoseOffset", repr=talking, **{**OFFSETS, "pitch": -5.0, "tx": 3.0}, **EASE)
    assert torch.allclose(out.head_pose[..., 1], talking.head_pose[..., 1] - 5, atol=1e-5)
    assert torch.allclose(out.head_pose[..., 3], talking.head_pose[..., 3] + 3, atol=1e-4)
    assert torch.equal(out.head_pose[..., 0], talking.head_pose[..., 0])
    assert_only({"head_pose"}, talking, out)
    eased = run(moda_nodes, "MODA_HeadPoseOffset", repr=talking, **{**OFFSETS, "pitch": -5.0},
                ease_in_frames=10, ease_out_frames=0)
    assert torch.equal(eased.head_pose[:, 0], talking.head_pose[:, 0])
    assert torch.allclose(eased.head_pose[:, 10:, 1], out.head_pose[:, 10:, 1])


def test_smooth_clamp_freeze(moda_nodes, talking, subject):
    smooth = run(moda_nodes, "MODA_HeadPoseSmooth", repr=talking, axes="yaw", sigma_frames=6.0, **EASE)
    assert smooth.head_pose[..., 0].diff(dim=1).abs().max() < talking.head_pose[..., 0].diff(dim=1).abs().max()
    assert torch.equal(smooth.head_pose[..., 1:], talking.head_pose[..., 1:])
    clamped = run(moda_nodes, "MODA_HeadPoseClamp", repr=talking, axes="yaw, pitch", minimum=-1.0, maximum=1.0,
                  **EASE)
    assert clamped.head_pose[..., :2].abs().max() <= 1.0 and talking.head_pose[..., 0].abs().max() > 5
    assert torch.equal(clamped.head_pose[..., 2:], talking.head_pose[..., 2:])
    frozen = run(moda_nodes, "MODA_HeadPoseFreeze", repr=talking, axes="roll", hold="first", value=0.0, **EASE)
    assert torch.equal(frozen.head_pose[..., 2], talking.head_pose[:, :1, 2].expand(2, talking.num_frames))
    rest = run(moda_nodes, "MODA_HeadPoseFreeze", repr=talking, axes="yaw", hold="rest", value=0.0, **EASE,
               subject=subject)
    assert torch.allclose(rest.head_pose[..., 0], torch.full((2, talking.num_frames), 2.0))
    with pytest.raises(ValueError, match=r"^MODA Head Pose Freeze: input 'subject': hold='rest' on absolute R "
                                         r"needs the subject.*, connect the subject"):
        run(moda_nodes, "MODA_HeadPoseFreeze", repr=talking, axes="yaw", hold="rest", value=0.0, **EASE)
    with pytest.raises(ValueError, match=r"^MODA Head Pose Smooth: input 'axes': axes: unknown name 'nose'"):
        run(moda_nodes, "MODA_HeadPoseSmooth", repr=talking, axes="nose", sigma_frames=1.0, **EASE)
    with pytest.raises(ValueError, match=r"^MODA Head Pose Clamp: input 'minimum': clamp needs minimum <= maximum"):
        run(moda_nodes, "MODA_HeadPoseClamp", repr=talking, axes="yaw", minimum=2.0, maximum=1.0, **EASE)


def test_keyframes(moda_nodes, talking):
    add = run(moda_nodes, "MODA_HeadPoseKeyframes", repr=talking, axis="yaw", keyframes="0s: 0\n1s: 10\n2s: 0",
              interpolation="linear", mode="add", **EASE)
    delta = add.head_pose[..., 0] - talking.head_pose[..., 0]
    assert torch.allclose(delta[:, 30], torch.full((2,), 10.0), atol=1e-4)
    assert torch.allclose(delta[:, 15], torch.full((2,), 5.0), atol=1e-4)
    assert torch.equal(add.head_pose[..., 1:], talking.head_pose[..., 1:])
    replace = run(moda_nodes, "MODA_HeadPoseKeyframes", repr=talking, axis="ty", keyframes="45f: 250",
                  interpolation="cubic", mode="replace", **EASE)
    assert torch.equal(replace.head_pose[..., 4], torch.full((2, talking.num_frames), 250.0))
    with pytest.raises(ValueError, match=r"^MODA Head Pose Keyframes: input 'keyframes': keyframes: time '9s' is "
                                         r"outside the clip .*, write 'time: value' pairs"):
        run(moda_nodes, "MODA_HeadPoseKeyframes", repr=talking, axis="yaw", keyframes="0s: 0, 9s: 3",
            interpolation="linear", mode="add", **EASE)
    with pytest.raises(ValueError, match=r"input 'mode': unknown option 'multiply'"):
        run(moda_nodes, "MODA_HeadPoseKeyframes", repr=talking, axis="yaw", keyframes="0s: 0",
            interpolation="linear", mode="multiply", **EASE)


def test_blend_with_other_r(moda_nodes, talking, template, subject):
    other = make_talking(template, seconds=3, seed=1)
    other = other.replace(head_pose=other.head_pose.flip(1))
    blend = dict(axes="all", fit="loop", motion_only=False, **EASE)
    taken = run(moda_nodes, "MODA_HeadPoseBlend", repr=talking, pose_source=other, weight=1.0, **blend)
    assert torch.equal(taken.head_pose, other.head_pose.expand(2, -1, -1))
    assert_only({"head_pose"}, talking, taken)
    half = run(moda_nodes, "MODA_HeadPoseBlend", repr=talking, pose_source=other, weight=0.5,
               **{**blend, "axes": "yaw"})
    assert torch.allclose(half.head_pose[..., 0], (talking.head_pose[..., 0] + other.head_pose[..., 0]) / 2,
                          atol=1e-5)
    assert torch.equal(half.head_pose[..., 1:], talking.head_pose[..., 1:])
    with pytest.raises(ValueError, match=r"^MODA Head Pose From Other R: input 'pose_source': one R holds offsets"):
        run(moda_nodes, "MODA_HeadPoseBlend", repr=talking, pose_source=other.to_offsets(subject), weight=1.0,
            **blend)
    with pytest.raises(ValueError, match=r"input 'pose_source': expected R \(TalkingRepr\), got NoneType"):
        run(moda_nodes, "MODA_HeadPoseBlend", repr=talking, pose_source=None, weight=1.0, **blend)


# ---------------------------------------------------------------- curve widget (newer ComfyUI only)
def _editing_module(moda_nodes):
    return sys.modules[moda_nodes["MODA_HeadPoseGain"].__module__]


def _curve_double(io):
    """io.Curve as newer core defines it (comfy_api/latest/_io.py, type CURVE): a socketless widget whose default
    is a list of (x, y) points, serialised as {"points": [[x, y], ...], "interpolation": "monotone_cubic"}."""
    @io.comfytype(io_type="CURVE")
    class Curve(io.ComfyTypeIO):
        Type = Any

        class Input(io.WidgetInput):
            def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                         socketless: bool = True, default: list[tuple[float, float]] = None, advanced: bool = None):
                super().__init__(id, display_name, optional, tooltip, None, default, socketless)
                if default is None:
                    self.default = [(0.0, 0.0), (1.0, 1.0)]

            def as_dict(self):
                d = super().as_dict()
                if self.default is not None:
                    d["default"] = {"points": [list(p) for p in self.default], "interpolation": "monotone_cubic"}
                return d
    return Curve


def test_curve_node_is_not_registered_without_curve_widget(moda_nodes, comfy_doubles):
    assert not hasattr(comfy_doubles.io, "Curve")                # ComfyUI 0.8.0 has no CURVE type
    assert "MODA_HeadPoseCurve" not in moda_nodes
    assert _editing_module(moda_nodes).MODAHeadPoseCurve not in _editing_module(moda_nodes).NODES


def test_curve_node_with_curve_widget(moda_nodes, comfy_doubles, monkeypatch, talking):
    io = comfy_doubles.io
    monkeypatch.setattr(io, "Curve", _curve_double(io), raising=False)
    module = _editing_module(moda_nodes)
    nodes = module.node_list()
    assert module.MODAHeadPoseCurve in nodes
    node = module.MODAHeadPoseCurve
    info = object_info(node)
    kind, options = info["input"]["required"]["curve"]
    assert kind == "CURVE" and options["default"] == {"points": [[0.0, 0.5], [1.0, 0.5]],
                                                      "interpolation": "monotone_cubic"}
    assert info["category"] == "MODA/Edit" and info["output"] == ["MODA_REPR"]
    common = dict(axis="pitch", min_value=-10.0, max_value=10.0, **EASE)
    flat = run_node(node, repr=talking, curve=options["default"], mode="add", **common).args[0]
    assert torch.allclose(flat.head_pose, talking.head_pose)
    ramp = {"points": [[0.0, 0.0], [1.0, 1.0]], "interpolation": "linear"}
    out = run_node(node, repr=talking, curve=ramp, mode="replace", **common).args[0]
    expected = torch.linspace(-10, 10, talking.num_frames)
    assert torch.allclose(out.head_pose[..., 1], expected.expand(2, -1), atol=1e-5)
    assert torch.equal(out.head_pose[..., [0, 2, 3, 4, 5, 6]], talking.head_pose[..., [0, 2, 3, 4, 5, 6]])
    assert_only({"head_pose"}, talking, out)

    class Evaluated:                                             # a CurveInput from core's Curve Editor node
        def interp_array(self, xs):
            return np.asarray(xs) ** 2
    squared = run_node(node, repr=talking, curve=Evaluated(), mode="replace", **common).args[0]
    assert torch.allclose(squared.head_pose[0, :, 1], -10 + 20 * torch.linspace(0, 1, talking.num_frames) ** 2,
                          atol=1e-4)
    with pytest.raises(ValueError, match=r"^MODA Head Pose Curve: input 'curve': points must be finite with x in"):
        run_node(node, repr=talking, curve={"points": [[0.0, 0.0], [2.0, 1.0]]}, mode="add", **common)


# ---------------------------------------------------------------- curves files
def test_export_then_apply_curves(moda_nodes, comfy_dirs, talking):
    exported = run_node(moda_nodes["MODA_ExportCurves"], repr=talking, filename_prefix="curves", format="csv",
                        sample=1)
    path = exported.args[0]
    assert path == str(comfy_dirs.output / "moda" / "curves_00001_.csv")
    assert exported.ui.as_dict()["text"][0].startswith("saved moda/curves_00001_.csv (90 frames")
    table = load_curves(path)
    assert np.array_equal(table["yaw"].astype(np.float32), talking.head_pose[1, :, 0].numpy())
    json_path = run(moda_nodes, "MODA_ExportCurves", repr=talking, filename_prefix="cathy/take", format="json",
                    sample=0)
    assert json_path.endswith("moda/cathy/take_00001_.json")

    apply = moda_nodes["MODA_ApplyCurves"]
    (comfy_dirs.input / "notes.csv").write_text("a,b\n1,2\n")                 # not a curves file: not listed
    edited = dict(table, yaw=np.full(talking.num_frames, 4.0))
    with open(comfy_dirs.input / "edited.csv", "w") as handle:
        handle.write(",".join(edited) + "\n")
        handle.writelines(",".join(str(v) for v in row) + "\n" for row in zip(*edited.values()))
    options = object_info(apply)["input"]["required"]["curves_file"][1]["options"]
    assert options == ["edited.csv", "moda/cathy/take_00001_.json [output]", "moda/curves_00001_.csv [output]"]
    out = run(moda_nodes, "MODA_ApplyCurves", repr=talking, curves_file="edited.csv", sample=-1)
    assert torch.equal(out.head_pose[..., 0], torch.full((2, talking.num_frames), 4.0))
    assert torch.allclose(out.head_pose[1], talking.head_pose[1].index_fill(1, torch.tensor([0]), 4.0))
    assert torch.allclose(eye_openness(out), eye_openness(talking), atol=1e-5)
    only_first = run(moda_nodes, "MODA_ApplyCurves", repr=talking, curves_file="edited.csv", sample=0)
    assert torch.equal(only_first.head_pose[1], talking.head_pose[1])
    round_trip = run(moda_nodes, "MODA_ApplyCurves", repr=talking, curves_file="moda/curves_00001_.csv [output]",
                     sample=1)
    assert torch.equal(round_trip.head_pose, talking.head_pose)

    first = fingerprint(apply, repr=talking, curves_file="edited.csv", sample=-1)
    (comfy_dirs.input / "edited.csv").write_text((comfy_dirs.input / "edited.csv").read_text().replace("4.0", "5.0"))
    assert fingerprint(apply, repr=talking, curves_file="edited.csv", sample=-1) != first
    assert math.isnan(fingerprint(apply, repr=talking, curves_file="gone.csv", sample=-1))


def test_curves_errors_name_the_input(moda_nodes, comfy_dirs, talking, subject):
    apply = moda_nodes["MODA_ApplyCurves"]
    with pytest.raises(ValidationFailed, match=r"MODA Apply Curves: input 'curves_file': file 'gone.csv' not found"):
        run_node(apply, repr=talking, curves_file="gone.csv", sample=-1)
    with pytest.raises(ValidationFailed, match="not a .csv or .json curves file"):
        run_node(apply, repr=talking, curves_file="motion.safetensors", sample=-1)
    with pytest.raises(ValidationFailed, match="points outside the input and output folders"):
        run_node(apply, repr=talking, curves_file="../../secret.csv", sample=-1)
    short = run(moda_nodes, "MODA_ExportCurves", repr=talking.slice_time(0, 10), filename_prefix="short",
                format="csv", sample=0)
    assert short.endswith("short_00001_.csv")
    with pytest.raises(ValueError, match=r"^MODA Apply Curves: input 'curves_file': curves have 10 frames but R "
                                         r"has 90"):
        run_node(apply, repr=talking, curves_file="moda/short_00001_.csv [output]", sample=-1)
    (comfy_dirs.input / "bad.csv").write_text("frame,yaw\n0,x\n")
    with pytest.raises(ValueError, match=r"^MODA Apply Curves: input 'curves_file': .*'x' is not a finite number"):
        run_node(apply, repr=talking, curves_file="bad.csv", sample=-1)
    eyes = run(moda_nodes, "MODA_ExportCurves", repr=talking, filename_prefix="eyes", format="csv", sample=0)
    with pytest.raises(ValueError, match=r"^MODA Apply Curves: input 'subject': R holds offsets"):
        run_node(apply, repr=talking.to_offsets(subject), curves_file=f"moda/{eyes.rsplit('/', 1)[1]} [output]",
                 sample=-1)
    with pytest.raises(ValueError, match=r"^MODA Apply Curves: input 'sample': 2 is out of range"):
        run_node(apply, repr=talking, curves_file="bad.csv", sample=2)
    with pytest.raises(ValueError, match=r"^MODA Export Curves: input 'filename_prefix': '../x' is empty or leaves"):
        run_node(moda_nodes["MODA_ExportCurves"], repr=talking, filename_prefix="../x", format="csv", sample=0)


# ---------------------------------------------------------------- eyes
def test_blink_rate_remove_and_measure(moda_nodes, long_talking, subject):
    r = long_talking
    rate, summary = run(moda_nodes, "MODA_MeasureBlinks", repr=r, threshold=0.5, sample=0)
    assert rate == pytest.approx(5.0) and isinstance(rate, float)
    assert "sample 0: 1 blink(s), 5.0 per minute; at 2.0" in summary and "360 frames at 30 fps" in summary
    before = snapshot(r)
    more = run(moda_nodes, "MODA_AddBlinks", repr=r, per_minute=20.0, seed=3, depth=1.0)
    assert blink_rate(more) == [pytest.approx(20.0)]
    assert_only({"eyes", "face"}, r, more)
    assert_unchanged(r, before)
    again = run(moda_nodes, "MODA_AddBlinks", repr=r, per_minute=20.0, seed=3, depth=1.0)
    assert torch.equal(again.eyes, more.eyes)
    other_seed = run(moda_nodes, "MODA_AddBlinks", repr=r, per_minute=20.0, seed=4, depth=1.0)
    assert detect_blinks(other_seed) != detect_blinks(more)
    none = run(moda_nodes, "MODA_RemoveBlinks", repr=more, threshold=0.5)
    assert blink_rate(none) == [0.0]
    assert_only({"eyes", "face"}, more, none)

    offsets = r.to_offsets(subject)
    with pytest.raises(ValueError, match=r"^MODA Add Blinks: input 'subject': R holds offsets: .*needs the subject"
                                         r".*, connect the subject \(MODA_SUBJECT\)"):
        run(moda_nodes, "MODA_AddBlinks", repr=offsets, per_minute=20.0, seed=3, depth=1.0)
    with pytest.raises(ValueError, match=r"^MODA Measure Blinks: input 'subject': R holds offsets"):
        run(moda_nodes, "MODA_MeasureBlinks", repr=offsets, threshold=0.5, sample=0)
    edited = run(moda_nodes, "MODA_AddBlinks", repr=offsets, per_minute=20.0, seed=3, depth=1.0, subject=subject)
    assert edited.is_offset and blink_rate(edited, subject) == [pytest.approx(20.0)]
    rate, _ = run(moda_nodes, "MODA_MeasureBlinks", repr=edited, threshold=0.5, sample=0, subject=subject)
    assert rate == pytest.approx(20.0)
    with pytest.raises(ValueError, match=r"^MODA Measure Blinks: input 'sample': 1 is out of range"):
        run(moda_nodes, "MODA_MeasureBlinks", repr=r, threshold=0.5, sample=1)


def test_blinks_at_openness_and_gaze(moda_nodes, talking, subject):
    at = run(moda_nodes, "MODA_BlinksAt", repr=talking, times="0.5s, 75f", depth=1.0)
    assert [len(spans) for spans in detect_blinks(at)] == [3, 3]
    assert_only({"eyes"}, talking, at)
    with pytest.raises(ValueError, match=r"^MODA Blinks At Times: input 'times': times: malformed time 'soon'.*, "
                                         r"write times inside the clip"):
        run(moda_nodes, "MODA_BlinksAt", repr=talking, times="soon", depth=1.0)
    wider = run(moda_nodes, "MODA_EyeOpenness", repr=talking, gain=1.2, blink_depth=1.0)
    assert torch.allclose(eye_openness(wider), 1.2 * eye_openness(talking), atol=1e-5)
    flat = run(moda_nodes, "MODA_EyeOpenness", repr=talking, gain=1.0, blink_depth=0.0)
    assert blink_rate(flat) == [0.0, 0.0]
    offsets = talking.to_offsets(subject)
    with pytest.raises(ValueError, match=r"^MODA Eye Openness: input 'subject'"):
        run(moda_nodes, "MODA_EyeOpenness", repr=offsets, gain=1.2, blink_depth=1.0)
    gaze = run(moda_nodes, "MODA_Gaze", repr=talking, dx=3.0, dy=-1.0)
    iris = torch.tensor([p for p, i in enumerate(eye_indices().tolist()) if i >= 468])
    assert torch.allclose((gaze.eyes - talking.eyes)[:, :, iris], torch.tensor([3.0, -1.0, 0.0]), atol=1e-4)
    assert_only({"eyes"}, talking, gaze)


# ---------------------------------------------------------------- mouth and torso
def test_mouth_and_torso_gain(moda_nodes, talking, subject):
    wide = run(moda_nodes, "MODA_MouthGain", repr=talking, gain=2.0)
    base = mouth_openness(talking)
    assert torch.allclose(mouth_openness(wide), 2 * base, atol=1e-3)
    assert float(mouth_openness(wide).min()) == pytest.approx(0.0, abs=1e-3)      # closed lips stay closed
    assert_only({"mouth"}, talking, wide)
    offsets = run(moda_nodes, "MODA_MouthGain", repr=talking.to_offsets(subject), gain=2.0)
    assert torch.allclose(mouth_openness(offsets, subject), 2 * base, atol=1e-3)
    still = run(moda_nodes, "MODA_TorsoGain", repr=talking, gain=0.0)
    assert torch.allclose(still.torso, talking.torso.mean(dim=1, keepdim=True).expand_as(talking.torso), atol=1e-4)
    assert_only({"torso"}, talking, still)


# ---------------------------------------------------------------- time
def test_trim_shift_loop(moda_nodes, talking):
    trimmed = run(moda_nodes, "MODA_Trim", repr=talking, start=2.0, end=-15.0, unit="frames")
    assert torch.equal(trimmed.head_pose, talking.head_pose[:, 2:75])
    seconds = run(moda_nodes, "MODA_Trim", repr=talking, start=1.0, end=2.0, unit="seconds")
    assert torch.equal(seconds.mouth, talking.mouth[:, 30:60])
    with pytest.raises(ValueError, match=r"^MODA Trim: input 'start': trim start=5.0 end=0.0 \(s\) leaves no "
                                         r"frames"):
        run(moda_nodes, "MODA_Trim", repr=talking, start=5.0, end=0.0, unit="seconds")
    shifted = run(moda_nodes, "MODA_TimeShift", repr=talking, frames=5, tracks="head_pose")
    assert torch.equal(shifted.head_pose[:, 5:], talking.head_pose[:, :-5])
    assert_only({"head_pose"}, talking, shifted)
    with pytest.raises(ValueError, match=r"^MODA Time Shift: input 'tracks': tracks: unknown name 'lips'"):
        run(moda_nodes, "MODA_TimeShift", repr=talking, frames=5, tracks="lips")
    looped = run(moda_nodes, "MODA_Loop", repr=talking, length=7.0, crossfade=0.5, unit="seconds")
    assert looped.num_frames == 210 and torch.equal(looped.mouth[:, :75], talking.mouth[:, :75])
    with pytest.raises(ValueError, match=r"^MODA Loop: input 'crossfade': crossfade must be 0 to half of R"):
        run(moda_nodes, "MODA_Loop", repr=talking, length=7.0, crossfade=2.0, unit="seconds")
    with pytest.raises(ValueError, match=r"^MODA Loop: input 'repr': expected R \(TalkingRepr\), got dict, connect"):
        run(moda_nodes, "MODA_Loop", repr={}, length=7.0, crossfade=0.0, unit="seconds")


# ---------------------------------------------------------------- plots
def _drawn_fraction(image: torch.Tensor) -> float:
    return float((image < 0.95).any(dim=-1).float().mean())


def test_plot_curves_image(moda_nodes, talking, subject):
    edited = run(moda_nodes, "MODA_HeadPoseGain", repr=talking, **{**GAINS, "yaw": 0.5}, **EASE)
    image = run(moda_nodes, "MODA_PlotCurves", repr=edited, width=400, height=480, tracks="head, eyes, mouth",
                sample=1, before=talking)
    assert image.shape == (1, 480, 400, 3) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert 0.02 < _drawn_fraction(image) < 0.9
    alone = run(moda_nodes, "MODA_PlotCurves", repr=edited, width=400, height=480, tracks="head, eyes, mouth",
                sample=1)
    assert not torch.equal(alone, image)                                     # the dashed 'before' curves
    offsets = talking.to_offsets(subject)
    with pytest.raises(ValueError, match=r"^MODA Plot Curves: input 'subject': 'repr' holds offsets.*, or set "
                                         r"tracks to 'head'"):
        run(moda_nodes, "MODA_PlotCurves", repr=offsets, width=320, height=240, tracks="all", sample=0)
    head = run(moda_nodes, "MODA_PlotCurves", repr=offsets, width=320, height=240, tracks="head", sample=0)
    assert head.shape == (1, 240, 320, 3)
    measured = run(moda_nodes, "MODA_PlotCurves", repr=offsets, width=320, height=400, tracks="eyes, mouth",
                   sample=0, subject=subject)
    assert measured.shape == (1, 400, 320, 3) and _drawn_fraction(measured) > 0.02
    with pytest.raises(ValueError, match=r"^MODA Plot Curves: input 'tracks': tracks: unknown name 'torso'"):
        run(moda_nodes, "MODA_PlotCurves", repr=talking, width=320, height=240, tracks="torso", sample=0)
    with pytest.raises(ValueError, match=r"^MODA Plot Curves: input 'before': 1 is out of range"):
        run(moda_nodes, "MODA_PlotCurves", repr=talking, width=320, height=240, tracks="head", sample=1,
            before=talking.select_samples(0))


def test_overlay_landmarks_batch(moda_nodes, talking, subject, progress_events):
    offsets = talking.to_offsets(subject)
    images = run(moda_nodes, "MODA_OverlayLandmarks", repr=offsets, subject=subject, every_n=4, sample=1,
                 opacity=0.7)
    assert images.shape == (23, 512, 512, 3) and images.dtype == torch.float32    # ceil(90 / 4)
    background = subject.reference_float()
    assert all(not torch.allclose(frame, background) for frame in images[:3])
    assert [(v, t) for v, t, _ in progress_events] == [(16, 23), (23, 23)]
    assert torch.equal(images, overlay_landmarks(offsets, subject, sample=1, every_n=4, opacity=0.7))  # chunked
    with pytest.raises(ValueError, match=r"^MODA Landmark Overlay: input 'subject': expected a Subject, got "
                                         r"NoneType"):
        run(moda_nodes, "MODA_OverlayLandmarks", repr=offsets, subject=None, every_n=4, sample=0, opacity=0.7)


# ---------------------------------------------------------------- the shipped sample workflow
def test_sample_workflow_edit_part_runs(moda_nodes, template, subject):
    """workflows/api/edit_pose_blinks_api.json: its edit and check nodes, with their exact values, on synthetic
    motion in place of MODA Audio to Motion (node 5) and subject (node 3); the validator checks the whole graph."""
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "edit_pose_blinks_api.json").read_text())
    assert prompt["5"]["class_type"] == "MODA_AudioToMotion" and prompt["3"]["class_type"] == "MODA_SubjectFromImage"
    motion = make_talking(template, seconds=12, blinks_at=(2.0,)).to_offsets(subject)
    results = {"5": (motion,), "3": (subject,)}
    for node_id in ("6", "7", "8", "9", "11"):
        node = prompt[node_id]
        inputs = {k: results[v[0]][v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
        results[node_id] = run_node(moda_nodes[node["class_type"]], unique_id=node_id, **inputs).args
    edited = results["8"][0]
    assert edited.is_offset and edited.num_frames == motion.num_frames
    assert torch.allclose(amplitude(edited.head_pose[..., 0]), 0.5 * amplitude(motion.head_pose[..., 0]), atol=1e-4)
    assert float((edited.head_pose[0, 20:, 1] - motion.head_pose[0, 20:, 1]).mean()) < -4.5      # chin up
    assert blink_rate(edited, subject) == [pytest.approx(20.0)]
    assert results["11"][0] == pytest.approx(20.0) and "4 blink(s)" in results["11"][1]
    assert results["9"][0].shape == (1, 960, 1024, 3)
