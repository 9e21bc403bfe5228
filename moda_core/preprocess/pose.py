"""Head pose ``[yaw, pitch, roll, tx, ty, tz, scale]`` and canonical faces from 478 landmarks.

Input points are in **image space** (:mod:`moda_core.geometry`): pixels, x right, y down, z toward the
camera, i.e. MediaPipe's ``(x*W, y*H, -z*W)``.

Rotation: a weighted least-squares rigid fit (Kabsch) of the frame's points to MediaPipe's frontal face
model, over the 33 rigid points and weights MediaPipe uses for its own Procrustes fit
(:mod:`moda_core.preprocess.face_geometry`). The fit is orthographic, like our projection, so the pose does
not depend on where the face sits in the frame (MediaPipe's ``facial_transformation_matrixes`` come from a
perspective camera model and shift pitch by several degrees when the face is off-centre). On the authors'
subject (Cathy) this frontal frame agrees with their 3DDFA-based canonical template within 1.5 degrees.

``R`` is the rotation that frontalises the face, ``canonical = s R (p - t) + face_center``; its Euler angles
follow :func:`moda_core.geometry.euler_to_matrix`. Seen on screen:

* yaw > 0: the face turns toward image-left (the subject's right); the nose tip moves left.
* pitch > 0: the face tilts down (looks down); the nose tip moves down.
* roll > 0: the face rotates counter-clockwise on screen (the image-right eye goes up).
"""
from __future__ import annotations

import numpy as np
import torch

from moda_core.geometry import (CANONICAL_EYE_DISTANCE, CANONICALISATION_FACE_CENTER, canonical_to_image,
                                canonicalisation_scale, euler_to_matrix, image_to_canonical, matrix_to_euler)
from moda_core.landmarks import CANONICAL_ANCHOR_INDICES, eye_contour_indices
from moda_core.preprocess.errors import PreprocessError
from moda_core.preprocess.face_geometry import FrontalReference

MIN_EYE_DISTANCE = 20.0          # frontal inter-ocular px; below this the landmarks are unreliable


def to_image_space(mediapipe_px: np.ndarray) -> np.ndarray:
    """MediaPipe pixels ``(x*W, y*H, z*W)`` ``[..., 478, 3]`` -> image space (z negated, toward the camera)."""
    return mediapipe_px * np.array([1.0, 1.0, -1.0])


def frontal_rotation(points: np.ndarray, reference: FrontalReference) -> np.ndarray:
    """Rotations ``[..., 3, 3]`` taking image-space faces ``[..., 478, 3]`` to the frontal orientation."""
    weights = reference.weights / reference.weights.sum()
    observed = points[..., reference.indices, :]
    model = reference.points[reference.indices]
    observed = observed - np.einsum("k,...kd->...d", weights, observed)[..., None, :]
    model = model - weights @ model
    covariance = np.einsum("k,...ki,kj->...ij", weights, observed, model)      # sum w p f^T
    u, _, vt = np.linalg.svd(covariance)
    v = np.swapaxes(vt, -1, -2)
    reflection = np.sign(np.linalg.det(v @ np.swapaxes(u, -1, -2)))
    correction = np.broadcast_to(np.eye(3), v.shape).copy()
    correction[..., 2, 2] = reflection
    return v @ correction @ np.swapaxes(u, -1, -2)


def head_pose(points: np.ndarray, reference: FrontalReference) -> np.ndarray:
    """Image-space faces ``[..., 478, 3]`` -> head poses ``[..., 7]`` (float64; see module docstring)."""
    angles = matrix_to_euler(torch.from_numpy(frontal_rotation(points, reference)))
    rotation = euler_to_matrix(angles)                  # exactly the matrix image_to_canonical will use
    p = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float64))
    anchor = p[..., list(CANONICAL_ANCHOR_INDICES), :].mean(-2)
    rotated = (p - anchor[..., None, :]) @ rotation.transpose(-1, -2)
    left, right = (torch.from_numpy(i) for i in eye_contour_indices())
    scale = canonicalisation_scale(rotated[..., left, 0], rotated[..., right, 0])
    return torch.cat([angles, anchor, scale[..., None]], -1).numpy()


def canonicalise(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Image-space points ``[..., N, 3]`` + poses ``[..., 7]`` -> canonical px (face centre (256, 232, 128))."""
    return image_to_canonical(torch.from_numpy(np.asarray(points, dtype=np.float64)),
                              torch.from_numpy(np.asarray(pose, dtype=np.float64)),
                              face_center=CANONICALISATION_FACE_CENTER).numpy()


def reprojection_error(canonical: np.ndarray, pose: np.ndarray, points: np.ndarray) -> float:
    """Mean xy distance (px) between ``canonical_to_image(canonical, pose)`` and the image-space ``points``."""
    back = canonical_to_image(torch.from_numpy(np.asarray(canonical, dtype=np.float64)),
                              torch.from_numpy(np.asarray(pose, dtype=np.float64)),
                              face_center=CANONICALISATION_FACE_CENTER).numpy()
    return float(np.linalg.norm(back[..., :2] - np.asarray(points)[..., :2], axis=-1).mean())


def eye_distance(pose: np.ndarray) -> np.ndarray:
    """Frontal inter-ocular distance (px of the analysed frame) from poses ``[..., 7]``: ``120 / scale``."""
    return CANONICAL_EYE_DISTANCE / pose[..., 6]


def require_face_size(pose: np.ndarray, label: str) -> float:
    """The face's inter-ocular px, or :class:`PreprocessError` if below :data:`MIN_EYE_DISTANCE`."""
    size = float(eye_distance(pose))
    if size < MIN_EYE_DISTANCE:
        raise PreprocessError(f"the face in {label} is too small ({size:.0f} px between the eyes, need "
                              f"{MIN_EYE_DISTANCE:.0f}): crop it closer around the head and shoulders")
    return size
