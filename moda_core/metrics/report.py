"""Metric results and a report table (plain text, Markdown or JSON), plus :func:`evaluate` that runs them all.

Every metric that cannot be computed for the inputs given (no reference, a single sample, no SyncNet
weights, frames too small for NIQE, ...) still gets a row: its value is ``None`` and ``skipped`` says why.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from moda_core.models.syncnet import SyncNet
    from moda_core.repr import TalkingRepr
    from moda_core.subject import Subject


@dataclass(frozen=True)
class MetricResult:
    """One metric value, or the reason it was not computed.

    ``value`` is a float or ``None`` (then ``skipped`` holds a one-line reason); ``unit`` is human-readable;
    ``higher_is_better`` is ``True``/``False``, or ``None`` for descriptive statistics (pose range, blinks).
    """

    name: str
    value: float | None
    unit: str = ""
    higher_is_better: bool | None = None
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.value is not None

    @classmethod
    def skip(cls, name: str, reason: str, unit: str = "", higher_is_better: bool | None = None,
             **details: Any) -> "MetricResult":
        return cls(name=name, value=None, unit=unit, higher_is_better=higher_is_better, skipped=reason,
                   details=details)

    def format_value(self, digits: int = 4) -> str:
        if not self.ok:
            return f"skipped: {self.skipped}"
        return f"{self.value:.{digits}g}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["value"] is not None and not math.isfinite(out["value"]):
            out["value"] = str(out["value"])       # JSON has no inf/nan
        return out


def _arrow(higher_is_better: bool | None) -> str:
    return {True: "↑", False: "↓"}.get(higher_is_better, "")


class MetricsReport:
    """An ordered table of :class:`MetricResult` rows; look rows up by name with ``report["LMD"]``."""

    def __init__(self, results: Iterable[MetricResult] = ()):
        self.results: list[MetricResult] = list(results)

    def add(self, result: MetricResult) -> MetricResult:
        self.results.append(result)
        return result

    def __iter__(self) -> Iterator[MetricResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, name: str) -> MetricResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no metric named {name!r}; have {[r.name for r in self.results]}")

    def values(self) -> dict[str, float | None]:
        """``{name: value}`` (``None`` for skipped rows)."""
        return {r.name: r.value for r in self.results}

    def to_dict(self) -> dict[str, Any]:
        return {"format": "moda-metrics", "version": 1, "metrics": [r.to_dict() for r in self.results]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_markdown(self, digits: int = 4) -> str:
        lines = ["| metric | value | unit | better |", "|---|---|---|---|"]
        for r in self.results:
            value = r.format_value(digits).replace("|", "\\|")
            lines.append(f"| {r.name} | {value} | {r.unit} | {_arrow(r.higher_is_better)} |")
        return "\n".join(lines)

    def to_text(self, digits: int = 4) -> str:
        rows = [(r.name + (" " + _arrow(r.higher_is_better) if r.higher_is_better is not None else ""),
                 r.format_value(digits), r.unit) for r in self.results]
        if not rows:
            return "(no metrics)"
        w0 = max(len(a) for a, _, _ in rows)
        w1 = max(len(b) for _, b, _ in rows if not b.startswith("skipped")) if any(
            not b.startswith("skipped") for _, b, _ in rows) else 0
        return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"MetricsReport({len(self.results)} metrics)"


# ---------------------------------------------------------------- shared input helpers
def to_numpy(x: Any, name: str = "input") -> np.ndarray:
    """A torch tensor (any device, detached) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"{name} must be a tensor or array, got {type(x).__name__}: {err}") from err


