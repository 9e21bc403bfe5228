"""A network-free motion preview: checks a subject, the geometry and the drawing before any model exists.

:func:`loudness_motion` builds an R (offsets) whose mouth opens with the audio's loudness, whose head sways
slowly and whose eyes blink every few seconds. It is a preview of the condition images the renderer will
see, not MODA's output.
"""
from __future__ import annotations

import numpy as np
import torch

from moda_core.landmarks import eye_indices, mouth_indices
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

_LOWER_LIP = {14, 17, 84, 87, 91, 146, 178, 181, 314, 317, 321, 375, 402, 405, 95, 88, 324, 318}
_UPPER_LIDS = {246, 161, 160, 159, 158, 157, 173, 466, 388, 387, 386, 385, 384, 398}


def loudness_envelope(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS loudness per video frame, normalised to 0..1 by the clip's 95th percentile."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    hop = sample_rate / fps
    rms = np.array([np.sqrt(np.mean(np.square(wave[int(i * hop):int((i + 1) * hop)]) + 1e-12))
                    for i in range(num_frames)], dtype=np.float32)
    return np.clip(rms / max(float(np.percentile(rms, 95)), 1e-6), 0.0, 1.0)


def loudness_motion(subject: Subject, num_frames: int, fps: float, loudness: np.ndarray | None = None,
                    *, mouth_open_px: float = 14.0, sway_degrees: float = 4.0) -> TalkingRepr:
    """Offsets R with loudness-driven jaw opening, a slow head sway and a blink every 4 s."""
    t = torch.arange(num_frames, dtype=torch.float32) / fps
    level = torch.zeros(num_frames) if loudness is None else torch.as_tensor(loudness, dtype=torch.float32)
    mouth = torch.zeros(num_frames, 40, 3)
    lower = torch.tensor([i in _LOWER_LIP for i in mouth_indices().tolist()])
    mouth[:, lower, 1] = level[:, None] * mouth_open_px
    eyes = torch.zeros(num_frames, 60, 3)
    upper = torch.tensor([i in _UPPER_LIDS for i in eye_indices().tolist()])
    blink = torch.exp(-(((t % 4.0) - 2.0) / 0.08) ** 2)                        # ~0.25 s blink every 4 s
    eyes[:, upper, 1] = blink[:, None] * 9.0
    head = torch.zeros(num_frames, 7)
    head[:, 0] = sway_degrees * torch.sin(2 * torch.pi * t / 5.0)
    head[:, 1] = 0.5 * sway_degrees * torch.sin(2 * torch.pi * t / 7.0)
    torso = torch.zeros(num_frames, 18, 3)
    return TalkingRepr(mouth=mouth, eyes=eyes, head_pose=head, torso=torso, fps=fps, is_offset=True,
                       subject=subject.name, meta={"source": "loudness preview (no network)"})
