"""Curves of one R sample as CSV or JSON, to edit in any tool (spreadsheet, DCC, script) and apply back.

Columns: ``frame`` (0, 1, ...), ``time`` (seconds; informational, ignored on import), the head-pose axes
``yaw, pitch, roll`` (degrees), ``tx, ty, tz`` (px), ``scale``, and, when measurable (absolute R or a subject
given), ``eye_openness_left``, ``eye_openness_right`` (lid gap / eye width) and ``mouth_openness`` (canonical
px). Head-pose values are R's own: offsets when R holds offsets. Values are written in the shortest form that
reads back to the same float, so an unedited file round-trips exactly.

CSV: a header row, then one row per frame. JSON: ``{"format": "moda-curves", "version": 1, "fps": 30.0,
"is_offset": false, "frames": [{"frame": 0, "time": 0.0, "yaw": 1.5, ...}, ...]}``.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from moda_core.editing.eyes import eye_openness, set_eye_openness
from moda_core.editing.mouth import mouth_openness, set_mouth_openness
from moda_core.fileio import atomic_write
from moda_core.geometry import HEAD_POSE_AXES
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

EYE_COLUMNS = ("eye_openness_left", "eye_openness_right")
CURVE_COLUMNS = ("frame", "time", *HEAD_POSE_AXES, *EYE_COLUMNS, "mouth_openness")
CURVES_FORMAT = "moda-curves"
CURVES_VERSION = 1


def _check_sample(r: TalkingRepr, sample: int) -> int:
    if not -r.num_samples <= sample < r.num_samples:
        raise ValueError(f"sample {sample} out of range for R with {r.num_samples} samples")
    return sample % r.num_samples


def curves_table(r: TalkingRepr, subject: Subject | None = None, sample: int = 0) -> dict[str, np.ndarray]:
    """One sample's curves by column name (see the module docstring), each ``[T]`` in R's dtype."""
    sample = _check_sample(r, sample)
    frames = np.arange(r.num_frames)
    table = {"frame": frames, "time": frames / r.fps}
    pose = r.head_pose[sample].detach().cpu().numpy()
    table.update({axis: pose[:, i] for i, axis in enumerate(HEAD_POSE_AXES)})
    if not r.is_offset or subject is not None:
        one = r.select_samples(sample)
        eyes = eye_openness(one, subject)[0].detach().cpu().numpy()
        table.update({name: eyes[:, k] for k, name in enumerate(EYE_COLUMNS)})
        table["mouth_openness"] = mouth_openness(one, subject)[0].detach().cpu().numpy()
    return table


def _text(values: np.ndarray) -> list[str]:
    """Shortest decimal text that reads back to the same value in the array's dtype."""
    return [str(v) for v in values]


def save_curves(r: TalkingRepr, path: str | os.PathLike, subject: Subject | None = None, sample: int = 0) -> Path:
    """Write one sample's curves to ``.csv`` or ``.json`` (chosen by suffix), atomically."""
    path = Path(path)
    table = curves_table(r, subject, sample)
    table["time"] = np.round(table["time"], 6)
    columns = {name: _text(values) for name, values in table.items()}
    rows = [dict(zip(columns, cells)) for cells in zip(*columns.values())]
    if path.suffix == ".csv":
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(columns))
                writer.writeheader()
                writer.writerows(rows)
    elif path.suffix == ".json":
        document = {"format": CURVES_FORMAT, "version": CURVES_VERSION, "fps": r.fps, "is_offset": r.is_offset,
                    "frames": [{k: int(v) if k == "frame" else float(v) for k, v in row.items()} for row in rows]}

        def write(tmp: str) -> None:
            Path(tmp).write_text(json.dumps(document, indent=1))
    else:
        raise ValueError(f"unknown curves file type {path.suffix!r} for {path}: use .csv or .json")
    return atomic_write(path, write)


