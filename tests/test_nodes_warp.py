"""MODA Warp Render through the ComfyUI doubles (real portrait, tiny MODA/FaCo), and the warp sample workflow."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import REPO_ROOT, run_node
from PIL import Image
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)
from test_nodes_pipeline import (MOTION, PROJECT, _core_stand_ins, _execute, _saved_videos,  # noqa: F401
                                 photo_subject, portrait, speech)

from moda_core.warp_renderer import WarpRenderer, reference_person_mask


def _points(moda_nodes, moda_dir, photo_subject, data_dir, seconds=0.4):
    model = run_node(moda_nodes["MODA_LoadMODAModel"], weights="moda.safetensors", precision="auto").args[0]
    r = run_node(moda_nodes["MODA_AudioToMotion"], audio=speech(data_dir, seconds), subject=photo_subject,
                 model=model, **MOTION).args[0]
    return run_node(moda_nodes["MODA_ProjectRepr"], repr=r, subject=photo_subject, **PROJECT).args[1]


def test_warp_render_node(moda_nodes, moda_dir, photo_subject, data_dir, progress_events):
    points = _points(moda_nodes, moda_dir, photo_subject, data_dir)
    progress_events.clear()
    node = moda_nodes["MODA_WarpRender"]
    frames = run_node(node, points=points, subject=photo_subject, size=256, batch_size=5).args[0]
    assert frames.shape == (12, 256, 256, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    assert [e[:2] for e in progress_events] == [(5, 12), (10, 12), (12, 12)]
    mask = reference_person_mask(photo_subject, moda_dir)
    direct = WarpRenderer(photo_subject, 256, face_center=points["face_center"], person_mask=mask).render_points(
        points["face_xy"][:3].numpy(), points["torso_xy"][:3].numpy())
    assert np.allclose(frames[:3].numpy(), direct, atol=1e-6)
    plain = run_node(node, points=points, subject=photo_subject, size=256, batch_size=5,
                     still_background=False).args[0]
    whole = WarpRenderer(photo_subject, 256, face_center=points["face_center"]).render_points(
        points["face_xy"][:3].numpy(), points["torso_xy"][:3].numpy())
    assert np.allclose(plain[:3].numpy(), whole, atol=1e-6) and not np.allclose(direct, whole, atol=1e-3)


def test_warp_render_node_errors_and_cancel(moda_nodes, moda_dir, photo_subject, data_dir, comfy_doubles,
                                            progress_events):
    node = moda_nodes["MODA_WarpRender"]
    points = _points(moda_nodes, moda_dir, photo_subject, data_dir, seconds=0.2)
    with pytest.raises(ValueError, match="^MODA Warp Render: input 'points': expected projected points"):
        run_node(node, points=torch.zeros(3), subject=photo_subject, size=256, batch_size=4)
    bad = {**points, "face_xy": points["face_xy"].clone()}
    bad["face_xy"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="^MODA Warp Render: input 'points': they contain NaN"):
        run_node(node, points=bad, subject=photo_subject, size=256, batch_size=4)
    with pytest.raises(ValueError, match="^MODA Warp Render: input 'subject'"):
        run_node(node, points=points, subject="obama", size=256, batch_size=4)
    mm = comfy_doubles.model_management
    progress_events.clear()
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        run_node(node, points=points, subject=photo_subject, size=128, batch_size=2)
    assert [e[:2] for e in progress_events] == [(2, 6)], "stopped after the first chunk"


def test_warp_photo_to_video_workflow_runs(moda_nodes, moda_dir, data_dir):
    for name in ("renderer.safetensors",):
        (moda_dir / name).unlink()                          # the warp workflow needs only MODA and FaCo
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "warp_photo_to_video_api.json").read_text())
    assert not [n for n in prompt.values() if n["class_type"] == "MODA_LoadRenderer"]
    results = _execute(prompt, moda_nodes, _core_stand_ins(data_dir, seconds=0.5, frames=0))
    (video,) = _saved_videos(prompt, results)
    with Image.open(REPO_ROOT / "samples" / "portrait.jpg") as photo:
        assert video["images"].shape == (results["9"][0].num_frames, photo.height, photo.width, 3)
    assert video["fps"] == 30.0


def test_render_node_refines_warped_frames(moda_nodes, moda_dir, photo_subject, data_dir):
    """A warp-refine renderer (the 'fast' preset's kind) takes MODA Warp Render's frames; a fresh one returns them."""
    from moda_core.checkpoints import save_model
    from moda_core.models.renderer import RenderGenerator, RendererConfig

    config = RendererConfig(ngf=4, num_levels=3, image_size=64, width_cap=2, space_to_depth=2,
                            reference_residual=True, tpe_bias=True, warped_reference=True)
    save_model(RenderGenerator(config).eval(), moda_dir / "refine.safetensors")
    refine = run_node(moda_nodes["MODA_LoadRenderer"], weights="refine.safetensors", precision="fp32").args[0]
    still = run_node(moda_nodes["MODA_LoadRenderer"], weights="renderer.safetensors", precision="fp32").args[0]
    model = run_node(moda_nodes["MODA_LoadMODAModel"], weights="moda.safetensors", precision="auto").args[0]
    r = run_node(moda_nodes["MODA_AudioToMotion"], audio=speech(data_dir, 0.2), subject=photo_subject,
                 model=model, **MOTION).args[0]
    conditions, points = run_node(moda_nodes["MODA_ProjectRepr"], repr=r, subject=photo_subject, **PROJECT).args[:2]
    warped = run_node(moda_nodes["MODA_WarpRender"], points=points, subject=photo_subject, size=64,
                      batch_size=4).args[0]
    render = moda_nodes["MODA_Render"]
    frames = run_node(render, conditions=conditions, subject=photo_subject, renderer=refine, start_frame=0,
                      batch_size=4, warped_frames=warped).args[0]
    assert frames.shape == warped.shape and torch.allclose(frames, warped, atol=1e-6)
    with pytest.raises(ValueError, match="^MODA Render: input 'warped_frames': this renderer refines the warp "
                                         "renderer's frames"):
        run_node(render, conditions=conditions, subject=photo_subject, renderer=refine, start_frame=0, batch_size=4)
    with pytest.raises(ValueError, match="^MODA Render: input 'warped_frames': 3 frames of 64x64 for 6 condition"):
        run_node(render, conditions=conditions, subject=photo_subject, renderer=refine, start_frame=0, batch_size=4,
                 warped_frames=warped[:3])
    # lazy: asked for only by warp-refine renderers; a still-reference renderer ignores them
    assert render.check_lazy_status(renderer=refine, warped_frames=None) == ["warped_frames"]
    assert render.check_lazy_status(renderer=refine, warped_frames=warped) == []
    assert render.check_lazy_status(renderer=still, warped_frames=None) == []
    plain = run_node(render, conditions=conditions, subject=photo_subject, renderer=still, start_frame=0,
                     batch_size=4).args[0]
    given = run_node(render, conditions=conditions, subject=photo_subject, renderer=still, start_frame=0,
                     batch_size=4, warped_frames=warped).args[0]
    assert torch.equal(plain, given)
