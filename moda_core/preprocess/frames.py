"""Frames already in memory (e.g. a ComfyUI IMAGE batch) -> :class:`~moda_core.subject.Subject` + R.

The in-memory counterpart of :func:`moda_core.preprocess.prepare_video_sample`, built from the same pieces and
giving the same Subject and R: one crop box for the clip (median anchor and scale), landmarks of frames without
a face interpolated in time then smoothed with a centred 3-frame mean, shoulders from the person mask, R with
absolute canonical values at the frames' rate. Nothing is written to disk. The subject also keeps the full
source frame of its reference (``source_image``), so renders can be pasted back into that frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from moda_core.preprocess.errors import PreprocessError
from moda_core.preprocess.images import read_image
from moda_core.preprocess.sample import (Progress, _face_track, _motion_repr, _no_progress, _subject, _torso_track,
                                         _track_faces)
from moda_core.preprocess.segmentation import PersonSegmenter
from moda_core.preprocess.torso import shoulder_points
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

FramesInput = np.ndarray | torch.Tensor | list


@dataclass
class FramesSummary:
    """What :func:`subject_from_frames` found (frame indices are positions in the input)."""

    num_frames: int
    reference_frame: int
    frames_without_face: list[int]
    frames_without_torso: list[int]
    warnings: list[str] = field(default_factory=list)


def _frame(frames: FramesInput, k: int) -> np.ndarray:
    return read_image(frames[k])[0]


def subject_from_frames(frames: FramesInput, fps: float, models_dir: str | os.PathLike | None = None,
                        name: str = "", progress: Progress | None = None
                        ) -> tuple[Subject, TalkingRepr, FramesSummary]:
    """Frames ``[T, H, W, 3]`` (uint8, or float 0..1 as ComfyUI IMAGE) at ``fps`` -> (Subject, R, summary).

    ``progress(stage, done, total)`` is called after every frame of the two passes (``"landmarks"``,
    ``"crop+torso"``) and may raise to stop. Raises :class:`PreprocessError` when ``fps`` is not positive, there
    are no frames, a face is found in fewer than half of them, or the face is too small.
    """
    if not fps > 0:
        raise PreprocessError(f"fps must be positive, got {fps}")
    count = len(frames)
    if count == 0:
        raise PreprocessError("no frames given; pass at least one frame [T, H, W, 3]")
    report = progress or _no_progress

    raw, sources, reference = _track_faces(((k, k, _frame(frames, k)) for k in range(count)), fps, count,
                                           models_dir, report)
    track = _face_track(raw, sources, reference, label="the frames")
    box, faces, found = track.box, track.faces, track.found

    shoulders, sides = np.zeros((count, 18, 2)), np.zeros(count, dtype=np.int64)
    reference_frame, reference_good = 0, False
    with PersonSegmenter(models_dir) as segmenter:
        for k in range(count):
            crop = box.cut(_frame(frames, k))
            points, sides[k] = shoulder_points(segmenter.person_probability(crop), faces[k])
            if points is not None:
                shoulders[k] = points
            if not reference_good and found[k] and sides[k] == 2:
                reference_frame, reference_good = k, True
            report("crop+torso", k + 1, count)

    torso, torso_found, warnings = _torso_track(shoulders, sides, track)

    source = _frame(frames, reference_frame)
    subject = _subject(track, torso, box.cut(source), (source.shape[1], source.shape[0]), name, source_image=source,
                       reference_index=reference_frame)
    r = _motion_repr(track, torso, fps, name, {"source": "frames", "reference_frame": str(reference_frame)})
    summary = FramesSummary(num_frames=count, reference_frame=reference_frame,
                            frames_without_face=np.flatnonzero(~found).tolist(),
                            frames_without_torso=np.flatnonzero(~torso_found).tolist(), warnings=warnings)
    return subject, r, summary
