"""Fixtures shared by the node tests: tiny random-weight networks in a ComfyUI models/moda folder.

Use with ``from pipeline_fixtures import *  # noqa: F401,F403``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moda_core.checkpoints import save_model
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.moda import MODAConfig, MODANet
from moda_core.models.renderer import RendererConfig, RenderGenerator

MEDIAPIPE_FILES = ("face_landmarker.task", "selfie_segmenter.tflite")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """moda / faco / renderer .safetensors of tiny random networks (renderer 64 px), written once."""
    folder = tmp_path_factory.mktemp("tiny_weights")
    torch.manual_seed(7)
    save_model(MODANet(MODAConfig.tiny()).eval(), folder / "moda.safetensors")
    save_model(FaCoNet(FaCoConfig.tiny()).eval(), folder / "faco.safetensors")
    save_model(RenderGenerator(RendererConfig.tiny()).eval(), folder / "renderer.safetensors")
    return folder


@pytest.fixture
def moda_dir(comfy_dirs, tiny_weights, data_dir) -> Path:
    """<models>/moda holding the tiny weights and the MediaPipe files, as a user would set it up."""
    folder = comfy_dirs.models / "moda"
    folder.mkdir()
    for path in tiny_weights.iterdir():
        (folder / path.name).symlink_to(path)
    for name in MEDIAPIPE_FILES:
        (folder / name).symlink_to(data_dir / "models" / name)
    return folder


__all__ = ["tiny_weights", "moda_dir", "MEDIAPIPE_FILES"]
