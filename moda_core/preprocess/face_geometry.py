"""MediaPipe's frontal face model, read from the ``face_landmarker.task`` bundle.

The bundle's ``geometry_pipeline_metadata_landmarks.binarypb`` (a protobuf ``GeometryPipelineMetadata``)
holds the canonical face mesh (468 vertices, cm, x right, y up, z toward the viewer) and the weighted
landmark subset MediaPipe itself uses for its Procrustes fit (33 rigid points: nose, eye corners, cheeks).
We read both with a minimal protobuf wire-format decoder (no protobuf dependency) and convert the mesh to
our image axes (x right, y down, z toward the camera) by negating y.

Field numbers: metadata {1: canonical_mesh, 2: procrustes_landmark_basis (repeated), 3: input_source};
Mesh3d {1: vertex_type, 2: primitive_type, 3: vertex_buffer (float, 5 per vertex: x y z u v),
4: index_buffer}; WeightedLandmarkRef {1: landmark_id, 2: weight (float)}.
"""
from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterator

import numpy as np

from moda_core.preprocess.errors import PreprocessError

_METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
_FLOATS_PER_VERTEX = 5


@dataclass(frozen=True)
class FrontalReference:
    """``points`` ``[468, 3]`` frontal face (cm, our image axes); ``indices`` / ``weights`` ``[K]`` fit subset."""

    points: np.ndarray
    indices: np.ndarray
    weights: np.ndarray


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one protobuf message; value is int (varint) or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire_type = key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield key >> 3, value


def _floats(chunks: list[bytes]) -> np.ndarray:
    """Repeated float field, stored either as fixed32 entries or as one packed blob."""
    return np.frombuffer(b"".join(chunks), dtype="<f4").astype(np.float64)


@cache
def load_frontal_reference(task_path: Path) -> FrontalReference:
    """Parse the frontal face model out of a ``face_landmarker.task`` file (cached per path)."""
    try:
        with zipfile.ZipFile(task_path) as bundle:
            metadata = bundle.read(_METADATA_MEMBER)
        mesh, basis = b"", []
        for number, value in _fields(metadata):
            if number == 1:
                mesh = value
            elif number == 2:
                basis.append(dict(_fields(value)))
        vertices = _floats([v for n, v in _fields(mesh) if n == 3]).reshape(-1, _FLOATS_PER_VERTEX)[:, :3]
        indices = np.asarray([b.get(1, 0) for b in basis], dtype=np.int64)
        weights = np.asarray([struct.unpack("<f", b[2])[0] for b in basis], dtype=np.float64)
    except (zipfile.BadZipFile, KeyError, ValueError, IndexError, struct.error) as err:
        raise PreprocessError(f"{task_path} is not a MediaPipe face landmarker bundle with face geometry "
                              f"metadata ({err}); download face_landmarker.task again") from err
    if vertices.shape != (468, 3) or len(indices) < 3 or indices.max() >= 468:
        raise PreprocessError(f"{task_path}: unexpected face geometry metadata (mesh {vertices.shape}, "
                              f"{len(indices)} fit points)")
    return FrontalReference(points=vertices * np.array([1.0, -1.0, 1.0]), indices=indices, weights=weights)
