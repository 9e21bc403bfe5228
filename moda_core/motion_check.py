"""How lively a trained MODA's motion is next to its training clip, stored with the weights and told when used.

A MODA trained briefly on a few seconds of one clip (``moda quickstart``) regresses to the clip's mean motion:
its losses (L1 / L2 on the offsets) reward the average, blinks and head turns are not predictable from the
audio, and the VAE latent is drawn from a posterior that sees only the audio, so the network learns to ignore
the noise and every seed gives the same motion. :func:`check_motion` measures that on the training clip's own
audio and :func:`motion_warning` turns the stored result into a message wherever the weights are loaded.

Figures (``moda eval``'s definitions, :mod:`moda_core.metrics.motion`, on smoothed motion as ``animate`` makes it):
blink rate (blinks/min), yaw / pitch / roll range (deg), and seed diversity (canonical px^2, mouth and eyes x/y)
next to the clip's own motion variance (variance over time of the same coordinates). A figure is *flat* when
it is below :data:`FLAT_FRACTION` of the clip's (diversity: below :data:`DIVERSITY_FRACTION` of the clip's motion
variance, i.e. seeds practically identical).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from moda_core.repr import TalkingRepr

if TYPE_CHECKING:
    import torch

    from moda_core.subject import Subject
    from moda_core.train.datasets import SampleData

METADATA_KEY = "motion_check"
FLAT_FRACTION = 0.5           # "within 50 % of the clip's"
DIVERSITY_FRACTION = 0.01
_AXES = ("yaw", "pitch", "roll")


@dataclass(frozen=True)
class MotionFigures:
    blinks_per_min: float
    yaw_range: float
    pitch_range: float
    roll_range: float
    spread: float             # model: seed diversity; clip: variance over time (canonical px^2)


@dataclass(frozen=True)
class MotionCheck:
    """The model's figures on the clip's audio next to the clip's own."""

    model: MotionFigures
    clip: MotionFigures
    steps: int | None = None  # training steps behind the weights, when known

    def flat(self) -> list[str]:
        """What falls short of the clip: e.g. ``["blinks 0/min (clip 24)", "yaw range 0.1 deg (clip 9.1)"]``."""
        out = []
        m, c = self.model, self.clip
        if m.blinks_per_min < FLAT_FRACTION * c.blinks_per_min:
            out.append(f"blinks {m.blinks_per_min:.0f}/min (clip {c.blinks_per_min:.0f})")
        for axis in _AXES:
            mine, clip = getattr(m, f"{axis}_range"), getattr(c, f"{axis}_range")
            if mine < FLAT_FRACTION * clip:
                out.append(f"{axis} range {mine:.1f} deg (clip {clip:.1f})")
        if m.spread < DIVERSITY_FRACTION * c.spread:
            out.append(f"seed diversity {m.spread:.2g} px^2 (clip motion variance {c.spread:.2g}: samples "
                       "practically identical)")
        return out

    def summary(self) -> str:
        m, c = self.model, self.clip
        line = (f"motion on the clip's audio: blinks {m.blinks_per_min:.0f}/min (clip {c.blinks_per_min:.0f}), "
                f"yaw/pitch/roll range {m.yaw_range:.1f}/{m.pitch_range:.1f}/{m.roll_range:.1f} deg "
                f"(clip {c.yaw_range:.1f}/{c.pitch_range:.1f}/{c.roll_range:.1f}), seed diversity "
                f"{m.spread:.2g} px^2 (clip motion variance {c.spread:.2g})")
        return line + ("; flatter than the clip" if self.flat() else "; within 50 % of the clip")

    def to_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: json.dumps({"model": asdict(self.model), "clip": asdict(self.clip),
                                          "steps": self.steps})}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> MotionCheck | None:
        """The check stored in a weight file's metadata, or None (absent or unreadable)."""
        try:
            data = json.loads(metadata[METADATA_KEY])
            return cls(MotionFigures(**data["model"]), MotionFigures(**data["clip"]), data.get("steps"))
        except (KeyError, TypeError, ValueError):
            return None


