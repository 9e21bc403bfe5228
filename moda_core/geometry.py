"""Head-pose geometry in the authors' conventions (moda-official-facts.md §2.7, §2.8, §7.4).

Spaces:

* **image space**: pixels of the 512x512 reference crop, x right, y down, z = -(MediaPipe z in pixels), i.e.
  z grows toward the camera.
* **canonical space**: the head with pose removed, scaled so the mean left/right eye-contour x-distance is
  120 px and the anchor (mean of landmarks 50, 280, 168) sits at ``face_center``.

Head pose is the authors' 7-vector ``[yaw, pitch, roll, tx, ty, tz, scale]``: Euler angles in degrees,
the anchor position in image space (z negated as above), and the canonicalisation scale
``s = 120 / inter-ocular distance``. The rotation is ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (scipy
``Rotation.from_euler('xyz', [pitch, yaw, roll], degrees=True)``). Then

    canonical = s * R @ (image - t) + face_center
    image     = R^T @ (canonical - face_center) / s + t

The authors canonicalised with ``face_center = (256, 232, 128)`` (``int(512 / 2.2)``) but de-normalise at
inference with ``(256, 235, 128)``; both are constants here and every function takes ``face_center``.
"""
from __future__ import annotations

from typing import Sequence

import torch

IMAGE_SIZE = 512
CANONICAL_EYE_DISTANCE = 120.0
AUTHORS_INFERENCE_FACE_CENTER = (256.0, 235.0, 128.0)
CANONICALISATION_FACE_CENTER = (256.0, float(int(IMAGE_SIZE / 2.2)), 128.0)   # (256, 232, 128)
HEAD_POSE_AXES = ("yaw", "pitch", "roll", "tx", "ty", "tz", "scale")


def _rotation_x(a: torch.Tensor) -> torch.Tensor:
    one, zero, c, s = torch.ones_like(a), torch.zeros_like(a), a.cos(), a.sin()
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], -1).unflatten(-1, (3, 3))


def _rotation_y(a: torch.Tensor) -> torch.Tensor:
    one, zero, c, s = torch.ones_like(a), torch.zeros_like(a), a.cos(), a.sin()
    return torch.stack([c, zero, s, zero, one, zero, -s, zero, c], -1).unflatten(-1, (3, 3))


def _rotation_z(a: torch.Tensor) -> torch.Tensor:
    one, zero, c, s = torch.ones_like(a), torch.zeros_like(a), a.cos(), a.sin()
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).unflatten(-1, (3, 3))


def euler_to_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` (yaw, pitch, roll) in degrees -> rotation matrices ``[..., 3, 3]``."""
    yaw, pitch, roll = torch.deg2rad(angles_deg).unbind(-1)
    return _rotation_z(roll) @ _rotation_y(yaw) @ _rotation_x(pitch)


def matrix_to_euler(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_matrix` for |yaw| < 90 degrees: ``[..., 3, 3]`` -> ``[..., 3]`` degrees."""
    yaw = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    roll = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], -1))


def _split_pose(head_pose: torch.Tensor):
    if head_pose.shape[-1] != 7:
        raise ValueError(f"head_pose must end in 7 values {HEAD_POSE_AXES}, got shape {tuple(head_pose.shape)}")
    return euler_to_matrix(head_pose[..., :3]), head_pose[..., 3:6], head_pose[..., 6]


def _center(face_center: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(face_center, dtype=like.dtype, device=like.device)


def canonical_to_image(points: torch.Tensor, head_pose: torch.Tensor,
                       face_center: Sequence[float] = AUTHORS_INFERENCE_FACE_CENTER) -> torch.Tensor:
    """Canonical ``[..., N, 3]`` + pose ``[..., 7]`` -> image space ``[..., N, 3]`` (face and torso alike)."""
    rotation, translation, scale = _split_pose(head_pose.to(points.dtype))
    centred = (points - _center(face_center, points)) / scale[..., None, None]
    return centred @ rotation + translation[..., None, :]          # row-vector form of R^T @ c


def image_to_canonical(points: torch.Tensor, head_pose: torch.Tensor,
                       face_center: Sequence[float] = CANONICALISATION_FACE_CENTER) -> torch.Tensor:
    """Image space ``[..., N, 3]`` + pose ``[..., 7]`` -> canonical ``[..., N, 3]``; inverse of canonical_to_image."""
    rotation, translation, scale = _split_pose(head_pose.to(points.dtype))
    rotated = (points - translation[..., None, :]) @ rotation.transpose(-1, -2)
    return rotated * scale[..., None, None] + _center(face_center, points)


def project_orthographic(points: torch.Tensor) -> torch.Tensor:
    """Image-space points ``[..., N, 3]`` -> pixel positions ``[..., N, 2]`` (drop z; no camera model)."""
    return points[..., :2]


def truncate_to_pixels(xy: torch.Tensor) -> torch.Tensor:
    """The authors' ``int()`` cast: truncation toward zero, int32."""
    return torch.trunc(xy).to(torch.int32)


def canonicalisation_scale(left_eye_x: torch.Tensor, right_eye_x: torch.Tensor) -> torch.Tensor:
    """``120 / mean |x_left - x_right|`` over paired eye-contour points (``[..., 16]`` each), after rotation."""
    distance = (left_eye_x - right_eye_x).abs().mean(-1)
    return CANONICAL_EYE_DISTANCE / distance
