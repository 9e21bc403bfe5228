"""Nodes that save, load and describe R (MODA's talking representation, :class:`moda_core.repr.TalkingRepr`)."""
from __future__ import annotations

import os
import zipfile

from comfy_api.latest import io, ui

from moda_core.repr import REPR_FORMAT, ReprError, TalkingRepr

from .types import CATEGORY, MODA_REPR, node_error
from .util import (
    check_choice,
    check_repr,
    file_fingerprint,
    list_user_files,
    resolve_user_file,
    safetensors_header,
    save_target,
    user_file_options,
    validate_user_file,
)

REPR_SUFFIXES = (".safetensors", ".npz")
REPR_WHAT = ".safetensors or .npz R file"
SAVE_FORMATS = ("safetensors", "npz", "safetensors + npz")


# ---------------------------------------------------------------- file helpers
def _is_repr_file(path: str) -> bool:
    """True when the file's metadata says ``format = moda-repr`` (reads only the header, never the tensors)."""
    try:
        if path.endswith(".safetensors"):
            return (safetensors_header(path).get("__metadata__") or {}).get("format") == REPR_FORMAT
        if path.endswith(".npz"):
            with zipfile.ZipFile(path) as archive:
                return "__metadata__.npy" in archive.namelist()
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError):
        return False
    return False


def list_repr_files() -> list[str]:
    """R files in the input folder (any depth), then SaveRepr results as ``moda/<name> [output]``."""
    return list_user_files(REPR_SUFFIXES, _is_repr_file)


def resolve_repr_path(name: str) -> str:
    """Full path of a LoadRepr choice; refuses names that leave the input and output folders."""
    return resolve_user_file(MODALoadRepr.DISPLAY_NAME, "repr_file", name)


# ---------------------------------------------------------------- nodes
class MODASaveRepr(io.ComfyNode):
    DISPLAY_NAME = "MODA Save Repr"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_SaveRepr",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description="Saves R (the talking representation: mouth, eyes, head pose, torso and optional face "
                        "curves) to output/moda/<prefix>_00001_.safetensors so it can be edited, shared or loaded "
                        "again with MODA Load Repr.",
            inputs=[
                MODA_REPR.Input("repr", tooltip="The motion (R) to save. It is written as it is (offsets or "
                                                "absolute, every sample)."),
                io.String.Input("filename_prefix", default="repr",
                                tooltip="File name start, inside output/moda/. May contain sub-folders "
                                        "(e.g. 'cathy/take'); a counter _00001_ is added."),
                io.Combo.Input("format", options=list(SAVE_FORMATS), default=SAVE_FORMATS[0],
                               tooltip="safetensors: compact, loads fastest. npz: the same arrays for editing in "
                                       "numpy (np.load). Both: one file of each with the same counter."),
            ],
            outputs=[io.String.Output("path", display_name="path",
                                      tooltip="Full path of the file written (the .safetensors one when both).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, repr: TalkingRepr, filename_prefix: str, format: str) -> io.NodeOutput:
        check_repr(cls.DISPLAY_NAME, repr)
        check_choice(cls.DISPLAY_NAME, "format", format, SAVE_FORMATS, what="format")
        output_dir, folder, stem = save_target(cls.DISPLAY_NAME, filename_prefix, "repr")
        suffixes = {"safetensors": [".safetensors"], "npz": [".npz"]}.get(format, [".safetensors", ".npz"])
        paths = [str(repr.save(os.path.join(folder, stem + suffix))) for suffix in suffixes]
        shown = ", ".join(os.path.relpath(p, output_dir) for p in paths)
        return io.NodeOutput(paths[0], ui=ui.PreviewText(f"saved {shown} ({repr.num_samples} sample(s), "
                                                         f"{repr.num_frames} frames)"))


class MODALoadRepr(io.ComfyNode):
    DISPLAY_NAME = "MODA Load Repr"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_LoadRepr",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description="Loads R (the talking representation) from a .safetensors or .npz file written by MODA "
                        "Save Repr or the moda CLI. Lists R files in the input folder and in output/moda/.",
            inputs=[
                io.Combo.Input("repr_file", options=user_file_options(list_repr_files(), REPR_WHAT),
                               tooltip="An R file from the input folder, or 'moda/... [output]' for one saved by "
                                       "MODA Save Repr. Other .safetensors files are not listed."),
            ],
            outputs=[MODA_REPR.Output("repr", display_name="repr",
                                      tooltip="The motion (R) from the file, on the CPU.")],
        )

    @classmethod
    def execute(cls, repr_file: str) -> io.NodeOutput:
        path = resolve_repr_path(repr_file)
        try:
            return io.NodeOutput(TalkingRepr.load(path, device="cpu"))
        except ReprError as err:
            raise node_error(cls.DISPLAY_NAME, "repr_file", f"cannot load {repr_file!r}: {err}",
                             "pick another file or save it again with MODA Save Repr") from err

    @classmethod
    def validate_inputs(cls, repr_file: str) -> bool | str:
        return validate_user_file(cls.DISPLAY_NAME, "repr_file", repr_file, REPR_SUFFIXES, REPR_WHAT,
                                  "save it with MODA Save Repr")

    @classmethod
    def fingerprint_inputs(cls, repr_file: str):
        """Re-run when the file's bytes change (sha256, as core LoadAudio does)."""
        return file_fingerprint(lambda: resolve_repr_path(repr_file))


def describe_repr(r: TalkingRepr) -> str:
    """A short human-readable summary of R."""
    lines = [
        f"samples: {r.num_samples}",
        f"frames: {r.num_frames} at {r.fps:g} fps ({r.duration:.2f} s)",
        f"values: {'offsets from the subject means' if r.is_offset else 'absolute'}",
        f"face track: {'yes (composed, 478 points)' if r.face is not None else 'no (run the facial composer)'}",
        f"subject: {r.subject or '(not set)'}",
        f"dtype: {str(r.dtype).replace('torch.', '')}, device: {r.device}",
    ]
    lines += [f"meta {key}: {value}" for key, value in sorted(r.meta.items())]
    return "\n".join(lines)


class MODAReprInfo(io.ComfyNode):
    DISPLAY_NAME = "MODA Repr Info"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_ReprInfo",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description="Describes R: samples, frames, fps, duration, offsets or absolute values, whether the "
                        "face track is composed, and the subject. fps and frames can drive Create Video.",
            inputs=[MODA_REPR.Input("repr", tooltip="The motion (R) to describe.")],
            outputs=[
                io.String.Output("summary", display_name="summary",
                                 tooltip="Multi-line text summary (connect it to Preview as Text / Preview Any)."),
                io.Float.Output("fps", display_name="fps", tooltip="Frames per second of R."),
                io.Int.Output("frames", display_name="frames", tooltip="Number of frames T."),
                io.Int.Output("samples", display_name="samples", tooltip="Number of samples S (e.g. seeds)."),
            ],
        )

    @classmethod
    def execute(cls, repr: TalkingRepr) -> io.NodeOutput:
        check_repr(cls.DISPLAY_NAME, repr)
        return io.NodeOutput(describe_repr(repr), repr.fps, repr.num_frames, repr.num_samples)


NODES = [MODASaveRepr, MODALoadRepr, MODAReprInfo]
