"""SyncNet audio-visual sync confidence (the paper's "Sync", LSE-C): reported as skipped, with the reason.

The paper scores lip sync with the confidence of SyncNet (Chung & Zisserman 2016): the gap between the median
and the minimum audio-video embedding distance over +-15 frame offsets, on 5-frame windows of 224x224 face
crops found by the S3FD detector and 13-coefficient MFCCs of 16 kHz audio. That pipeline needs two networks'
weights (``syncnet_v2.model`` and ``sfd_face.pth`` from the syncnet_python project), which cannot be bundled
or downloaded here, and the score is sensitive to the crop: a re-implementation without the reference pipeline
and parity data would print numbers that look like LSE-C but are not comparable with published ones.

So :func:`syncnet_confidence` returns a :class:`MetricResult` named ``"Sync"`` with ``value=None``:

* no ``weights_path``: ``skipped`` = :data:`NO_WEIGHTS_REASON`;
* a ``weights_path`` that does not exist: ``FileNotFoundError`` naming it (the user asked for it);
* an existing ``weights_path``: ``skipped`` = :data:`NOT_IMPLEMENTED_REASON` (the path is kept in ``details``).

Inputs are validated in every case (``ValueError`` for bad shapes), so callers can rely on the checks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from moda_core.metrics.image import Frames
from moda_core.metrics.report import MetricResult, to_numpy

NO_WEIGHTS_REASON = ("SyncNet confidence needs user-supplied SyncNet weights (syncnet_v2.model of the "
                     "syncnet_python project); none given, so Sync was not computed.")
NOT_IMPLEMENTED_REASON = ("SyncNet scoring is not implemented in moda_core: the weights were found, but the "
                          "reference LSE-C pipeline (S3FD face crops, 224x224 5-frame windows, MFCC audio, "
                          "+-15 frame offset search) is not reproduced here, so no comparable score can be given. "
                          "Run syncnet_python on the exported video instead.")


def _check_audio(audio: Any, sample_rate: int | None) -> np.ndarray:
    wave = to_numpy(audio, "audio")
    if wave.ndim == 3 and wave.shape[0] == 1:          # ComfyUI AUDIO waveform [B=1, C, N]
        wave = wave[0]
    if wave.ndim == 2:                                 # [C, N] -> mono
        wave = wave.mean(axis=0)
    if wave.ndim != 1 or wave.size == 0 or not np.issubdtype(wave.dtype, np.number):
        raise ValueError(f"audio must be a waveform [N], [C, N] or [1, C, N], got shape {list(wave.shape)}")
    if sample_rate is None or int(sample_rate) <= 0:
        raise ValueError(f"audio needs sample_rate > 0, got {sample_rate}")
    return wave


def syncnet_confidence(frames: Any, audio: Any, sample_rate: int | None, *,
                       weights_path: str | os.PathLike | None = None) -> MetricResult:
    """The "Sync" row: always skipped for now, with the reason (see the module docstring)."""
    checked = Frames(frames, "frames")
    _check_audio(audio, sample_rate)
    if weights_path is None or str(weights_path) == "":
        return MetricResult.skip("Sync", NO_WEIGHTS_REASON, "", True)
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet weights not found at {path}; give the path of syncnet_v2.model")
    return MetricResult.skip("Sync", NOT_IMPLEMENTED_REASON, "", True, weights_path=str(path),
                             frames=len(checked))
