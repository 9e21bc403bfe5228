"""Training data read from prepared sample folders (:func:`moda_core.preprocess.prepare_video_sample`).

Each folder is split by time: the first ``1 - val_fraction`` of its frames train, the rest validate.

* :class:`MotionWindows` (MODA, FaCo-Net): windows of W frames with their audio and the ground-truth offsets
  the networks predict (moda-official-facts.md §3.5, §7.8): mouth and eyes minus the subject template, head
  pose minus the mean pose, torso minus the mean torso; ``face`` (FaCo-Net's target) is the dense face minus
  the template. Audio is the whole clip normalised once (like the authors), then cut per window.
* :class:`RenderFrames` (renderer): one frame per item, generator input (condition image drawn from the
  ground-truth R + reference image + TPE of the frame index), the real frame, and a mouth mask. For renderers
  with ``warped_reference`` the reference channels hold the warp renderer's frame for the ground-truth points.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np
import torch
from scipy.io import wavfile
from torch.utils.data import Dataset

from moda_core.drawing import DRAW_SIZE, draw_condition_images
from moda_core.geometry import CANONICALISATION_FACE_CENTER
from moda_core.landmarks import mouth_indices
from moda_core.models.audio_encoder import SAMPLE_RATE, normalise_waveform
from moda_core.pipeline import reference_at, reference_warp
from moda_core.projection import project_repr
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject
from moda_core.tpe import TPEConfig, temporal_positional_encoding

Part = Literal["train", "val"]
MOUTH_MARGIN = 22.0
"""px (512 crop) added around the lip points' box for the mouth mask: about the authors' 45x45 dilation."""


@dataclass(frozen=True)
class SampleData:
    """One prepared sample folder in memory: absolute R, subject, normalised audio, frame files."""

    path: Path
    subject: Subject
    repr: TalkingRepr            # absolute, one sample, at ``fps``
    audio: torch.Tensor          # whole clip, 16 kHz, normalised (zero mean, unit variance) [N]

    @property
    def fps(self) -> float:
        return self.repr.fps

    @property
    def num_frames(self) -> int:
        return self.repr.num_frames

    def frame_path(self, index: int) -> Path:
        return self.path / "frames" / f"{index:06d}.png"

    def offsets(self) -> dict[str, torch.Tensor]:
        """Ground-truth network targets ``[T, D]``: lip 120, eye 180, head 7, torso 54, face 1434."""
        r = self.repr.to_offsets(self.subject)
        tracks = {"lip": r.mouth, "eye": r.eyes, "head": r.head_pose, "torso": r.torso, "face": r.face}
        return {name: value[0].reshape(self.num_frames, -1).float() for name, value in tracks.items()}


def load_sample(folder: str | Path, fps: float | None = None) -> SampleData:
    """Read a sample folder; ``fps`` resamples R (linear in time, as the authors' loader) to that rate."""
    folder = Path(folder)
    info_file = folder / "sample.json"
    if not info_file.is_file():
        raise FileNotFoundError(f"{folder} is not a sample folder (no sample.json); make one with "
                                "`moda prepare video VIDEO --out FOLDER`")
    info = json.loads(info_file.read_text())
    if info.get("format") != "moda-sample":
        raise ValueError(f"{info_file} is not a moda sample description (format={info.get('format')!r})")
    r = TalkingRepr.load(folder / "repr.safetensors").select_samples(0)
    if r.face is None:
        raise ValueError(f"{folder}/repr.safetensors has no dense face track; re-run `moda prepare video`")
    rate, pcm = wavfile.read(folder / "audio.wav")
    if rate != SAMPLE_RATE:
        raise ValueError(f"{folder}/audio.wav is {rate} Hz; sample folders hold {SAMPLE_RATE} Hz audio")
    wave = torch.from_numpy(pcm.astype(np.float32) / (32768.0 if pcm.dtype == np.int16 else 1.0)).reshape(-1)
    if fps is not None and fps != r.fps:
        r = r.resample(fps)
    return SampleData(folder, Subject.load(folder / "subject.safetensors"), r, normalise_waveform(wave))


def neutral_frame(r, frames: range) -> int:
    """The most neutral frame of ``frames`` in an absolute R with a dense face: of the frames whose eyes are open
    (openness at least the median of ``frames``) and whose head rotation is near the usual one (yaw/pitch/roll
    distance to their median at most the median distance), the one with the smallest inner-lip gap (points 13 and
    14, canonical px); ties go to the smaller rotation distance."""
    from moda_core.metrics.motion import eye_openness_series

    if r.face is None or r.is_offset:
        raise ValueError("neutral_frame needs an absolute R with the dense face track (a prepared sample's R)")
    if len(frames) < 1 or frames.stop > r.num_frames:
        raise ValueError(f"frames {frames} are not inside the R's {r.num_frames} frames")
    index = np.asarray(frames)
    face = r.face[0, index].double().numpy()
    gap = np.linalg.norm(face[:, 13, :2] - face[:, 14, :2], axis=-1)
    eyes = eye_openness_series(r)[0, index]
    rotation = r.head_pose[0, index, :3].double().numpy()
    turn = np.linalg.norm(rotation - np.median(rotation, axis=0), axis=-1)
    usual = (eyes >= np.median(eyes)) & (turn <= np.median(turn))
    candidates = np.flatnonzero(usual) if usual.any() else np.arange(len(index))
    best = min(candidates, key=lambda k: (round(float(gap[k]), 3), float(turn[k])))
    return int(index[best])


def with_reference_frame(sample: SampleData, index: int) -> SampleData:
    """The sample with frame ``index`` as its subject's reference crop (image and tracked points); template, mean
    pose and mean torso stay the clip's means, so motion offsets are unchanged."""
    if not 0 <= index < sample.num_frames:
        raise ValueError(f"reference frame {index} is outside the sample's {sample.num_frames} frames")
    face, torso = project_repr(sample.repr.slice_time(index, index + 1), sample.subject,
                               face_center=CANONICALISATION_FACE_CENTER)
    subject = sample.subject.replace(reference_image=read_frame(sample, index, 512),
                                     reference_points=torch.cat([face[0], torso[0]])[:, :2])
    return replace(sample, subject=subject)


def load_samples(samples: Sequence[str | os.PathLike | SampleData], fps: float | None = None) -> list[SampleData]:
    """:func:`load_sample` of every folder in ``samples``; :class:`SampleData` items are kept as they are."""
    return [s if isinstance(s, SampleData) else load_sample(s, fps=fps) for s in samples]


def read_frame(sample: SampleData, index: int, size: int) -> torch.Tensor:
    """Frame ``index`` of the sample as uint8 RGB ``[size, size, 3]`` (area-resized from the 512 crop)."""
    path = sample.frame_path(index)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read frame {path}")
    if image.shape[0] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def split_range(num_frames: int, part: Part, val_fraction: float) -> range:
    """Frames of ``part``: train = the first ``round(T * (1 - val_fraction))``, val = the rest."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cut = round(num_frames * (1.0 - val_fraction))
    return range(0, cut) if part == "train" else range(cut, num_frames)


class MotionWindows(Dataset):
    """Windows of ``window`` frames for MODA / FaCo-Net training.

    Items: ``audio`` [round(W * 16000 / fps)] (normalised), ``subject`` [1434] (template), and the offsets
    ``lip`` [W, 120], ``eye`` [W, 180], ``head`` [W, 7], ``torso`` [W, 54], ``face`` [W, 1434].
    The window shrinks to the shortest part of any sample, so short clips still train. Windows
    start every ``hop`` frames (default W // 3, the authors' 200 of 600); in the train part each start moves
    forward by up to hop // 2 frames at random, as the authors' U[0, 100).
    """

    def __init__(self, samples: Sequence[SampleData], part: Part, window: int, *, hop: int | None = None,
                 val_fraction: float = 0.2):
        if not samples:
            raise ValueError("MotionWindows needs at least one sample")
        if len({s.fps for s in samples}) != 1:
            raise ValueError("all samples must have the same fps; pass fps= to load_sample")
        ranges = [split_range(s.num_frames, part, val_fraction) for s in samples]
        shortest = min(len(r) for r in ranges)
        if shortest < 2:
            raise ValueError(f"the {part} part of a sample has {shortest} frame(s); need at least 2 "
                             "(use longer clips or change val_fraction)")
        self.window = min(window, shortest)
        self.hop = max(1, hop if hop is not None else self.window // 3)
        self.jitter = part == "train"
        self.fps = samples[0].fps
        self.audio_length = round(self.window * SAMPLE_RATE / self.fps)
        self._samples = samples
        self._offsets = [s.offsets() for s in samples]
        self._windows: list[tuple[int, int, int]] = []       # (sample index, start frame, last possible start)
        for k, frames in enumerate(ranges):
            last = frames.stop - self.window
            starts = list(range(frames.start, last + 1, self.hop))
            if starts[-1] != last and not self.jitter:
                starts.append(last)                           # validation covers the end of the part
            self._windows += [(k, start, last) for start in starts]

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        k, start, last = self._windows[index]
        if self.jitter:
            start = min(start + int(torch.randint(0, self.hop // 2 + 1, ())), last)
        frames = slice(start, start + self.window)
        audio = self._samples[k].audio
        first = round(start * SAMPLE_RATE / self.fps)
        clip = audio[first:first + self.audio_length]
        clip = torch.nn.functional.pad(clip, (0, self.audio_length - clip.shape[0]))
        item = {name: track[frames] for name, track in self._offsets[k].items()}
        return {"audio": clip, "subject": self._samples[k].subject.style_vector(), **item}


def _signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in -1..1."""
    return images.movedim(-1, -3).float() / 127.5 - 1.0


class RenderFrames(Dataset):
    """Single frames for renderer training, conditions drawn from the ground-truth R.

    Items: ``input`` [3 + 3 + C_tpe, S, S] (condition, reference, TPE of the frame's index in the clip),
    ``target`` [3, S, S] in -1..1, ``mouth`` [1, S, S] mask (lip points' box + ``MOUTH_MARGIN``), ``index``.
    ``face_center`` is the one the sample was canonicalised with, so conditions line up with the frames.
    ``tpe_jitter`` > 0 adds a random offset in [0, tpe_jitter) frames to each item's TPE index: the renderer
    then learns to ignore time, so a renderer trained on a short clip does not break on frames past the
    clip's length (unseen TPE values) at inference.
    ``warped_reference``: the reference channels hold the subject's reference crop warped to the frame's
    ground-truth points (:func:`moda_core.pipeline.reference_warp`, still background from the selfie segmenter in ``models_dir``),
    as :func:`moda_core.pipeline.render_stream` feeds such renderers; items then also hold ``still_reference``.
    Conditions and targets are cached in memory (uint8) when they fit in ``preload_limit_mb``.
    """

    def __init__(self, sample: SampleData, part: Part, image_size: int, *, tpe: TPEConfig = TPEConfig(),
                 tpe_jitter: int = 0, val_fraction: float = 0.2,
                 face_center: Sequence[float] = CANONICALISATION_FACE_CENTER, preload_limit_mb: float = 2048.0,
                 warped_reference: bool = False, models_dir: str | os.PathLike | None = None):
        self.sample = sample
        self.frames = split_range(sample.num_frames, part, val_fraction)
        if len(self.frames) == 0:
            raise ValueError(f"the {part} part of {sample.path} is empty")
        self.image_size = image_size
        self.tpe = tpe
        self.tpe_jitter = tpe_jitter
        face, torso = project_repr(sample.repr, sample.subject, face_center=face_center)
        self._face_xy, self._torso_xy = face[:, :, :2].float(), torso[:, :, :2].float()
        lips = self._face_xy[:, torch.from_numpy(mouth_indices())]
        scale = image_size / DRAW_SIZE
        self._mouth_boxes = torch.cat([lips.amin(1) - MOUTH_MARGIN, lips.amax(1) + MOUTH_MARGIN], 1) * scale
        self._reference = reference_at(sample.subject, image_size).movedim(-1, 0) * 2.0 - 1.0
        self._warp = reference_warp(sample.subject, image_size, face_center, models_dir) if warped_reference else None
        self._cache: list[tuple[torch.Tensor, ...]] | None = None
        per_frame = 9 if warped_reference else 6
        if len(self.frames) * image_size ** 2 * per_frame / 2 ** 20 <= preload_limit_mb:
            self._cache = [self._load(i) for i in range(len(self.frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def _load(self, i: int) -> tuple[torch.Tensor, ...]:
        """(condition, target[, warped reference]) uint8 [S, S, 3] of the i-th frame of the part."""
        t = self.frames[i]
        condition = draw_condition_images(self._face_xy[t:t + 1], self._torso_xy[t:t + 1], size=self.image_size,
                                          style="authors", as_uint8=True)[0]
        target = read_frame(self.sample, t, self.image_size)
        if self._warp is None:
            return condition, target
        warped = self._warp.render_points(self._face_xy[t:t + 1].double().numpy(),
                                          self._torso_xy[t:t + 1].double().numpy())[0]
        return condition, target, torch.from_numpy(np.rint(warped * 255.0).astype(np.uint8))

    def mouth_mask(self, i: int) -> torch.Tensor:
        x0, y0, x1, y1 = self._mouth_boxes[self.frames[i]].tolist()
        grid = torch.arange(self.image_size, dtype=torch.float32) + 0.5
        rows = (grid >= y0) & (grid <= y1)
        cols = (grid >= x0) & (grid <= x1)
        return (rows[:, None] & cols[None, :]).float()[None]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        condition, target, *warped = self._cache[i] if self._cache is not None else self._load(i)
        t = self.frames[i]
        shift = int(torch.randint(0, self.tpe_jitter, ())) if self.tpe_jitter > 0 else 0
        planes = temporal_positional_encoding([t + shift], self.image_size, self.image_size, self.tpe)[0]
        reference = _signed(warped[0]) if warped else self._reference
        item = {"input": torch.cat([_signed(condition), reference, planes]), "target": _signed(target),
                "mouth": self.mouth_mask(i), "index": torch.tensor(t)}
        if warped:
            item["still_reference"] = self._reference
        return item