def motion_figures(r: TalkingRepr, subject: "Subject", *, clip: bool = False) -> MotionFigures:
    """Figures of an R (offsets or absolute): seed diversity for generated R (``S >= 2``), variance over time
    of the same coordinates for a clip (``clip=True``)."""
    from moda_core.metrics import motion

    stats = motion.head_pose_stats(r)
    if clip:
        points = np.concatenate([r.mouth.double().numpy()[..., :2], r.eyes.double().numpy()[..., :2]], axis=2)
        spread = float(points.var(axis=1).mean())
    else:
        spread = motion.diversity(r)
    return MotionFigures(motion.blink_rate(r, subject=subject), *(stats[a]["range"] for a in _AXES), spread)


def check_motion(moda: "torch.nn.Module", waveform: np.ndarray, subject: "Subject", clip: TalkingRepr, *,
                 seeds: int = 3, steps: int | None = None) -> MotionCheck:
    """Generate ``seeds`` samples for the clip's audio (smoothed as ``animate`` does) and compare with the clip."""
    from moda_core.pipeline import predict_motion
    from moda_core.smoothing import smooth_motion

    if seeds < 2:
        raise ValueError(f"seeds must be >= 2 (diversity compares samples), got {seeds}")
    was_training = moda.training
    moda.eval()
    try:
        generated = smooth_motion(predict_motion(moda, waveform, subject, fps=clip.fps, num_samples=seeds))
    finally:
        moda.train(was_training)
    return MotionCheck(motion_figures(generated, subject), motion_figures(clip, subject, clip=True), steps)


def motion_warning(path: str | os.PathLike, check: MotionCheck | None = None) -> str | None:
    """A one-line warning when the MODA weights at ``path`` carry a motion check (``check``: that one, already
    read or just made) that found flat motion."""
    if check is None:
        from moda_core.checkpoints import read_metadata

        check = MotionCheck.from_metadata(read_metadata(path))
    if check is None or not check.flat():
        return None
    steps = f" after {check.steps} training steps" if check.steps is not None else ""
    return (f"{os.fspath(path)}: this MODA's motion is flatter than its training clip{steps} "
            f"({'; '.join(check.flat())}). Expect little head motion, few blinks and near-identical samples: add "
            "blinks with `moda edit --blink-rate 20` (node MODA Add Blinks), scale head motion with "
            "`--head-gain yaw=2` (MODA Head Pose Gain), or train MODA longer (`moda train moda SAMPLE --minutes 30`).")


def record_motion_check(path: str | os.PathLike, waveform: np.ndarray, subject: "Subject", clip: TalkingRepr, *,
                        steps: int | None = None, seeds: int = 3) -> MotionCheck:
    """Check the MODA weights at ``path`` against their training clip and store the result in the file's metadata
    (rewritten atomically; other metadata kept)."""
    from moda_core.checkpoints import load_model, read_metadata, save_model

    model = load_model(path, kind="moda")
    check = check_motion(model, waveform, subject, clip, seeds=seeds, steps=steps)
    kept = {k: v for k, v in read_metadata(path).items() if k not in ("moda_format", "kind", "config")}
    save_model(model, path, "moda", extra_metadata={**kept, **check.to_metadata()})
    return check


def record_sample_check(path: str | os.PathLike, sample: "SampleData", *, steps: int | None = None,
                        max_seconds: float = 20.0, seeds: int = 3) -> MotionCheck:
    """:func:`record_motion_check` on a prepared training sample's first ``max_seconds`` (one MODA window)."""
    from moda_core.models.audio_encoder import SAMPLE_RATE

    frames = min(sample.num_frames, max(2, round(max_seconds * sample.fps)))
    audio = np.asarray(sample.audio[:round(frames * SAMPLE_RATE / sample.fps)])
    return record_motion_check(path, audio, sample.subject, sample.repr.slice_time(0, frames), steps=steps,
                               seeds=seeds)
