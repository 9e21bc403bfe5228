"""MODA Load MODA Model says so when its weights carry a motion check that found flat motion."""
from __future__ import annotations

import logging

from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import run_node
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)

from moda_core.checkpoints import load_model, save_model
from moda_core.motion_check import MotionCheck, MotionFigures

CLIP = MotionFigures(blinks_per_min=24, yaw_range=9.1, pitch_range=7.6, roll_range=14.8, spread=5.2)


def test_loader_warns_about_flat_weights_only(moda_nodes, moda_dir, tiny_weights, caplog):
    net = load_model(tiny_weights / "moda.safetensors")
    flat = MotionCheck(MotionFigures(0, 0.1, 0.2, 0.1, 4e-6), CLIP, steps=7)
    save_model(net, moda_dir / "flat.safetensors", "moda", extra_metadata=flat.to_metadata())
    lively = MotionCheck(MotionFigures(20, 6, 5, 9, 4), CLIP, steps=3000)
    save_model(net, moda_dir / "lively.safetensors", "moda", extra_metadata=lively.to_metadata())
    with caplog.at_level(logging.WARNING):
        run_node(moda_nodes["MODA_LoadMODAModel"], weights="lively.safetensors", precision="auto")
        assert "flatter" not in caplog.text
        loaded = run_node(moda_nodes["MODA_LoadMODAModel"], weights="flat.safetensors", precision="auto").args[0]
    assert loaded.kind == "moda"
    assert "MODA Load MODA Model" in caplog.text
    assert "flatter than its training clip after 7 training steps" in caplog.text
    assert "blinks 0/min (clip 24)" in caplog.text and "MODA Add Blinks" in caplog.text
