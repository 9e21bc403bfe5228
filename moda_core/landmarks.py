"""Landmark index sets of MediaPipe's 478-point face mesh, in the authors' order.

The edge lists come from MediaPipe Tasks' ``FaceLandmarksConnections`` (mediapipe >= 1.x, Apache-2.0) and are
stored in ``assets/face_mesh_connections.json`` so drawing works without importing mediapipe; a test checks
the file still equals the installed mediapipe's constants.

"Left" is the subject's left, which appears on the right of the image.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

NUM_FACE_POINTS = 478
NUM_MESH_POINTS = 468          # points 0..467 are the face mesh, 468..477 the two irises
CANONICAL_ANCHOR_INDICES = (50, 280, 168)   # mean of these = canonicalisation anchor

_CONNECTIONS_FILE = Path(__file__).with_name("assets") / "face_mesh_connections.json"


@cache
def connection_groups() -> dict[str, np.ndarray]:
    """Edge lists per group (``tesselation``, ``lips``, ``left_eye``, ``face_oval``, ...), each int ``[E, 2]``."""
    raw = json.loads(_CONNECTIONS_FILE.read_text())["groups"]
    return {name: np.asarray(pairs, dtype=np.int64).reshape(-1, 2) for name, pairs in raw.items()}


def _endpoints(group: str) -> list[int]:
    return sorted(set(connection_groups()[group].reshape(-1).tolist()))


@cache
def _index_sets() -> dict[str, np.ndarray]:
    eye_groups = ("left_iris", "left_eye", "left_eyebrow", "right_iris", "right_eye", "right_eyebrow")
    mouth = np.asarray(_endpoints("lips"), dtype=np.int64)
    eyes = np.asarray([i for g in eye_groups for i in _endpoints(g)], dtype=np.int64)
    semantic = set(mouth.tolist()) | set(eyes.tolist())
    non_semantic = np.asarray([i for i in range(NUM_MESH_POINTS) if i not in semantic], dtype=np.int64)
    return {"mouth": mouth, "eyes": eyes, "non_semantic": non_semantic,
            "face_oval": np.asarray(_endpoints("face_oval"), dtype=np.int64),
            "left_eye": np.asarray(_endpoints("left_eye"), dtype=np.int64),
            "right_eye": np.asarray(_endpoints("right_eye"), dtype=np.int64)}


def mouth_indices() -> np.ndarray:
    """The 40 lip points (sorted endpoints of the lips contour), the order of R's ``mouth`` field."""
    return _index_sets()["mouth"].copy()


def eye_indices() -> np.ndarray:
    """The 60 eye points: left iris, left eye, left brow, right iris, right eye, right brow (each sorted)."""
    return _index_sets()["eyes"].copy()


def non_semantic_indices() -> np.ndarray:
    """The 376 points of 0..467 in neither the mouth nor the eye set (smoothed after FaCo)."""
    return _index_sets()["non_semantic"].copy()


def face_oval_indices() -> np.ndarray:
    return _index_sets()["face_oval"].copy()


def eye_contour_indices() -> tuple[np.ndarray, np.ndarray]:
    """(left eye 16, right eye 16), each sorted; position k of one side pairs with position k of the other."""
    sets = _index_sets()
    return sets["left_eye"].copy(), sets["right_eye"].copy()
