"""Subjects (MODA_SUBJECT): from a photo, from the frames of a talking video, saved and loaded as files.

The MediaPipe model files (face_landmarker.task, selfie_segmenter.tflite) are read from models/moda.
"""
from __future__ import annotations

import os

import comfy.model_management
import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui

from moda_core import preprocess
from moda_core.authors_subject import REFERENCE_FILES, REPR_FILE, import_subject, is_authors_subject_folder
from moda_core.drawing import draw_condition_frame
from moda_core.geometry import CANONICALISATION_FACE_CENTER, canonical_to_image
from moda_core.subject import SUBJECT_FORMAT, Subject, SubjectError

from .types import CATEGORY, MODA_REPR, MODA_SUBJECT, node_error, searchable
from .util import (AVATARS_FOLDER, MODEL_FOLDER, expect, expect_images, file_fingerprint, find_weight, inside,
                   list_user_files, log, progress_callback, register_model_folder, require_mediapipe,
                   resolve_user_file, safetensors_header, save_target, user_file_options, validate_user_file)

SUBJECT_SUFFIX = ".safetensors"
AVATAR_SUBJECT = "subject.safetensors"
SUBJECT_WHAT = "subject file"
NAME_TOOLTIP = ("A name stored in the subject (and in R made from it), shown by MODA Repr Info. Empty: the name of "
                "the file the image comes from (e.g. 'portrait' for Load Image's portrait.jpg).")
_SOURCE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".mp4", ".mov", ".webm",
                    ".mkv", ".avi", ".m4v")


def source_file_stem(prompt: dict | None, node_id, input_name: str, max_hops: int = 4) -> str:
    """The stem of the image or video file an input comes from, read from the queued prompt: follows the link
    upstream (through nodes such as Get Video Components) to the first constant naming such a file (Load Image's
    'image', Load Video's 'file'); '' when there is none."""
    node = (prompt or {}).get(str(node_id)) or {}
    value = (node.get("inputs") or {}).get(input_name)
    for _ in range(max_hops):
        if not (isinstance(value, list) and len(value) == 2):
            return ""
        inputs = ((prompt or {}).get(str(value[0])) or {}).get("inputs") or {}
        for constant in inputs.values():
            if isinstance(constant, str):
                file = constant.rsplit(" [", 1)[0].replace("\\", "/").rsplit("/", 1)[-1]
                stem, suffix = os.path.splitext(file)
                if suffix.lower() in _SOURCE_SUFFIXES and stem:
                    return stem
        value = next((v for v in inputs.values() if isinstance(v, list) and len(v) == 2), None)
    return ""


def subject_preview(subject: Subject) -> torch.Tensor:
    """The subject's template face and shoulders at its mean pose, drawn over its reference crop: [1, 512, 512, 3]."""
    pose = subject.mean_head_pose.double()
    face = canonical_to_image(subject.template.double(), pose, CANONICALISATION_FACE_CENTER)
    torso = canonical_to_image(subject.mean_torso.double(), pose, CANONICALISATION_FACE_CENTER)
    canvas = subject.reference_image.numpy().copy()
    drawn = draw_condition_frame(face[:, :2].numpy(), torso[:, :2].numpy(), canvas=canvas, style="antialiased")
    image = torch.from_numpy(np.ascontiguousarray(drawn)).to(torch.float32).div_(255.0)[None]
    return image.to(comfy.model_management.intermediate_device())


def preprocess_error(display_name: str, input_name: str, err: preprocess.PreprocessError) -> ValueError:
    """The pack's error for a preprocessing failure: its message already says what to do, so it is not repeated."""
    return ValueError(f"{display_name}: input '{input_name}': {err}")


def _log_warnings(display_name: str, warnings: list[str]) -> None:
    for warning in warnings:
        log.warning("%s: %s", display_name, warning)


