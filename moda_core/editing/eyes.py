"""Eye edits: openness measure, blink detection, adding/removing blinks, openness gain and gaze offset.

Openness of an eye = (lower-lid y - upper-lid y) at the lid centres (MediaPipe 374/386 left, 145/159 right)
over the eye width (corner to corner, 362-263 left, 33-133 right), in canonical space (y down): about 0.25
for an open eye, 0 when closed. Eyes are ordered (subject-left, subject-right), as in R's ``eyes`` field.

A blink moves the upper-lid points straight down (x kept) toward their partner lower-lid points; brows stay.
Measuring needs absolute points: on offset R pass the ``subject`` (its template). Edits of eye points also
move the same points of ``R.face`` when it is present (better: edit before FaCo-Net composes the face).
"""
from __future__ import annotations

from functools import cache

import numpy as np
import torch
from scipy.interpolate import interp1d
from scipy.ndimage import find_objects, label, maximum_filter1d

from moda_core.editing.keyframes import check_number, parse_times
from moda_core.landmarks import connection_groups, eye_indices, mouth_indices
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

# MediaPipe lid contours, upper point k above lower point k (outer corner side first), and the eye corners.
UPPER_LIDS = ((466, 388, 387, 386, 385, 384, 398), (246, 161, 160, 159, 158, 157, 173))
LOWER_LIDS = ((249, 390, 373, 374, 380, 381, 382), (7, 163, 144, 145, 153, 154, 155))
EYE_CORNERS = ((362, 263), (33, 133))
LID_CENTRE = 3                                    # 386/374 and 159/145 in the lists above
IRIS_POINTS = ((474, 475, 476, 477), (469, 470, 471, 472))
FACE_IRIS = slice(468, 478)                       # both irises in the 478-point face, centres included


def _positions(mesh_ids) -> torch.Tensor:
    """Positions inside R's 60-point eye set of MediaPipe point ids (any nesting)."""
    lookup = {int(i): p for p, i in enumerate(eye_indices())}
    return torch.tensor(np.vectorize(lookup.__getitem__)(np.asarray(mesh_ids)), dtype=torch.long)


@cache
def _lid_positions() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _positions(UPPER_LIDS), _positions(LOWER_LIDS), _positions(EYE_CORNERS)


@cache
def _eye_and_iris_positions() -> torch.Tensor:
    groups = connection_groups()
    ids = np.unique(np.concatenate([groups[g].reshape(-1) for g in ("left_eye", "right_eye",
                                                                    "left_iris", "right_iris")]))
    return _positions(ids)


def absolute_points(r: TalkingRepr, track: str, subject: Subject | None, purpose: str) -> torch.Tensor:
    """R's ``mouth`` or ``eyes`` track in absolute canonical px (adds the subject template to offsets)."""
    values = getattr(r, track)
    if not r.is_offset:
        return values
    if subject is None:
        raise ValueError(f"R holds offsets: {purpose} needs the subject (its template) to get absolute points")
    return values + subject.track_means()[track].to(values)


def add_point_delta(r: TalkingRepr, track: str, delta: torch.Tensor) -> TalkingRepr:
    """Add ``delta`` to the ``mouth`` or ``eyes`` track, and to the same points of ``face`` when present."""
    changes = {track: getattr(r, track) + delta}
    if r.face is not None:
        index = torch.from_numpy(eye_indices() if track == "eyes" else mouth_indices()).to(r.face.device)
        changes["face"] = r.face.index_add(2, index, delta.to(r.face))
    return r.replace(**changes)


