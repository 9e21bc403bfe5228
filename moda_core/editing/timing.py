"""Time edits of R: trim, time shift and looping to a length (``repeat`` / concatenation live on R itself)."""
from __future__ import annotations

from typing import Sequence

import torch

from moda_core.editing.keyframes import _check_unit, check_number, parse_names
from moda_core.repr import TRACK_SHAPES, TalkingRepr


def _to_frames(value: float, unit: str, fps: float, param: str) -> float:
    _check_unit(unit)
    number = check_number(param, value)
    return number * fps if unit == "s" else number


def trim(r: TalkingRepr, start: float = 0.0, end: float = 0.0, *, unit: str = "s") -> TalkingRepr:
    """Keep ``[start, end)``. ``end`` 0 keeps to the end; a negative ``end`` counts back from the end.

    ``unit``: ``s`` (seconds, rounded to the nearest frame) or ``f`` (frames).
    """
    first = round(_to_frames(start, unit, r.fps, "start"))
    stop = round(_to_frames(end, unit, r.fps, "end"))
    if first < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    stop = r.num_frames if stop == 0 else stop if stop > 0 else r.num_frames + stop
    if not first < min(stop, r.num_frames):
        raise ValueError(f"trim start={start} end={end} ({unit}) leaves no frames of R's {r.num_frames} "
                         f"({r.duration:.3f} s)")
    return r.slice_time(first, stop)


def time_shift(r: TalkingRepr, frames: int, tracks: str | Sequence[str] = "all") -> TalkingRepr:
    """Shift motion in time by whole frames, keeping the length: positive delays it (the first frame is
    repeated at the start), negative advances it (the last frame is repeated at the end).

    ``tracks``: which of ``mouth, eyes, face, head_pose, torso`` to shift (``all`` by default), e.g. shift
    only ``head_pose`` against the lips.
    """
    shift = int(check_number("frames", frames))
    if shift != frames:
        raise ValueError(f"frames must be a whole number, got {frames}")
    names = [n for n in parse_names(tracks, tuple(TRACK_SHAPES), param="tracks") if getattr(r, n) is not None]
    index = torch.arange(r.num_frames).sub(shift).clamp(0, r.num_frames - 1).to(r.device)
    return r.replace(**{n: getattr(r, n).index_select(1, index) for n in names})


def loop(r: TalkingRepr, length: float, *, unit: str = "s", crossfade: float = 0.0) -> TalkingRepr:
    """Repeat R until it lasts ``length`` (then cut), blending ``crossfade`` across each seam.

    ``unit`` (``s`` seconds or ``f`` frames) applies to ``length`` and ``crossfade``. The first pass plays R
    unchanged; each later pass starts with the last ``crossfade`` of R faded into its first ``crossfade``, so
    the motion continues without a jump. ``crossfade`` must be at most half of R. Shorter ``length`` trims.
    """
    total = round(_to_frames(length, unit, r.fps, "length"))
    fade = round(_to_frames(crossfade, unit, r.fps, "crossfade"))
    if total < 1:
        raise ValueError(f"length must be at least one frame, got {length} {unit}")
    if not 0 <= fade <= r.num_frames // 2:
        raise ValueError(f"crossfade must be 0 to half of R ({r.num_frames // 2} frames), got {fade} frames")
    if total <= r.num_frames:
        return r.slice_time(0, total)
    period = r.num_frames - fade
    t = torch.arange(total)
    phase = torch.where(t < period, t, (t - period) % period)           # position within a pass
    later = (t >= period) & (phase < fade)                              # fade-in region of later passes
    weight = torch.where(later, (phase + 1).double() / (fade + 1), torch.ones(total, dtype=torch.float64))
    tail = torch.where(later, phase + period, phase)                    # end of R blended into each seam

    def loop_track(value: torch.Tensor) -> torch.Tensor:
        w = weight.to(value).reshape(1, -1, *([1] * (value.ndim - 2)))
        head, end = value.index_select(1, phase.to(value.device)), value.index_select(1, tail.to(value.device))
        return torch.where(w == 1, head, end + w * (head - end))

    return r.replace(**{n: loop_track(v) for n, v in r.tracks().items()})
