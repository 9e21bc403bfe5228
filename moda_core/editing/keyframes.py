"""Parsing of the small text specs the editors take, keyframe curves and ease-in/out envelopes.

Keyframe text: ``time: value`` pairs separated by commas, semicolons or new lines, e.g.
``"0s: 0, 1.5s: 10, 3s: -5"``. A time ends in ``s`` (seconds) or ``f`` (frames); a bare number uses the
``unit`` argument (seconds unless told). The same spec as JSON: ``[{"t": 1.5, "value": 10}, {"frame": 90,
"value": -5}]`` (``t`` in seconds, ``frame`` in frames). Times must lie inside the clip: 0 to its duration.

Every parsing error is a ``ValueError`` naming the parameter and the offending token.
"""
from __future__ import annotations

import json
import math
import re
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator

from moda_core.repr import TalkingRepr

INTERPOLATIONS = ("linear", "cubic")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TIME = re.compile(rf"^({_NUMBER})\s*([sf]?)$")
_SEPARATORS = re.compile(r"[,;\n]")


def check_number(param: str, value: float, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``param`` if it is NaN/infinite or out of range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{param} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{param} must be a finite number, got {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        low = "-inf" if minimum is None else f"{minimum:g}"
        high = "inf" if maximum is None else f"{maximum:g}"
        raise ValueError(f"{param} must be between {low} and {high}, got {number:g}")
    return number


def parse_names(spec: str | Sequence[str], choices: Sequence[str], *, param: str,
                aliases: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Names from ``"yaw, pitch"``, ``"all"`` or a sequence, checked against ``choices`` (order of ``choices``)."""
    aliases = dict(aliases or {})
    tokens = [t.strip().lower() for t in (spec.split(",") if isinstance(spec, str) else spec)]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise ValueError(f"{param} is empty; give one or more of {', '.join(choices)} or 'all'")
    if "all" in tokens:
        return tuple(choices)
    chosen = set()
    for token in tokens:
        name = aliases.get(token, token)
        if name not in choices:
            raise ValueError(f"{param}: unknown name {token!r}; expected one of {', '.join(choices)} or 'all'")
        chosen.add(name)
    return tuple(c for c in choices if c in chosen)


def _time_to_frame(token, fps: float, num_frames: int, param: str, unit: str) -> float:
    """A time token (``"1.5s"``, ``"45f"``, ``2``) -> frame position; checked to lie in ``[0, num_frames]``."""
    if isinstance(token, (int, float)) and not isinstance(token, bool):
        number, suffix = float(token), ""
    else:
        match = _TIME.match(str(token).strip().lower())
        if match is None:
            raise ValueError(f"{param}: malformed time {str(token)!r}; write seconds like '1.5s' or frames like '45f'")
        number, suffix = float(match.group(1)), match.group(2)
    if not math.isfinite(number):
        raise ValueError(f"{param}: time {token!r} is not a finite number")
    frame = number * fps if (suffix or unit) == "s" else number
    if not 0.0 <= frame <= num_frames:
        raise ValueError(f"{param}: time {str(token)!r} is outside the clip (0 to {num_frames / fps:.3f} s, "
                         f"frames 0 to {num_frames})")
    return frame


def _check_unit(unit: str) -> str:
    if unit not in ("s", "f"):
        raise ValueError(f"unit must be 's' (seconds) or 'f' (frames), got {unit!r}")
    return unit


def parse_times(spec: str | Sequence[float], fps: float, num_frames: int, *, param: str = "times",
                unit: str = "s") -> np.ndarray:
    """Times like ``"1.2s, 3.4s, 90f"`` (or a sequence of numbers in ``unit``) -> sorted frame positions."""
    _check_unit(unit)
    tokens = [t.strip() for t in _SEPARATORS.split(spec)] if isinstance(spec, str) else list(spec)
    tokens = [t for t in tokens if not (isinstance(t, str) and not t)]
    return np.sort(np.asarray([_time_to_frame(t, fps, num_frames, param, unit) for t in tokens], dtype=np.float64))


def _keyframes_from_json(spec: str, param: str) -> list[tuple[object, str, float]]:
    try:
        rows = json.loads(spec)
    except json.JSONDecodeError as err:
        raise ValueError(f"{param}: malformed JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{param}: JSON keyframes must be a list of {{\"t\" or \"frame\", \"value\"}} objects")
    entries = []
    for row in rows:
        if not isinstance(row, dict) or "value" not in row or len({"t", "frame"} & set(row)) != 1:
            raise ValueError(f"{param}: JSON keyframe {json.dumps(row)} needs \"value\" and one of \"t\" "
                             "(seconds) or \"frame\"")
        unknown = set(row) - {"t", "frame", "value"}
        if unknown:
            raise ValueError(f"{param}: JSON keyframe {json.dumps(row)} has unknown keys {sorted(unknown)}")
        time = row["t"] if "t" in row else row["frame"]
        entries.append((time, "s" if "t" in row else "f", row["value"]))
    return entries


def _keyframes_from_text(spec: str, param: str, unit: str) -> list[tuple[object, str, object]]:
    entries = []
    for entry in (e.strip() for e in _SEPARATORS.split(spec)):
        if not entry:
            continue
        if entry.count(":") != 1:
            raise ValueError(f"{param}: malformed keyframe {entry!r}; write 'time: value' like '1.5s: 10'")
        time, value = (part.strip() for part in entry.split(":"))
        entries.append((time, unit, value))
    return entries


def parse_keyframes(spec: str | Sequence[Mapping], fps: float, num_frames: int, *, param: str = "keyframes",
                    unit: str = "s") -> tuple[np.ndarray, np.ndarray]:
    """Keyframe text or JSON (see the module docstring) -> (frame positions, values), sorted by time."""
    _check_unit(unit)
    if isinstance(spec, str):
        entries = (_keyframes_from_json(spec, param) if spec.strip().startswith("[")
                   else _keyframes_from_text(spec, param, unit))
    else:
        entries = _keyframes_from_json(json.dumps(list(spec)), param)
    if not entries:
        raise ValueError(f"{param} is empty; write 'time: value' pairs like '0s: 0, 1.5s: 10'")
    frames, values = [], []
    for time, time_unit, value in entries:
        frames.append(_time_to_frame(time, fps, num_frames, param, time_unit))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{param}: malformed value {value!r} at time {time!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{param}: value {value!r} at time {time!r} is not a finite number")
        values.append(number)
    frames, values = np.asarray(frames), np.asarray(values)
    order = np.argsort(frames, kind="stable")
    frames, values = frames[order], values[order]
    repeated = frames[1:][np.diff(frames) == 0]
    if repeated.size:
        raise ValueError(f"{param}: two keyframes at frame {repeated[0]:g}")
    return frames, values


def keyframe_curve(spec: str | Sequence[Mapping], fps: float, num_frames: int, *, interpolation: str = "linear",
                   param: str = "keyframes", unit: str = "s") -> np.ndarray:
    """Value per frame ``[num_frames]`` (float64) through the keyframes; held before the first / after the last.

    ``interpolation``: ``linear``, or ``cubic`` (monotone PCHIP: smooth and never overshoots the keyed values).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    frames, values = parse_keyframes(spec, fps, num_frames, param=param, unit=unit)
    t = np.arange(num_frames, dtype=np.float64)
    if interpolation == "linear" or len(frames) < 2:
        return np.interp(t, frames, values)
    return PchipInterpolator(frames, values)(np.clip(t, frames[0], frames[-1]))


def ease_weights(num_frames: int, ease_in_frames: float = 0, ease_out_frames: float = 0) -> torch.Tensor:
    """Edit strength per frame ``[num_frames]`` (float64): smoothstep 0->1 over the first ``ease_in_frames``
    and 1->0 over the last ``ease_out_frames`` (frame 0 / the last frame get 0 when easing); 1 elsewhere."""
    ease_in = check_number("ease_in_frames", ease_in_frames, 0)
    ease_out = check_number("ease_out_frames", ease_out_frames, 0)
    t = np.arange(num_frames, dtype=np.float64)
    ramp_in = np.clip(t / ease_in, 0, 1) if ease_in > 0 else np.ones(num_frames)
    ramp_out = np.clip((num_frames - 1 - t) / ease_out, 0, 1) if ease_out > 0 else np.ones(num_frames)
    ramp = np.minimum(ramp_in, ramp_out)
    return torch.from_numpy(ramp * ramp * (3 - 2 * ramp))


def ease_edit(original: TalkingRepr, edited: TalkingRepr, ease_in_frames: float = 0,
              ease_out_frames: float = 0) -> TalkingRepr:
    """Fade an edit in over the first and out over the last frames: ``original + w(t) * (edited - original)``.

    Both R must have the same shapes (an edit that does not change the timing); tracks equal in both stay as
    they are.
    """
    if (original.num_samples, original.num_frames) != (edited.num_samples, edited.num_frames):
        raise ValueError("ease_edit needs the original and edited R to have the same samples and frames")
    if ease_in_frames == 0 and ease_out_frames == 0:
        return edited
    weights = ease_weights(original.num_frames, ease_in_frames, ease_out_frames)
    changes = {}
    for name, after in edited.tracks().items():
        before = getattr(original, name)
        if before is None or torch.equal(before, after):
            continue
        w = weights.to(after).reshape(1, -1, *([1] * (after.ndim - 2)))
        changes[name] = before + w * (after - before)
    return edited.replace(**changes)
