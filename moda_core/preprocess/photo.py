"""Photo -> :class:`~moda_core.subject.Subject`: detect, crop to the 512 reference, canonicalise.

The template (style input S) is the canonical face of the crop, the mean head pose is that frame's pose and
the mean torso its canonical shoulders. ``crop_to_source`` / ``source_size`` / ``source_image`` allow pasting
renders back into the photo. Faces are numbered left to right (by nose x); by default the largest is used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from moda_core.preprocess.crop import crop_box_for
from moda_core.preprocess.errors import PreprocessError
from moda_core.preprocess.face_geometry import load_frontal_reference
from moda_core.preprocess.images import ImageInput, read_image
from moda_core.preprocess.landmarks import FaceLandmarks
from moda_core.preprocess.pose import (canonicalise, eye_distance, head_pose, require_face_size,
                                      to_image_space)
from moda_core.preprocess.segmentation import PersonSegmenter
from moda_core.preprocess.torso import billboard, fallback_shoulders, shoulder_points
from moda_core.subject import REFERENCE_SIZE, Subject

MAX_FACES = 5
_NOSE_TIP = 4


@dataclass
class PhotoDiagnostics:
    """What :func:`subject_from_photo` found. Points are image space (px, z toward the camera)."""

    num_faces: int
    face_index: int
    landmarks: np.ndarray                     # [478, 3] in the 512 crop
    source_landmarks: np.ndarray              # [478, 3] in the source photo
    head_pose: np.ndarray                     # [7] in the crop
    eye_distance: float                       # frontal inter-ocular distance, source px
    torso_sides_found: int                    # shoulders seen in the person mask: 0, 1 or 2
    warnings: list[str] = field(default_factory=list)


def _choose_face(faces: list[np.ndarray], poses: np.ndarray, face_index: int | None, name: str,
                 warnings: list[str]) -> int:
    sizes = eye_distance(poses)
    if face_index is not None:
        if not -len(faces) <= face_index < len(faces):
            raise PreprocessError(f"face_index {face_index} is out of range: {len(faces)} face(s) found in {name} "
                                  f"(numbered left to right from 0); use 0..{len(faces) - 1}")
        return face_index % len(faces)
    chosen = int(np.argmax(sizes))
    if len(faces) > 1:
        warnings.append(f"{len(faces)} faces found (left to right, inter-ocular px: "
                        f"{', '.join(f'{s:.0f}' for s in sizes)}); using the largest, index {chosen}. "
                        "Pass face_index to choose another.")
    return chosen


def subject_from_photo(image: ImageInput, models_dir: str | os.PathLike | None = None,
                       face_index: int | None = None, name: str = "",
                       label: str | None = None) -> tuple[Subject, PhotoDiagnostics]:
    """Any photo (path, PIL, uint8 or float 0..1 ``[H, W, 3]`` array/tensor) -> (Subject, diagnostics).
    ``label`` names the photo in messages (default: its path, or "the image")."""
    rgb, label = read_image(image, label)
    warnings: list[str] = []
    with FaceLandmarks(models_dir, max_faces=MAX_FACES) as landmarker:
        faces = landmarker.detect(rgb)
        reference = load_frontal_reference(landmarker.model_path)
    if not faces:
        raise PreprocessError(f"no face found in {label}: use a photo where one face is clearly visible, "
                              "frontal or slightly turned, not covered")
    faces = sorted((to_image_space(f) for f in faces), key=lambda f: f[_NOSE_TIP, 0])
    poses = head_pose(np.stack(faces), reference)
    index = _choose_face(faces, poses, face_index, label, warnings)
    source_face, source_pose = faces[index], poses[index]
    size = require_face_size(source_pose, label)

    box = crop_box_for(source_pose[3:5], source_pose[6])
    crop = box.cut(rgb)
    face = box.to_crop(source_face)
    pose = head_pose(face, reference)
    with PersonSegmenter(models_dir) as segmenter:
        shoulders, sides = shoulder_points(segmenter.person_probability(crop), face)
    if shoulders is None:
        shoulders = fallback_shoulders(face, REFERENCE_SIZE)
        warnings.append(f"no shoulders visible in {label}; using a default shoulder line below the chin")
    elif sides == 1:
        warnings.append(f"only one shoulder visible in {label}; the other one is mirrored")

    subject = Subject(reference_image=crop, template=canonicalise(face, pose), mean_head_pose=pose,
                      mean_torso=canonicalise(billboard(shoulders, face), pose),
                      crop_to_source=box.crop_to_source, source_size=(rgb.shape[1], rgb.shape[0]),
                      name=name, source_image=rgb)
    return subject, PhotoDiagnostics(num_faces=len(faces), face_index=index, landmarks=face,
                                     source_landmarks=source_face, head_pose=pose, eye_distance=size,
                                     torso_sides_found=sides, warnings=warnings)