class MODASubjectFromImage(io.ComfyNode):
    DISPLAY_NAME = "MODA Subject from Image"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_SubjectFromImage", category=CATEGORY, **searchable(cls.DISPLAY_NAME, "talking portrait"),
            description="Builds the subject from a portrait photo: finds the face (MediaPipe, 478 points), crops "
                        "the 512x512 reference, measures the head pose and shoulders, and keeps the photo so "
                        "renders can be pasted back. Needs face_landmarker.task and selfie_segmenter.tflite in "
                        "models/moda.",
            inputs=[
                io.Image.Input("image", tooltip="The portrait (first image of the batch): one clear face, frontal "
                                                "or slightly turned, shoulders visible if possible."),
                io.Int.Input("face_index", default=-1, min=-1, max=4, step=1,
                             tooltip="Which face when there are several: -1 the largest, 0, 1, ... numbered left "
                                     "to right."),
                io.String.Input("name", default="", tooltip=NAME_TOOLTIP),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
            outputs=[
                MODA_SUBJECT.Output("subject", display_name="subject",
                                    tooltip="The subject: reference crop, template face, mean pose and torso."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="[1, 512, 512, 3]: the reference crop with the found face and shoulders."),
            ],
        )

    @classmethod
    def execute(cls, image: torch.Tensor, face_index: int, name: str) -> io.NodeOutput:
        image = expect_images(cls.DISPLAY_NAME, "image", image)
        if image.shape[0] > 1:
            log.warning("%s: input 'image' holds %d images; using the first one", cls.DISPLAY_NAME, image.shape[0])
        models_dir = require_mediapipe(cls.DISPLAY_NAME, "image")
        name = name.strip() or source_file_stem(cls.hidden.prompt, cls.hidden.unique_id, "image")
        try:
            subject, found = preprocess.subject_from_photo(image[0], models_dir=models_dir, name=name,
                                                           face_index=None if face_index < 0 else face_index,
                                                           label="the image")
        except preprocess.PreprocessError as err:
            raise preprocess_error(cls.DISPLAY_NAME, "face_index" if "face_index" in str(err) else "image",
                                   err) from err
        _log_warnings(cls.DISPLAY_NAME, found.warnings)
        return io.NodeOutput(subject, subject_preview(subject))


class MODASubjectFromVideo(io.ComfyNode):
    DISPLAY_NAME = "MODA Subject from Video"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_SubjectFromVideo", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Builds the subject from the frames of a talking video (e.g. Load Video -> Get Video "
                        "Components) and measures its motion as R, the ground truth. One crop box serves the whole "
                        "clip; frames without a face are filled in. The subject keeps its reference frame for "
                        "paste-back. Needs the MediaPipe files in models/moda.",
            inputs=[
                io.Image.Input("images", tooltip="The video frames [T, H, W, 3]; one person, face visible in at "
                                                 "least half of them."),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=1.0,
                               tooltip="Frame rate of the frames; R gets the same rate. Connect Get Video "
                                       "Components' fps."),
                io.String.Input("name", default="", tooltip=NAME_TOOLTIP),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],
            outputs=[
                MODA_SUBJECT.Output("subject", display_name="subject",
                                    tooltip="The subject: mean face and pose of the clip, reference crop."),
                MODA_REPR.Output("repr", display_name="repr",
                                 tooltip="The clip's own motion (absolute values, one sample, with the face track) "
                                         "at fps."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="[1, 512, 512, 3]: the reference crop with the mean face and shoulders."),
            ],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, fps: float, name: str) -> io.NodeOutput:
        images = expect_images(cls.DISPLAY_NAME, "images", images)
        models_dir = require_mediapipe(cls.DISPLAY_NAME, "images")
        name = name.strip() or source_file_stem(cls.hidden.prompt, cls.hidden.unique_id, "images")
        count = images.shape[0]
        report = progress_callback(2 * count)

        def progress(stage: str, done: int, total: int) -> None:
            report(done + (total if stage == "crop+torso" else 0), 2 * total)

        try:
            subject, r, found = preprocess.subject_from_frames(images, fps, models_dir=models_dir, name=name,
                                                               progress=progress)
        except preprocess.PreprocessError as err:
            raise preprocess_error(cls.DISPLAY_NAME, "fps" if "fps" in str(err) else "images", err) from err
        _log_warnings(cls.DISPLAY_NAME, found.warnings)
        return io.NodeOutput(subject, r, subject_preview(subject))


# ---------------------------------------------------------------- files
def _is_subject_file(path: str) -> bool:
    return (safetensors_header(path).get("__metadata__") or {}).get("format") == SUBJECT_FORMAT


