"""Talking video -> a sample folder for training and evaluating MODA / FaCo / the renderer.

Folder format (``sample.json`` ``format = "moda-sample"``, ``version = 1``)::

    <name>/
      sample.json          counts, fps, source facts, crop, frames without face/torso, warnings
      repr.safetensors     TalkingRepr, absolute canonical values, one sample: mouth, eyes, face (478 points),
                           head_pose, torso, at ``fps``
      subject.safetensors  Subject: template = mean canonical face, mean pose, mean torso,
                           reference = crop of the first frame with a face and both shoulders
      frames/000000.png    the 512x512 RGB crop of every frame (lossless PNG, zero-padded index; PNG gives
                           the renderer trainer random access without video seeking)
      audio.wav            16 kHz mono 16-bit PCM, exactly round(num_frames * 16000 / fps) samples
      tracks.npz           landmarks [T, 478, 3] (crop image space, px, z toward camera; filled and smoothed:
                           what R was made from), landmarks_raw (as detected, NaN where no face),
                           face_found [T], torso_found [T], source_index [T] (source frame of each frame)

Frames are the source resampled to ``fps`` (nearest frame in time). One crop box serves the whole clip
(median anchor and scale over all frames), so the head moves inside a fixed frame as in HDTF. Landmarks of
frames without a face are interpolated in time; then, like the authors, a centred 3-frame mean smooths them.
The folder is written under a temporary name and renamed at the end: a failure leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import torch
from scipy.io import wavfile
from scipy.ndimage import uniform_filter1d

from moda_core.fileio import current_umask
from moda_core.landmarks import eye_indices, mouth_indices
from moda_core.preprocess.audio import AUDIO_RATE, load_audio
from moda_core.preprocess.crop import CropBox, crop_box_for
from moda_core.preprocess.errors import PreprocessError
from moda_core.preprocess.face_geometry import FrontalReference, load_frontal_reference
from moda_core.preprocess.landmarks import FaceLandmarks
from moda_core.preprocess.pose import (canonicalise, head_pose, reprojection_error, require_face_size,
                                      to_image_space)
from moda_core.preprocess.segmentation import PersonSegmenter
from moda_core.preprocess.torso import billboard, fallback_shoulders, shoulder_points, smooth_track
from moda_core.preprocess.video import VideoInfo, probe_video, read_frames
from moda_core.repr import TalkingRepr
from moda_core.smoothing import fill_missing
from moda_core.subject import REFERENCE_SIZE, Subject

SAMPLE_FORMAT = "moda-sample"
SAMPLE_VERSION = 1
MIN_FACE_FRACTION = 0.5
FRAME_PATTERN = "frames/{:06d}.png"
Progress = Callable[[str, int, int], None]


@dataclass
class SampleSummary:
    """The contents of ``sample.json`` (plus ``path``, the finished folder)."""

    path: str
    name: str
    fps: float
    num_frames: int
    audio_samples: int
    source: dict
    crop_to_source: list
    frames_without_face: list[int]
    frames_without_torso: list[int]
    reprojection_error_px: float
    warnings: list[str] = field(default_factory=list)
    format: str = SAMPLE_FORMAT
    version: int = SAMPLE_VERSION
    frame_size: int = REFERENCE_SIZE
    frames: str = FRAME_PATTERN.replace("{:06d}", "%06d")
    audio_rate: int = AUDIO_RATE

    def one_line(self) -> str:
        return (f"{self.path}: {self.num_frames} frames at {self.fps:g} fps, {self.audio_samples / self.audio_rate:.2f}"
                f" s audio, {len(self.frames_without_face)} frames without face, "
                f"{len(self.frames_without_torso)} without shoulders, reprojection {self.reprojection_error_px:.2e} px")


def _no_progress(stage: str, done: int, total: int) -> None:
    """Default progress callback: ignore."""


class _PngWriter:
    """Writes RGB frames as PNG (zlib level 1) on a background thread; at most ``depth`` frames queued."""

    def __init__(self, depth: int = 8):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: deque[tuple[Path, Future]] = deque()
        self._depth = depth

    def write(self, path: Path, rgb: np.ndarray) -> None:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        written = self._pool.submit(cv2.imwrite, str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        self._pending.append((path, written))
        while len(self._pending) > self._depth:
            self._check(*self._pending.popleft())

    @staticmethod
    def _check(path: Path, written: Future) -> None:
        if not written.result():
            raise PreprocessError(f"cannot write frame {path}; is the disk full?")

    def __enter__(self) -> "_PngWriter":
        return self

    def __exit__(self, *exc) -> None:
        try:
            while self._pending:
                self._check(*self._pending.popleft())
        finally:
            self._pool.shutdown(wait=True)


def _track_faces(frames: Iterable[tuple[int, int, np.ndarray]], fps: float, expected: int, models_dir,
                 progress: Progress) -> tuple[np.ndarray, np.ndarray, FrontalReference]:
    """Pass 1 over ``(output_index, source_index, rgb)`` at ``fps`` (about ``expected`` of them, the progress
    total) -> (source image-space faces ``[T, 478, 3]``, NaN where none; source frame index ``[T]``; the
    frontal reference of the landmarker's model). A repeated source frame reuses its detection."""
    # one growing array, not a list of per-frame arrays: a long clip's track is one block the allocator gives
    # back when freed (thousands of small arrays would stay fragmented in the heap)
    faces, sources = np.empty((max(expected, 1), 478, 3)), np.empty(max(expected, 1), dtype=np.int64)
    count, last_source, last_face = 0, -1, None
    with FaceLandmarks(models_dir, video=True) as landmarker:
        for k, source, rgb in frames:
            if source != last_source:
                found = landmarker.detect(rgb, timestamp_ms=int(k * 1000 / fps))
                last_face = to_image_space(found[0]) if found else np.full((478, 3), np.nan)
                last_source = source
            if count == len(faces):
                faces, sources = np.concatenate([faces, faces]), np.concatenate([sources, sources])
            faces[count], sources[count] = last_face, source
            count += 1
            progress("landmarks", k + 1, max(expected, k + 1))
        reference = load_frontal_reference(landmarker.model_path)
    return faces[:count], sources[:count], reference


def _fill_and_smooth(faces: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Interpolate missing frames linearly in time, then a centred 3-frame mean (edges repeated)."""
    filled = fill_missing(faces, found).reshape(len(faces), -1)
    return uniform_filter1d(filled, size=3, axis=0, mode="nearest").reshape(faces.shape)


def _crop_and_segment(info: VideoInfo, fps: float, max_seconds: float | None, box: CropBox, faces: np.ndarray,
                      found: np.ndarray, folder: Path, models_dir,
                      progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Pass 2: write the crops and find shoulders -> (``[T, 18, 2]``, sides seen ``[T]``, reference crop, its frame)."

    The reference is the first crop with a detected face and both shoulders (else the first crop).
    """
    shoulders = np.zeros((len(faces), 18, 2))
    sides = np.zeros(len(faces), dtype=np.int64)
    reference, reference_index, reference_good, last_source, last = None, 0, False, -1, (None, 0)
    (folder / "frames").mkdir()
    with PersonSegmenter(models_dir) as segmenter, _PngWriter() as writer:
        for k, source, rgb in read_frames(info.path, fps, max_seconds):
            if source != last_source:         # a repeated source frame has the same crop (never modified)
                crop = box.cut(rgb)
                last = shoulder_points(segmenter.person_probability(crop), faces[k])
                last_source = source
            if last[0] is not None:
                shoulders[k], sides[k] = last
            writer.write(folder / FRAME_PATTERN.format(k), crop)
            good = bool(found[k] and sides[k] == 2)
            if reference is None or (good and not reference_good):
                reference, reference_index, reference_good = crop, k, good
            progress("crop+torso", k + 1, len(faces))
    return shoulders, sides, reference, reference_index


def _write_audio(path: Path, waveform: np.ndarray) -> None:
    pcm = np.round(np.clip(waveform, -1.0, 1.0) * 32767.0).astype(np.int16)
    wavfile.write(path, AUDIO_RATE, pcm)


@dataclass(frozen=True)
class _FaceTrack:
    """Pass-1 result in the crop: detections, filled/smoothed faces, poses and canonical faces ``[T, ...]``."""

    raw: np.ndarray
    found: np.ndarray
    sources: np.ndarray
    box: CropBox
    faces: np.ndarray
    poses: np.ndarray
    canonical: np.ndarray


def _analyse_faces(info: VideoInfo, fps: float, max_seconds: float | None, models_dir,
                   progress: Progress) -> _FaceTrack:
    expected = int(round(min(info.duration, max_seconds or info.duration) * fps))
    raw, sources, reference = _track_faces(read_frames(info.path, fps, max_seconds), fps, expected, models_dir,
                                           progress)
    return _face_track(raw, sources, reference, label=str(info.path), where=f" of {info.path}")


def _face_track(raw: np.ndarray, sources: np.ndarray, reference: FrontalReference, *, label: str,
                where: str = "") -> _FaceTrack:
    """Pass-1 geometry from detections ``raw [T, 478, 3]`` (NaN where no face): one crop box, poses, canonical."""
    found = np.isfinite(raw).all(axis=(1, 2))
    if found.mean() < MIN_FACE_FRACTION:
        raise PreprocessError(f"a face was found in only {found.sum()} of {len(found)} frames{where} "
                              f"(need {MIN_FACE_FRACTION:.0%}); use a clip where the face stays visible")
    source_faces = _fill_and_smooth(raw, found)
    median_pose = np.median(head_pose(source_faces, reference), axis=0)
    require_face_size(median_pose, label)
    box = crop_box_for(median_pose[3:5], float(median_pose[6]))
    faces = box.to_crop(source_faces)
    poses = head_pose(faces, reference)
    return _FaceTrack(raw=box.to_crop(raw), found=found, sources=sources, box=box, faces=faces, poses=poses,
                      canonical=canonicalise(faces, poses))


def _torso_track(shoulders: np.ndarray, sides: np.ndarray, track: _FaceTrack) -> tuple[np.ndarray, np.ndarray,
                                                                                      list[str]]:
    """Canonical torso ``[T, 18, 3]`` (smoothed, or a default line when never seen), torso flags, warnings."""
    torso_found = sides > 0
    warnings = []
    if torso_found.any():
        shoulders = smooth_track(shoulders, torso_found)
    else:
        shoulders = np.stack([fallback_shoulders(face, REFERENCE_SIZE) for face in track.faces])
        warnings.append("no shoulders visible in any frame; using a default shoulder line below the chin")
    if not track.found.all():
        warnings.append(f"no face in {int((~track.found).sum())} frame(s); their landmarks are interpolated")
    return canonicalise(billboard(shoulders, track.faces), track.poses), torso_found, warnings


def _motion_repr(track: _FaceTrack, torso: np.ndarray, fps: float, name: str, meta: dict) -> TalkingRepr:
    """The absolute ground-truth R of a tracked clip (float32)."""
    canonical = track.canonical
    return TalkingRepr(mouth=canonical[:, mouth_indices()], eyes=canonical[:, eye_indices()], face=canonical,
                       head_pose=track.poses, torso=torso, fps=fps, subject=name, meta=meta).to(dtype=torch.float32)


def _subject(track: _FaceTrack, torso: np.ndarray, reference_image: np.ndarray, source_size: tuple[int, int],
             name: str, source_image: np.ndarray | None = None, reference_index: int | None = None) -> Subject:
    """The Subject of a tracked clip: template, head pose and torso are the means over its frames; with
    ``reference_index`` (the frame of ``reference_image``) it keeps that frame's face and torso points."""
    points = None
    if reference_index is not None:
        from moda_core.geometry import CANONICALISATION_FACE_CENTER, canonical_to_image

        shoulders = canonical_to_image(torch.from_numpy(np.asarray(torso[reference_index], np.float64)),
                                       torch.from_numpy(np.asarray(track.poses[reference_index], np.float64)),
                                       face_center=CANONICALISATION_FACE_CENTER)[:, :2].numpy()
        points = np.concatenate([track.faces[reference_index][:, :2], shoulders])
    return Subject(reference_image=reference_image, template=track.canonical.mean(0),
                   mean_head_pose=track.poses.mean(0), mean_torso=torso.mean(0),
                   crop_to_source=track.box.crop_to_source, source_size=source_size, name=name,
                   source_image=source_image, reference_points=points)


def _write_sample(folder: Path, info: VideoInfo, fps: float, track: _FaceTrack, audio: np.ndarray,
                  max_seconds: float | None, models_dir, progress: Progress) -> SampleSummary:
    """Pass 2 and every file of the folder (written into ``folder``, a temporary directory)."""
    shoulders, sides, reference_crop, reference_index = _crop_and_segment(info, fps, max_seconds, track.box,
                                                                          track.faces, track.found, folder,
                                                                          models_dir, progress)
    torso, torso_found, warnings = _torso_track(shoulders, sides, track)
    canonical, poses = track.canonical, track.poses
    num_frames = len(canonical)
    samples = int(round(num_frames * AUDIO_RATE / fps))
    name = info.path.stem
    crop_to_source = track.box.crop_to_source

    _motion_repr(track, torso, fps, name, {"source": info.path.name,
                                           "crop_to_source": json.dumps(crop_to_source.tolist())}
                 ).save(folder / "repr.safetensors")
    _subject(track, torso, reference_crop, (info.width, info.height), name,
             reference_index=reference_index).save(folder / "subject.safetensors")
    _write_audio(folder / "audio.wav", np.pad(audio[:samples], (0, max(0, samples - len(audio)))))
    np.savez(folder / "tracks.npz", landmarks=track.faces.astype(np.float32),
             landmarks_raw=track.raw.astype(np.float32), face_found=track.found, torso_found=torso_found,
             source_index=track.sources)
    summary = SampleSummary(
        path="", name=name, fps=float(fps), num_frames=num_frames, audio_samples=samples,
        source={"file": info.path.name, "width": info.width, "height": info.height, "fps": info.fps,
                "num_frames": info.num_frames, "duration": info.duration, "audio_duration": len(audio) / AUDIO_RATE},
        crop_to_source=crop_to_source.tolist(), frames_without_face=np.flatnonzero(~track.found).tolist(),
        frames_without_torso=np.flatnonzero(~torso_found).tolist(),
        reprojection_error_px=reprojection_error(canonical, poses, track.faces), warnings=warnings)
    fields = asdict(summary)
    del fields["path"]
    (folder / "sample.json").write_text(json.dumps(fields, indent=1))
    return summary


def prepare_video_sample(video: str | os.PathLike, out_dir: str | os.PathLike, fps: float = 30.0,
                         models_dir: str | os.PathLike | None = None, max_seconds: float | None = None,
                         overwrite: bool = False, progress: Progress | None = None) -> SampleSummary:
    """Preprocess a talking-head video into the sample folder ``out_dir`` (format in the module docstring).

    ``max_seconds`` keeps only the start of the clip. ``progress(stage, done, total)`` is called after every
    frame of the two passes (stages ``"landmarks"`` and ``"crop+torso"``). Raises :class:`PreprocessError`
    for a missing or undecodable file, a video without audio, a face in fewer than half of the frames, a too
    small face, or an existing ``out_dir`` without ``overwrite``.
    """
    out_dir = Path(out_dir)
    if not fps > 0:
        raise PreprocessError(f"fps must be positive, got {fps}")
    if out_dir.exists() and not overwrite:
        raise PreprocessError(f"output folder {out_dir} already exists; remove it or pass overwrite=True "
                              "(--overwrite)")
    if not out_dir.parent.is_dir():
        raise PreprocessError(f"cannot write {out_dir}: folder {out_dir.parent} does not exist")
    info = probe_video(video)
    if not info.has_audio:
        raise PreprocessError(f"{info.path} has no audio track; a training sample needs the speech. Use the "
                              "original clip with sound.")
    audio, _ = load_audio(info.path)
    progress = progress or _no_progress
    track = _analyse_faces(info, fps, max_seconds, models_dir, progress)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        summary = _write_sample(tmp, info, fps, track, audio, max_seconds, models_dir, progress)
        os.chmod(tmp, 0o777 & ~current_umask())          # mkdtemp made it 0700
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.path = str(out_dir)
    return summary