def _read_csv(path: Path) -> tuple[list[str], list[list[object]]]:
    with open(path, newline="") as handle:
        lines = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not lines:
        raise ValueError(f"{path}: empty curves file")
    header = [cell.strip() for cell in lines[0]]
    for number, row in enumerate(lines[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {number} has {len(row)} values, the header has {len(header)}")
    return header, [[cell.strip() for cell in row] for row in lines[1:]]


def _read_json(path: Path) -> tuple[list[str], list[list[object]]]:
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != CURVES_FORMAT:
        raise ValueError(f"{path}: not a moda curves file (expected an object with \"format\": \"{CURVES_FORMAT}\")")
    if document.get("version") != CURVES_VERSION:
        raise ValueError(f"{path}: curves version {document.get('version')!r}; this moda reads {CURVES_VERSION}")
    frames = document.get("frames")
    if not isinstance(frames, list) or not frames or not all(isinstance(row, dict) for row in frames):
        raise ValueError(f"{path}: \"frames\" must be a non-empty list of objects")
    header = list(frames[0])
    for number, row in enumerate(frames):
        if list(row) != header:
            raise ValueError(f"{path}: frames[{number}] has keys {list(row)}, frames[0] has {header}")
    return header, [list(row.values()) for row in frames]


def load_curves(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.csv`` / ``.json`` curves file, validating column names, lengths, frame numbers and values.

    Returns float64 arrays by column (``frame`` as int64); any subset of the known columns may be present,
    ``frame`` is required.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curves file not found: {path}")
    readers = {".csv": _read_csv, ".json": _read_json}
    if path.suffix not in readers:
        raise ValueError(f"unknown curves file type {path.suffix!r} for {path}: use .csv or .json")
    header, rows = readers[path.suffix](path)
    unknown = [name for name in header if name not in CURVE_COLUMNS]
    if unknown:
        raise ValueError(f"{path}: unknown column {unknown[0]!r}; known columns: {', '.join(CURVE_COLUMNS)}")
    if len(set(header)) != len(header) or "frame" not in header:
        raise ValueError(f"{path}: columns must be unique and include 'frame', got {header}")
    if not rows:
        raise ValueError(f"{path}: no frames")
    table = {}
    for k, name in enumerate(header):
        values = []
        for number, row in enumerate(rows):
            cell = row[k]
            try:
                value = float(cell) if not isinstance(cell, bool) else math.nan
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{path}: column {name!r}, frame row {number}: {cell!r} is not a finite number")
            values.append(value)
        table[name] = np.asarray(values, dtype=np.float64)
    if not np.array_equal(table["frame"], np.arange(len(rows))):
        bad = int(np.flatnonzero(table["frame"] != np.arange(len(rows)))[0])
        raise ValueError(f"{path}: frames must be numbered 0, 1, 2, ... in order; row {bad} has frame "
                         f"{table['frame'][bad]:g}")
    table["frame"] = table["frame"].astype(np.int64)
    return table


def apply_curves(r: TalkingRepr, curves: dict[str, np.ndarray], subject: Subject | None = None,
                 sample: int | None = None) -> TalkingRepr:
    """Set R's head pose, eye openness and mouth openness from curves (:func:`load_curves`); columns left
    out are left as they are. ``sample``: which sample to set (``None`` = every sample gets the curves).
    Eye and mouth columns move the lids / lips (see :func:`set_eye_openness`, :func:`set_mouth_openness`);
    they need ``subject`` on offset R."""
    length = len(curves["frame"])
    if length != r.num_frames:
        raise ValueError(f"curves have {length} frames but R has {r.num_frames}; trim or loop one to match")
    rows = torch.arange(r.num_samples) if sample is None else torch.tensor([_check_sample(r, sample)])

    def column(name: str) -> torch.Tensor:
        return torch.as_tensor(curves[name]).to(dtype=r.dtype, device=r.device)

    pose = r.head_pose.clone()
    for i, axis in enumerate(HEAD_POSE_AXES):
        if axis in curves:
            pose[rows, :, i] = column(axis)
    r = r.replace(head_pose=pose)
    if any(name in curves for name in EYE_COLUMNS):
        current = eye_openness(r, subject)
        target = current.clone()
        for k, name in enumerate(EYE_COLUMNS):
            if name in curves:
                target[rows, :, k] = column(name)
        if not torch.equal(target, current):
            r = set_eye_openness(r, target, subject)
    if "mouth_openness" in curves:
        current = mouth_openness(r, subject)
        target = current.clone()
        target[rows] = column("mouth_openness")
        if not torch.equal(target, current):
            r = set_mouth_openness(r, target, subject)
    return r