def list_subject_files() -> list[str]:
    """Subject files in the input folder (any depth), then MODA Save Subject results as ``moda/... [output]``, then
    the subjects of trained avatars as ``avatars/<name>/subject.safetensors [models]``."""
    return list_user_files((SUBJECT_SUFFIX,), _is_subject_file) + [
        f"{name}{AVATAR_TAG}" for name in avatar_subject_files() if _is_subject_file(find_weight(name) or "")]


AVATAR_TAG = " [models]"          # an avatar's subject in models/moda (MODA Train Avatar)


def avatar_subject_files() -> list[str]:
    """``avatars/<name>/subject.safetensors`` of the moda model folders."""
    register_model_folder()
    return sorted({f"{AVATARS_FOLDER}/{name}/{AVATAR_SUBJECT}" for root in folder_paths.get_folder_paths(MODEL_FOLDER)
                   if os.path.isdir(os.path.join(root, AVATARS_FOLDER))
                   for name in os.listdir(os.path.join(root, AVATARS_FOLDER))
                   if os.path.isfile(os.path.join(root, AVATARS_FOLDER, name, AVATAR_SUBJECT))})


class MODASaveSubject(io.ComfyNode):
    DISPLAY_NAME = "MODA Save Subject"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_SaveSubject", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Saves the subject (reference crop, template, mean pose and torso, source photo) to "
                        "output/moda/<prefix>_00001_.safetensors, to reuse it with MODA Load Subject without "
                        "preprocessing the photo or video again.",
            inputs=[
                MODA_SUBJECT.Input("subject", tooltip="The subject to save."),
                io.String.Input("filename_prefix", default="subject",
                                tooltip="File name start, inside output/moda/. May contain sub-folders; a counter "
                                        "_00001_ is added."),
            ],
            outputs=[io.String.Output("path", display_name="path", tooltip="Full path of the file written.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, subject: Subject, filename_prefix: str) -> io.NodeOutput:
        expect(cls.DISPLAY_NAME, "subject", subject, Subject, "a Subject", "MODA_SUBJECT")
        output_dir, folder, stem = save_target(cls.DISPLAY_NAME, filename_prefix, "subject")
        path = str(subject.save(os.path.join(folder, stem + SUBJECT_SUFFIX)))
        return io.NodeOutput(path, ui=ui.PreviewText(f"saved {os.path.relpath(path, output_dir)}"))


class MODALoadSubject(io.ComfyNode):
    DISPLAY_NAME = "MODA Load Subject"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_LoadSubject", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Loads a subject file written by MODA Save Subject or the moda CLI (subject.safetensors of "
                        "a prepared sample). Lists subject files in the input folder and in output/moda/.",
            inputs=[io.Combo.Input("subject_file", options=user_file_options(list_subject_files(), SUBJECT_WHAT),
                                   tooltip="A subject file from the input folder, or 'moda/... [output]' for one "
                                           "saved by MODA Save Subject.")],
            outputs=[
                MODA_SUBJECT.Output("subject", display_name="subject", tooltip="The subject from the file."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="[1, 512, 512, 3]: the reference crop with the mean face and shoulders."),
            ],
        )

    @classmethod
    def _path(cls, subject_file: str) -> str:
        if subject_file.endswith(AVATAR_TAG):
            path = find_weight(subject_file[:-len(AVATAR_TAG)])
            if path is None or subject_file[:-len(AVATAR_TAG)] not in avatar_subject_files():
                raise node_error(cls.DISPLAY_NAME, "subject_file", f"avatar subject {subject_file!r} not found in "
                                 "models/moda", "train it with MODA Train Avatar, or pick another from the list")
            return path
        return resolve_user_file(cls.DISPLAY_NAME, "subject_file", subject_file)

    @classmethod
    def execute(cls, subject_file: str) -> io.NodeOutput:
        try:
            subject = Subject.load(cls._path(subject_file))
        except SubjectError as err:
            raise node_error(cls.DISPLAY_NAME, "subject_file", f"cannot load {subject_file!r}: {err}",
                             "pick another file or save it again with MODA Save Subject") from err
        return io.NodeOutput(subject, subject_preview(subject))

    @classmethod
    def validate_inputs(cls, subject_file: str) -> bool | str:
        if isinstance(subject_file, str) and subject_file.endswith(AVATAR_TAG):
            try:
                cls._path(subject_file)
            except ValueError as err:
                return str(err)
            return True
        return validate_user_file(cls.DISPLAY_NAME, "subject_file", subject_file, (SUBJECT_SUFFIX,), SUBJECT_WHAT,
                                  "save one with MODA Save Subject")

    @classmethod
    def fingerprint_inputs(cls, subject_file: str):
        """Re-run when the file's bytes change (sha256, as core LoadAudio does)."""
        return file_fingerprint(lambda: cls._path(subject_file))


# ---------------------------------------------------------------- the authors' subject folders
NO_AUTHORS_FOLDER = "(no authors' subject folder in models/moda)"


def model_folders() -> list[str]:
    """Every models/moda folder (the default one and those from extra_model_paths.yaml)."""
    register_model_folder()
    return list(folder_paths.get_folder_paths(MODEL_FOLDER))


def list_authors_subject_folders() -> list[str]:
    """Folders under models/moda (any depth) holding the authors' repr.npz and reference.pth (or .png), as
    ``<person>`` or ``<sub>/<person>`` paths relative to their models/moda folder."""
    found = []
    for root in model_folders():
        for dirpath, dirnames, _ in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if dirpath != root and is_authors_subject_folder(dirpath):
                found.append(os.path.relpath(dirpath, root).replace(os.sep, "/"))
    return sorted(set(found))


class MODALoadAuthorsSubject(io.ComfyNode):
    DISPLAY_NAME = "MODA Load Authors Subject"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_LoadAuthorsSubject", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Loads a subject as the MODA authors ship it: a folder in models/moda (e.g. models/moda/"
                        "cathy/, which MODA Download Weights fills from the authors' release) holding repr.npz "
                        "(template, mean head motion and shoulders) and reference.pth (the reference image their "
                        "renderer was trained with; reference.png also works). Their renderer for that person "
                        "then reproduces their result. reference.pth is read without running code from it.",
            inputs=[io.Combo.Input("subject_folder", options=list_authors_subject_folders() or [NO_AUTHORS_FOLDER],
                                   tooltip="A folder in models/moda holding repr.npz and reference.pth.")],
            outputs=[
                MODA_SUBJECT.Output("subject", display_name="subject",
                                    tooltip="The authors' subject: their template, means (float64) and reference."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="[1, 512, 512, 3]: the reference with the mean face and shoulders."),
            ],
        )

    @classmethod
    def _path(cls, subject_folder: str) -> str:
        for root in model_folders():
            path = os.path.join(root, subject_folder)
            if not inside(path, root):
                raise node_error(cls.DISPLAY_NAME, "subject_folder", f"{subject_folder!r} points outside models/moda",
                                 "pick a folder from the list")
            if os.path.isdir(path):
                return path
        raise node_error(cls.DISPLAY_NAME, "subject_folder", f"folder {subject_folder!r} not found in models/moda",
                         "put the authors' repr.npz and reference.pth in models/moda/<person>/ (or download them "
                         "with MODA Download Weights, source: the authors' release) and refresh")

    @classmethod
    def execute(cls, subject_folder: str) -> io.NodeOutput:
        try:
            subject = import_subject(cls._path(subject_folder))
        except SubjectError as err:
            raise node_error(cls.DISPLAY_NAME, "subject_folder", f"cannot load {subject_folder!r}: {err}",
                             "replace the damaged file with the authors' original") from err
        return io.NodeOutput(subject, subject_preview(subject))

    @classmethod
    def validate_inputs(cls, subject_folder: str) -> bool | str:
        if subject_folder == NO_AUTHORS_FOLDER:
            return str(node_error(cls.DISPLAY_NAME, "subject_folder", "no authors' subject folder in models/moda yet",
                                  "download one with MODA Download Weights (source: the authors' release) or put "
                                  "repr.npz and reference.pth in models/moda/<person>/, then refresh"))
        return True

    @classmethod
    def fingerprint_inputs(cls, subject_folder: str):
        """Re-run when repr.npz or the reference changes (sha256 of each); always when repr.npz is unreadable."""
        digests = [file_fingerprint(lambda name=name: os.path.join(cls._path(subject_folder), name))
                   for name in (REPR_FILE, *REFERENCE_FILES)]
        return digests[0] if not isinstance(digests[0], str) else "|".join(map(str, digests))


NODES = [MODASubjectFromImage, MODASubjectFromVideo, MODASaveSubject, MODALoadSubject, MODALoadAuthorsSubject]
