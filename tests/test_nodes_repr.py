"""R nodes (save, load, info) and the pose transform + projection node, run through the ComfyUI doubles."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import ValidationFailed, fingerprint, run_node

from moda_core import Subject, TalkingRepr
from moda_core.drawing import draw_condition_images
from moda_core.geometry import AUTHORS_INFERENCE_FACE_CENTER, canonical_to_image
from moda_core.landmarks import eye_indices, mouth_indices
from moda_core.projection import canonical_face, project_repr, render_condition_images, resolve_face_center


# ---------------------------------------------------------------- synthetic data
def make_subject(name: str = "tester") -> Subject:
    """A plausible canonical face: points spread like the authors' template around (256, 232, 128)."""
    g = torch.Generator().manual_seed(1)
    template = torch.stack([torch.rand(478, generator=g) * 250 + 131, torch.rand(478, generator=g) * 300 + 95,
                            torch.rand(478, generator=g) * 180 + 8], dim=-1)
    torso = torch.stack([torch.linspace(40, 470, 18), torch.full((18,), 470.0), torch.full((18,), 124.6)], -1)
    return Subject(reference_image=torch.zeros(512, 512, 3, dtype=torch.uint8), template=template,
                   mean_head_pose=torch.tensor([0.0, 0.0, 0.0, 256.0, 250.0, -10.0, 1.1]), mean_torso=torso,
                   name=name)


def make_repr(samples: int = 2, frames: int = 20, face: bool = True, fps: float = 25.0, seed: int = 0) -> TalkingRepr:
    """Small offsets, as MODA predicts them (degrees and pixels)."""
    g = torch.Generator().manual_seed(seed)
    tracks = {"mouth": torch.randn(samples, frames, 40, 3, generator=g) * 2,
              "eyes": torch.randn(samples, frames, 60, 3, generator=g),
              "head_pose": torch.cat([torch.randn(samples, frames, 6, generator=g) * 3,
                                      torch.zeros(samples, frames, 1)], dim=-1),
              "torso": torch.randn(samples, frames, 18, 3, generator=g) * 2}
    if face:
        tracks["face"] = torch.randn(samples, frames, 478, 3, generator=g)
    return TalkingRepr(**tracks, fps=fps, is_offset=True, subject="tester", meta={"seed": str(seed)})


def snapshot(r: TalkingRepr) -> dict:
    return {k: v.clone() for k, v in r.tracks().items()}


def assert_unchanged(r: TalkingRepr, before: dict):
    for name, value in before.items():
        assert torch.equal(getattr(r, name), value), f"input R.{name} was modified"


# ---------------------------------------------------------------- moda_core.projection
def test_project_repr_applies_pose_to_face_track_and_torso():
    r, subject = make_repr(samples=2, frames=5), make_subject()
    face_xyz, torso_xyz = project_repr(r, subject, sample=1)
    assert face_xyz.shape == (5, 478, 3) and torso_xyz.shape == (5, 18, 3)
    assert face_xyz.dtype == torch.float64
    absolute = r.select_samples(1).to(dtype=torch.float64).to_absolute(subject)
    expected = canonical_to_image(absolute.face[0], absolute.head_pose[0], AUTHORS_INFERENCE_FACE_CENTER)
    assert torch.allclose(face_xyz, expected)
    assert torch.allclose(torso_xyz, canonical_to_image(absolute.torso[0], absolute.head_pose[0]))


def test_without_face_track_the_template_gets_rs_mouth_and_eyes():
    r, subject = make_repr(samples=1, frames=3, face=False), make_subject()
    face = canonical_face(r, subject)
    absolute = r.to_absolute(subject)
    mouth, eyes = torch.from_numpy(mouth_indices()), torch.from_numpy(eye_indices())
    assert torch.equal(face[:, :, mouth], absolute.mouth) and torch.equal(face[:, :, eyes], absolute.eyes)
    others = torch.ones(478, dtype=torch.bool)
    others[mouth] = others[eyes] = False
    assert torch.equal(face[0, 2, others], subject.template[others])


