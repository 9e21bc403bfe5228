"""Shared fixtures of the training tests (imported by the other tests/test_train_*.py files).

One real sample folder per session: the first 3 s of may_5s.mp4 prepared with MediaPipe (90 frames at 30 fps).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

SAMPLE_SECONDS = 3.0


@functools.cache
def _prepare(video: Path, models: Path, folder: Path) -> Path:
    from moda_core.preprocess import prepare_video_sample

    prepare_video_sample(video, folder, fps=30.0, models_dir=models, max_seconds=SAMPLE_SECONDS)
    return folder


@pytest.fixture(scope="session")
def sample_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared sample folder (made once per session, whichever test module asks first)."""
    return _prepare(data_dir / "video" / "may_5s.mp4", data_dir / "models", tmp_path_factory.getbasetemp() / "may")


@pytest.fixture(scope="session")
def sample(sample_dir: Path):
    from moda_core.train import load_sample

    return load_sample(sample_dir)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture()
def offline_vgg(monkeypatch, tmp_path):
    """No VGG19 download: torch.hub raises like an offline machine, and the hub cache is empty."""
    import urllib.error

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