# ---------------------------------------------------------------- everything at once
def evaluate(generated: "TalkingRepr | None" = None, reference: "TalkingRepr | None" = None, *,
             subject: "Subject | None" = None, generated_frames: Any = None, reference_frames: Any = None,
             audio: Any = None, sample_rate: int | None = None, fps: float | None = None,
             syncnet_weights: str | os.PathLike | None = None, syncnet: "SyncNet | None" = None,
             sync_rows: list[MetricResult] | None = None, niqe_row: MetricResult | None = None,
             models_dir: str | os.PathLike | None = None,
             progress: Callable[[int, int], None] | None = None, dims: int = 2, target_points: Any = None,
             reference_points: Any = None, face_center: Any = "authors") -> MetricsReport:
    """Compute every metric the inputs allow; the rest are rows with a ``skipped`` reason.

    * ``generated`` / ``reference``: R (absolute, or offsets plus ``subject``) for LMD, LMD-v, MA; ``generated``
      alone gives diversity (when it has >= 2 samples), head-pose range/speed and blink rate.
    * ``generated_frames`` / ``reference_frames``: ``[T, H, W, 3]`` video for PSNR, SSIM, TCM; ``generated_frames``
      alone gives NIQE (see :func:`moda_core.metrics.image.niqe`; frames of at least two 96x96 blocks).
    * ``generated_frames`` at ``fps`` (default: ``generated.fps``) + ``audio`` + ``sample_rate`` + SyncNet
      (``syncnet_weights``, a file, or ``syncnet``, a loaded network): "Sync" and "Sync-D" (LSE-C / LSE-D, see
      :mod:`moda_core.metrics.syncnet`; face boxes from MediaPipe models in ``models_dir``). ``sync_rows``
      are those two rows computed elsewhere (e.g. streamed from a video file); ``niqe_row`` is the NIQE row
      computed elsewhere (e.g. on a video at its own size).
    * ``generated_frames`` + the points they were rendered to, ``target_points`` ``[T, 478, 2]`` (px of the 512
      crop), or else ``generated`` (sample 0, with ``subject`` for offsets) projected with ``face_center`` (the
      renderer's): "landmark follow" (:mod:`moda_core.metrics.follow`, MediaPipe model in ``models_dir``).
    * ``generated_frames`` / ``reference_frames``: "sharpness ratio" (:mod:`moda_core.metrics.sharpness`); face
      boxes from ``reference_points`` ``[T, 478, 2]`` (px of the 512 crop) or MediaPipe on the reference frames.

    A metric whose inputs are invalid (a ``ValueError``, e.g. frame counts differ) becomes a skipped row
    whose reason starts with ``"error:"``.
    """
    from moda_core.metrics import image, landmarks, motion, temporal
    from moda_core.geometry import HEAD_POSE_AXES

    report = MetricsReport()

    def run(name: str, unit: str, better: bool | None, need: str | None, fn) -> None:
        if need:
            report.add(MetricResult.skip(name, need, unit, better))
            return
        try:
            report.add(MetricResult(name, float(fn()), unit, better))
        except ValueError as err:
            report.add(MetricResult.skip(name, f"error: {err}", unit, better))

    pair = None if generated is not None and reference is not None else \
        "needs both a generated and a reference R"
    run("LMD", "canonical px", False, pair,
        lambda: landmarks.lmd(generated, reference, dims=dims, subject=subject))
    run("LMD-v", "canonical px/frame", False, pair,
        lambda: landmarks.lmd_v(generated, reference, dims=dims, subject=subject))
    run("MA", "IoU", True, pair, lambda: landmarks.mouth_area_iou(generated, reference, subject=subject))

    frames = None if generated_frames is not None and reference_frames is not None else \
        "needs both generated and reference frames"
    run("PSNR", "dB", True, frames, lambda: image.psnr(generated_frames, reference_frames))
    run("SSIM", "", True, frames, lambda: image.ssim(generated_frames, reference_frames))
    run("TCM", "", True, frames, lambda: temporal.tcm(generated_frames, reference_frames))
    if niqe_row is not None:
        report.add(niqe_row)
    elif generated_frames is None:
        report.add(MetricResult.skip("NIQE", "needs generated frames", "", False))
    else:
        try:
            report.add(image.niqe(generated_frames))
        except ValueError as err:
            report.add(MetricResult.skip("NIQE", f"error: {err}", "", False))
    rate = fps if fps is not None else (generated.fps if generated is not None else 30.0)
    report.add(_sharpness_row(generated_frames, reference_frames, reference_points, models_dir, rate))
    report.add(_follow_row(generated, subject, generated_frames, target_points, face_center, models_dir, rate))
    if sync_rows is None:
        sync_rows = _sync_rows(generated, generated_frames, audio, sample_rate, fps, syncnet_weights, syncnet,
                               models_dir, progress)
    for row in sync_rows:
        report.add(row)

    gen = None if generated is not None else "needs a generated R"
    diverse = gen or (None if generated.num_samples >= 2 else
                      f"needs >= 2 samples of the same audio, generated R has {generated.num_samples}")
    run("Diversity", "canonical px^2", None, diverse, lambda: motion.diversity(generated, dims=dims))
    stats, pose_reason = None, gen
    if gen is None:
        try:
            stats = motion.head_pose_stats(generated)
        except ValueError as err:
            pose_reason = f"error: {err}"
    for axis in HEAD_POSE_AXES[:6]:
        unit = "deg" if axis in ("yaw", "pitch", "roll") else "px"
        run(f"pose range {axis}", unit, None, pose_reason, lambda a=axis: stats[a]["range"])
        run(f"pose speed {axis}", f"{unit}/s", None, pose_reason, lambda a=axis: stats[a]["speed"])
    run("blink rate", "blinks/min", None, gen, lambda: motion.blink_rate(generated, subject=subject))
    return report


def _sync_rows(generated, frames, audio, sample_rate, fps, weights, network, models_dir,
               progress) -> list[MetricResult]:
    from moda_core.metrics import syncnet

    if frames is None or audio is None:
        return syncnet.skipped_rows("needs generated frames and the audio")
    fps = fps if fps is not None else (generated.fps if generated is not None else None)
    try:
        return syncnet.syncnet_confidence(frames, audio, sample_rate, fps=fps, weights_path=weights, network=network,
                                          models_dir=models_dir, progress=progress)
    except ValueError as err:
        return syncnet.skipped_rows(f"error: {err}")


def _sharpness_row(generated_frames, reference_frames, reference_points, models_dir, fps) -> MetricResult:
    from moda_core.metrics import sharpness

    name, unit = sharpness.SHARPNESS_NAME, sharpness.SHARPNESS_UNIT
    if generated_frames is None or reference_frames is None:
        return MetricResult.skip(name, "needs both generated and reference frames", unit)
    try:
        return sharpness.sharpness_ratio(generated_frames, reference_frames, reference_points=reference_points,
                                         models_dir=models_dir, fps=fps)
    except ValueError as err:
        return MetricResult.skip(name, f"error: {err}", unit)


def _follow_row(generated, subject, frames, target_points, face_center, models_dir, fps) -> MetricResult:
    from moda_core.metrics import follow

    name, unit = follow.FOLLOW_NAME, follow.FOLLOW_UNIT
    if frames is None or (target_points is None and generated is None):
        return MetricResult.skip(name, "needs generated frames and the points they were rendered to (target "
                                 "points, or the generated R with its subject)", unit, False)
    try:
        if target_points is None:
            from moda_core.projection import project_repr

            if subject is None and (generated.is_offset or generated.face is None):
                raise ValueError("placing the generated R's points needs its subject (the R holds offsets or no "
                                 "dense face)")
            target_points = project_repr(generated, subject, face_center=face_center)[0][..., :2]
        return follow.landmark_follow(frames, target_points, models_dir, fps=fps)
    except ValueError as err:
        return MetricResult.skip(name, f"error: {err}", unit, False)