def test_identity_pose_places_template_around_translation():
    subject = make_subject()
    r = TalkingRepr(mouth=torch.zeros(1, 2, 40, 3), eyes=torch.zeros(1, 2, 60, 3), head_pose=torch.zeros(1, 2, 7),
                    torso=torch.zeros(1, 2, 18, 3), fps=25, is_offset=True)
    pose = subject.mean_head_pose.double()
    face_xyz, _ = project_repr(r, subject, face_center="canonical")
    center = torch.tensor(resolve_face_center("canonical"), dtype=torch.float64)
    assert torch.allclose(face_xyz[1], (subject.template.double() - center) / pose[6] + pose[3:6])
    shifted, _ = project_repr(r, subject, face_center="authors")
    assert torch.allclose(shifted[..., 1] - face_xyz[..., 1], torch.full_like(face_xyz[..., 1], -3 / pose[6]))
    with pytest.raises(ValueError, match="face_center"):
        resolve_face_center("middle")


def test_render_condition_images_batches_and_reports():
    face_xyz, torso_xyz = project_repr(make_repr(samples=1, frames=5), make_subject())
    calls = []
    images = render_condition_images(face_xyz[..., :2], torso_xyz[..., :2], batch_size=2,
                                     on_batch=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert torch.equal(images, draw_condition_images(face_xyz[..., :2], torso_xyz[..., :2]))


# ---------------------------------------------------------------- MODA_SaveRepr
def test_save_repr_writes_numbered_files_under_output_moda(moda_nodes, comfy_dirs):
    node, r = moda_nodes["MODA_SaveRepr"], make_repr()
    before = snapshot(r)
    first = run_node(node, repr=r, filename_prefix="repr", format="safetensors")
    second = run_node(node, repr=r, filename_prefix="repr", format="safetensors")
    assert first.args[0] == str(comfy_dirs.output / "moda" / "repr_00001_.safetensors")
    assert second.args[0].endswith("repr_00002_.safetensors")
    assert first.ui.as_dict()["text"][0].startswith("saved moda/repr_00001_.safetensors")
    loaded = TalkingRepr.load(first.args[0])
    for name, value in r.tracks().items():
        assert torch.equal(getattr(loaded, name), value)
    assert_unchanged(r, before)


def test_save_repr_formats_and_subfolders(moda_nodes, comfy_dirs):
    node = moda_nodes["MODA_SaveRepr"]
    out = run_node(node, repr=make_repr(face=False), filename_prefix="cathy/take", format="safetensors + npz")
    folder = comfy_dirs.output / "moda" / "cathy"
    assert sorted(os.listdir(folder)) == ["take_00001_.npz", "take_00001_.safetensors"]
    assert out.args[0] == str(folder / "take_00001_.safetensors")
    npz = run_node(node, repr=make_repr(face=False), filename_prefix="cathy/take", format="npz")
    assert npz.args[0] == str(folder / "take_00002_.npz")
    assert TalkingRepr.load(npz.args[0]).face is None


@pytest.mark.parametrize("prefix", ["", "   ", "../escape", "/abs/path", "a/../../b"])
def test_save_repr_refuses_prefixes_leaving_the_folder(moda_nodes, comfy_dirs, prefix):
    with pytest.raises(ValueError, match=r"^MODA Save Repr: input 'filename_prefix': .*, use a relative name"):
        run_node(moda_nodes["MODA_SaveRepr"], repr=make_repr(), filename_prefix=prefix, format="npz")
    assert not any(comfy_dirs.base.parent.rglob("*.npz"))


def test_save_repr_rejects_wrong_input_type(moda_nodes, comfy_dirs):
    with pytest.raises(ValueError, match="MODA Save Repr: input 'repr': expected R"):
        run_node(moda_nodes["MODA_SaveRepr"], repr={"mouth": 1}, filename_prefix="x", format="npz")


# ---------------------------------------------------------------- MODA_LoadRepr
def _options(node) -> list[str]:
    return node.GET_NODE_INFO_V1()["input"]["required"]["repr_file"][1]["options"]


def test_load_repr_lists_r_files_only(moda_nodes, comfy_dirs):
    node = moda_nodes["MODA_LoadRepr"]
    make_repr().save(comfy_dirs.input / "a.safetensors")
    (comfy_dirs.input / "sub").mkdir()
    make_repr().save(comfy_dirs.input / "sub" / "b.npz")
    make_subject().save(comfy_dirs.input / "subject.safetensors")            # a safetensors that is not R
    (comfy_dirs.input / "broken.safetensors").write_bytes(b"\xff" * 4)
    np.savez(comfy_dirs.input / "plain.npz", x=np.zeros(3))
    (comfy_dirs.input / "notes.txt").write_text("hi")
    run_node(moda_nodes["MODA_SaveRepr"], repr=make_repr(), filename_prefix="repr", format="npz")
    assert _options(node) == ["a.safetensors", "sub/b.npz", "moda/repr_00001_.npz [output]"]


def test_load_repr_round_trip_and_fingerprint(moda_nodes, comfy_dirs):
    node, r = moda_nodes["MODA_LoadRepr"], make_repr(samples=3)
    path = r.save(comfy_dirs.input / "motion.npz")
    loaded = run_node(node, repr_file="motion.npz").args[0]
    assert loaded.num_samples == 3 and loaded.device.type == "cpu" and loaded.meta == r.meta
    assert torch.equal(loaded.head_pose, r.head_pose)
    first = fingerprint(node, repr_file="motion.npz")
    assert first == fingerprint(node, repr_file="motion.npz")
    make_repr(samples=3, seed=5).save(path)
    assert fingerprint(node, repr_file="motion.npz") != first
    saved = run_node(moda_nodes["MODA_SaveRepr"], repr=r, filename_prefix="r", format="safetensors").args[0]
    from_output = run_node(node, repr_file="moda/r_00001_.safetensors [output]").args[0]
    assert torch.equal(from_output.mouth, r.mouth) and os.path.isfile(saved)


def test_load_repr_validation_names_node_and_file(moda_nodes, comfy_dirs):
    node = moda_nodes["MODA_LoadRepr"]
    with pytest.raises(ValidationFailed, match=r"MODA Load Repr: input 'repr_file': file 'gone.npz' not found"):
        run_node(node, repr_file="gone.npz")
    with pytest.raises(ValidationFailed, match="not a .safetensors or .npz R file"):
        run_node(node, repr_file="photo.png")
    outside = comfy_dirs.base.parent / "secret.npz"
    make_repr().save(outside)
    with pytest.raises(ValidationFailed, match="points outside the input and output folders"):
        run_node(node, repr_file="../secret.npz")
    assert math.isnan(fingerprint(node, repr_file="gone.npz"))


@pytest.mark.parametrize("node_id, input_name, what, made_by", [
    ("MODA_LoadRepr", "repr_file", ".safetensors or .npz R file", "save it with MODA Save Repr"),
    ("MODA_LoadSubject", "subject_file", "subject file", "save one with MODA Save Subject"),
    ("MODA_ApplyCurves", "curves_file", ".csv or .json curves file", "write it with MODA Export Curves")])
def test_empty_file_list_shows_what_is_missing(moda_nodes, comfy_dirs, node_id, input_name, what, made_by):
    """No file to list: one placeholder (an empty list shows 'undefined' in the frontend) that validation
    explains."""
    node = moda_nodes[node_id]
    info = node.GET_NODE_INFO_V1()["input"]["required"][input_name][1]
    placeholder = f"(no {what} in input/ or output/moda/)"
    assert info["options"] == [placeholder]
    message = node.validate_inputs(**{input_name: placeholder})
    assert message == (f"{node.DISPLAY_NAME}: input '{input_name}': no {what} in the input folder or output/moda/ "
                       f"yet, put one in the input folder (or {made_by}) and refresh")
    gone = "gone.json" if node_id == "MODA_ApplyCurves" else "gone.safetensors"
    assert f"file '{gone}' not found" in node.validate_inputs(**{input_name: gone})


def test_load_repr_damaged_file_names_node_and_file(moda_nodes, comfy_dirs):
    (comfy_dirs.input / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ValueError, match=r"^MODA Load Repr: input 'repr_file': cannot load 'bad.safetensors': "):
        run_node(moda_nodes["MODA_LoadRepr"], repr_file="bad.safetensors")


# ---------------------------------------------------------------- MODA_ReprInfo
def test_repr_info(moda_nodes):
    r = make_repr(samples=2, frames=50, face=False, fps=25)
    summary, fps, frames, samples = run_node(moda_nodes["MODA_ReprInfo"], repr=r).args
    assert (fps, frames, samples) == (25.0, 50, 2)
    for text in ("samples: 2", "frames: 50 at 25 fps (2.00 s)", "offsets from the subject means",
                 "face track: no", "subject: tester", "meta seed: 0"):
        assert text in summary
    absolute = run_node(moda_nodes["MODA_ReprInfo"], repr=r.to_absolute(make_subject())).args[0]
    assert "values: absolute" in absolute
    with pytest.raises(ValueError, match="MODA Repr Info: input 'repr'"):
        run_node(moda_nodes["MODA_ReprInfo"], repr=None)


# ---------------------------------------------------------------- MODA_ProjectRepr
PROJECT = {"sample": 0, "face_center": "authors (y 235)", "style": "authors"}


def test_project_repr_images_and_points(moda_nodes, progress_events):
    r, subject = make_repr(samples=2, frames=20), make_subject()
    before, template = snapshot(r), subject.template.clone()
    images, points = run_node(moda_nodes["MODA_ProjectRepr"], repr=r, subject=subject,
                              **{**PROJECT, "sample": 1}).args
    assert images.shape == (20, 512, 512, 3) and images.dtype == torch.float32
    assert images.device.type == "cpu" and 0 <= images.min() and images.max() <= 1
    assert images.amax(dim=(1, 2, 3)).min() > 0, "every frame has a drawing"
    face_xyz, torso_xyz = project_repr(r, subject, sample=1)
    assert torch.equal(points["face_xyz"], face_xyz) and torch.equal(points["torso_xy"], torso_xyz[..., :2])
    assert points["face_xy"].shape == (20, 478, 2) and points["fps"] == 25.0
    assert points["face_center"] == AUTHORS_INFERENCE_FACE_CENTER and points["image_size"] == 512
    assert torch.equal(images, draw_condition_images(face_xyz[..., :2], torso_xyz[..., :2]))
    assert [(v, t) for v, t, _ in progress_events] == [(16, 20), (20, 20)]
    assert_unchanged(r, before)
    assert torch.equal(subject.template, template)


def test_project_repr_offsets_and_absolute_agree(moda_nodes):
    r, subject = make_repr(samples=1, frames=4, face=False), make_subject()
    node = moda_nodes["MODA_ProjectRepr"]
    from_offsets = run_node(node, repr=r, subject=subject, **PROJECT).args[0]
    from_absolute = run_node(node, repr=r.to_absolute(subject), subject=subject, **PROJECT).args[0]
    assert torch.equal(from_offsets, from_absolute)


def test_project_repr_options_change_the_drawing(moda_nodes):
    r, subject = make_repr(samples=1, frames=2), make_subject()
    node = moda_nodes["MODA_ProjectRepr"]
    base = run_node(node, repr=r, subject=subject, **PROJECT)
    lowered = run_node(node, repr=r, subject=subject, **{**PROJECT, "face_center": "canonical (y 232)"})
    smooth = run_node(node, repr=r, subject=subject, **{**PROJECT, "style": "antialiased"})
    shift = lowered.args[1]["face_xy"][..., 1] - base.args[1]["face_xy"][..., 1]
    assert torch.allclose(shift, torch.full_like(shift, 3 / 1.1), atol=0.05)   # 3 px / scale, ~rotated
    assert not torch.equal(base.args[0], smooth.args[0])
    assert torch.equal(base.args[1]["face_xy"], smooth.args[1]["face_xy"])


@pytest.mark.parametrize("change,message", [
    ({"sample": 2}, "input 'sample': 2 is out of range, R has 2 sample(s), use 0..1"),
    ({"face_center": "middle"}, "input 'face_center': unknown option 'middle'"),
    ({"style": "pretty"}, "input 'style': unknown option 'pretty'"),
    ({"subject": "cathy"}, "input 'subject': expected a Subject, got str"),
])
def test_project_repr_errors_name_node_and_input(moda_nodes, change, message):
    inputs = {"repr": make_repr(frames=2), "subject": make_subject(), **PROJECT, **change}
    with pytest.raises(ValueError, match="^MODA Pose Transform and Projection: " + message.replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        run_node(moda_nodes["MODA_ProjectRepr"], **inputs)


def test_project_repr_bad_head_scale_is_reported(moda_nodes):
    r, subject = make_repr(samples=1, frames=2, face=False), make_subject()
    absolute = r.to_absolute(subject)
    pose = absolute.head_pose.clone()
    pose[..., 6] = 0.0
    with pytest.raises(ValueError, match="MODA Pose Transform and Projection: input 'repr': .*scale must be > 0"):
        run_node(moda_nodes["MODA_ProjectRepr"], repr=absolute.replace(head_pose=pose), subject=subject, **PROJECT)


def test_project_repr_stops_when_cancelled(moda_nodes, comfy_doubles, progress_events):
    mm = comfy_doubles.model_management
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        run_node(moda_nodes["MODA_ProjectRepr"], repr=make_repr(frames=40), subject=make_subject(), **PROJECT)
    assert len(progress_events) == 1, "stopped after the first batch"
    assert not mm.processing_interrupted()