def _lid_geometry(r: TalkingRepr, subject: Subject | None, purpose: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Lid gaps ``[S, T, 2, 7]`` (lower y - upper y, px) and eye widths ``[S, T, 2]`` (px)."""
    eyes = absolute_points(r, "eyes", subject, purpose)
    upper, lower, corners = _lid_positions()
    gap = eyes[..., lower, 1] - eyes[..., upper, 1]
    width = (eyes[..., corners[:, 0], :2] - eyes[..., corners[:, 1], :2]).norm(dim=-1)
    return gap, width


def eye_openness(r: TalkingRepr, subject: Subject | None = None) -> torch.Tensor:
    """Openness per eye ``[S, T, 2]`` (left, right): lid-centre gap over eye width (~0.25 open, 0 closed)."""
    gap, width = _lid_geometry(r, subject, "eye openness")
    return gap[..., LID_CENTRE] / width


def openness_series(r: TalkingRepr, subject: Subject | None = None) -> np.ndarray:
    """Mean openness of both eyes ``[S, T]`` (float64 numpy)."""
    return eye_openness(r, subject).mean(dim=-1).detach().cpu().double().numpy()


def closed_runs(closed: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` spans (stop exclusive) of the True runs of a ``[T]`` mask."""
    return [(span.start, span.stop) for (span,) in find_objects(label(closed)[0])]


def _blink_signal(r: TalkingRepr, subject: Subject | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean openness of both eyes ``[S, T]`` and each sample's open level (its median) ``[S, 1]``."""
    signal = openness_series(r, subject)
    return signal, np.median(signal, axis=1, keepdims=True)


def detect_blinks(r: TalkingRepr, subject: Subject | None = None,
                  threshold: float = 0.5) -> list[list[tuple[int, int]]]:
    """Blinks per sample as ``(start, stop)`` frame spans (stop exclusive): runs of frames where the mean
    openness of both eyes is below ``threshold`` times the sample's open level (its median openness)."""
    threshold = check_number("threshold", threshold, 0.0, 1.0)
    signal, open_level = _blink_signal(r, subject)
    closed = signal < threshold * open_level
    return [closed_runs(row) for row in closed]


def blink_rate(r: TalkingRepr, subject: Subject | None = None, threshold: float = 0.5) -> list[float]:
    """Blinks per minute, per sample (see :func:`detect_blinks`)."""
    return [len(spans) * 60.0 / r.duration for spans in detect_blinks(r, subject, threshold)]


def blink_closure(num_frames: int, fps: float, closed_at: np.ndarray, close_ms: float = 90.0,
                  hold_ms: float = 40.0, open_ms: float = 180.0) -> np.ndarray:
    """Lid closure per frame ``[num_frames]`` (0 open .. 1 shut) for blinks fully shut at frame positions
    ``closed_at``: a cosine close over ``close_ms``, a hold of ``hold_ms`` and a cosine open over ``open_ms``."""
    close_ms = check_number("close_ms", close_ms, 1.0)
    hold_ms = check_number("hold_ms", hold_ms, 0.0)
    open_ms = check_number("open_ms", open_ms, 1.0)
    closed_at = np.asarray(closed_at, dtype=np.float64).reshape(-1, 1)
    if closed_at.size == 0:
        return np.zeros(num_frames)
    ms = (np.arange(num_frames) - closed_at) * 1000.0 / fps                 # [B, T] time from full closure
    closing = 0.5 - 0.5 * np.cos(np.pi * np.clip(ms / close_ms + 1.0, 0.0, 1.0))
    opening = 0.5 + 0.5 * np.cos(np.pi * np.clip((ms - hold_ms) / open_ms, 0.0, 1.0))
    return np.where(ms < 0, closing, opening).max(axis=0)


def _close_lids(r: TalkingRepr, closure: torch.Tensor, subject: Subject | None) -> TalkingRepr:
    """Move upper lids toward lower lids by ``closure`` ``[S, T]`` (fraction of each gap, both eyes)."""
    gap, _ = _lid_geometry(r, subject, "blinking")
    upper, _, _ = _lid_positions()
    delta = torch.zeros_like(r.eyes)
    delta[..., upper, 1] = gap * closure.to(gap)[..., None, None]
    return add_point_delta(r, "eyes", delta)


def add_blinks(r: TalkingRepr, per_minute: float, *, seed: int = 0, subject: Subject | None = None,
               depth: float = 1.0, close_ms: float = 90.0, hold_ms: float = 40.0, open_ms: float = 180.0,
               threshold: float = 0.5) -> TalkingRepr:
    """Add blinks until each sample blinks ``per_minute`` times a minute (existing blinks count; none are
    removed), at random times (``seed``) that keep clear of existing blinks and of each other.

    ``depth``: 1 shuts the eyes fully, 0.5 half way. Blink shape: close ``close_ms``, hold ``hold_ms``, open
    ``open_ms`` (defaults ~310 ms in all). ``threshold`` is the detection threshold for existing blinks.
    Blinks that do not fit (too high a rate for the length) are left out.
    """
    rate = check_number("per_minute", per_minute, 0.0)
    depth = check_number("depth", depth, 0.0, 1.0)
    existing = detect_blinks(r, subject, threshold)
    wanted = round(rate * r.duration / 60.0)
    before = int(np.ceil(check_number("close_ms", close_ms, 1.0) * r.fps / 1000.0))
    after = int(np.ceil((check_number("hold_ms", hold_ms, 0.0) + check_number("open_ms", open_ms, 1.0))
                        * r.fps / 1000.0))
    spacing = r.duration / max(wanted, 1)                                     # mean seconds between blinks
    margin = round(np.clip(0.5 * spacing - (before + after) / r.fps, 0.1, 1.0) * r.fps)
    reach = max(before, after) + margin
    rng = np.random.default_rng(seed)
    closure = np.zeros((r.num_samples, r.num_frames))
    for s, spans in enumerate(existing):
        busy = np.zeros(r.num_frames, dtype=bool)
        for start, stop in spans:
            busy[start:stop] = True
        centres = []
        for _ in range(wanted - len(spans)):
            free = ~maximum_filter1d(busy, 2 * reach + 1, mode="constant", cval=False)
            free[:before] = free[max(r.num_frames - after, 0):] = False
            candidates = np.flatnonzero(free)
            if candidates.size == 0:
                break
            centre = int(rng.choice(candidates))
            busy[centre - before:centre + after + 1] = True
            centres.append(centre)
        closure[s] = blink_closure(r.num_frames, r.fps, np.asarray(centres), close_ms, hold_ms, open_ms)
    return _close_lids(r, torch.from_numpy(closure * depth), subject)


def add_blinks_at(r: TalkingRepr, times: str, *, subject: Subject | None = None, depth: float = 1.0,
                  close_ms: float = 90.0, hold_ms: float = 40.0, open_ms: float = 180.0,
                  unit: str = "s") -> TalkingRepr:
    """Blink (every sample) with the eyes fully shut at the given times, e.g. ``"1.2s, 3.5s, 150f"``."""
    depth = check_number("depth", depth, 0.0, 1.0)
    frames = parse_times(times, r.fps, r.num_frames, param="times", unit=unit)
    closure = blink_closure(r.num_frames, r.fps, frames, close_ms, hold_ms, open_ms) * depth
    return _close_lids(r, torch.from_numpy(closure).expand(r.num_samples, -1), subject)


def remove_blinks(r: TalkingRepr, subject: Subject | None = None, threshold: float = 0.5,
                  release: float = 0.9) -> TalkingRepr:
    """Replace each blink by the open eye: eye-contour and iris points are linearly interpolated across the
    blink (brows untouched). A blink is detected as in :func:`detect_blinks` and widened to the frames whose
    openness is below ``release`` times the open level."""
    threshold = check_number("threshold", threshold, 0.0, 1.0)
    release = check_number("release", release, threshold, 1.0)
    signal, open_level = _blink_signal(r, subject)
    points = _eye_and_iris_positions()
    eyes = r.eyes[:, :, points].detach().cpu().double().numpy()
    delta = np.zeros_like(eyes)
    t = np.arange(r.num_frames)
    for s in range(r.num_samples):
        spans, _ = label(signal[s] < release * open_level[s])
        blink_ids = np.unique(spans[signal[s] < threshold * open_level[s]])
        inside = np.isin(spans, blink_ids) & (spans > 0)
        if not inside.any() or (~inside).sum() < 2:
            continue
        known = eyes[s][~inside]
        fill = interp1d(t[~inside], known, axis=0, bounds_error=False, fill_value=(known[0], known[-1]))
        delta[s][inside] = fill(t[inside]) - eyes[s][inside]
    full = torch.zeros_like(r.eyes)
    full[:, :, points] = torch.from_numpy(delta).to(full)
    return add_point_delta(r, "eyes", full)


def set_eye_openness(r: TalkingRepr, openness: torch.Tensor, subject: Subject | None = None) -> TalkingRepr:
    """Move the upper lids so each eye has the given openness ``[S, T, 2]`` (or ``[T, 2]``; >= 0).

    The lids keep their shape where the eye is open; from a closed eye they open into the sample's typical
    (median) lid shape. Opening beyond a frame's lid points is the same shape scaled.
    """
    gap, width = _lid_geometry(r, subject, "setting eye openness")
    target = torch.as_tensor(openness).to(gap).clamp_min(0).expand_as(width)
    if not torch.isfinite(target).all():
        raise ValueError("eye openness targets contain NaN or infinite values")
    normalised = gap / width[..., None]
    typical = normalised.median(dim=1).values                               # [S, 2, 7]
    centre = typical[..., LID_CENTRE:LID_CENTRE + 1]
    if (centre <= 1e-6).any():
        raise ValueError("the eyes are closed in most frames; cannot tell their open lid shape")
    profile = (typical / centre)[:, None]                                   # [S, 1, 2, 7], 1 at the centre
    current = gap[..., LID_CENTRE] / width
    new_gap = gap + ((target - current) * width)[..., None] * profile
    upper, _, _ = _lid_positions()
    delta = torch.zeros_like(r.eyes)
    delta[..., upper, 1] = gap - new_gap
    return add_point_delta(r, "eyes", delta)


def scale_eye_openness(r: TalkingRepr, gain: float = 1.0, blink_depth: float = 1.0,
                       subject: Subject | None = None) -> TalkingRepr:
    """Scale eye openness: ``gain`` around closed (1.2 = eyes 20 % wider, 0.8 narrower) and ``blink_depth``
    around the open level (the sample's median: 0 = no blinks, 0.5 = half-depth blinks, 1 = unchanged)."""
    gain = check_number("gain", gain, 0.0)
    blink_depth = check_number("blink_depth", blink_depth, 0.0)
    if gain == 1.0 and blink_depth == 1.0:
        return r
    current = eye_openness(r, subject)
    open_level = current.median(dim=1, keepdim=True).values
    return set_eye_openness(r, gain * (open_level + blink_depth * (current - open_level)), subject)


def shift_gaze(r: TalkingRepr, dx: float = 0.0, dy: float = 0.0) -> TalkingRepr:
    """Move both irises by ``(dx, dy)`` canonical px (x right, y down; the eyes are 120 px apart)."""
    shift = torch.tensor([check_number("dx", dx), check_number("dy", dy), 0.0], dtype=r.dtype, device=r.device)
    iris = _positions(IRIS_POINTS).reshape(-1).to(r.device)
    eyes = r.eyes.clone()
    eyes[:, :, iris] += shift
    changes = {"eyes": eyes}
    if r.face is not None:
        face = r.face.clone()
        face[:, :, FACE_IRIS] += shift
        changes["face"] = face
    return r.replace(**changes)
