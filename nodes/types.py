"""Socket types of the MODA node pack.

A socket type is only a string tag: ComfyUI passes the Python object between nodes untouched (no copy) and keeps
it in its output cache, so **nodes must never modify an input object**; moda_core's ``TalkingRepr`` and
``Subject`` are immutable by convention (every method returns a new object).

Each type is ``io.Custom("<TAG>")``; use ``MODA_REPR.Input("repr", tooltip=...)`` /
``MODA_REPR.Output(display_name="repr", tooltip=...)``. Tags are permanent: saved workflows store them.

========================= ==================================================================================
tag                       value
========================= ==================================================================================
``MODA_REPR``             :class:`moda_core.repr.TalkingRepr` (R): motion curves ``[S, T, ...]`` on the CPU
``MODA_SUBJECT``          :class:`moda_core.subject.Subject`: reference image, template, mean pose and torso
``MODA_POINTS``           :class:`PointsDict`: one sample of R projected to image space
``MODA_MODEL``            the MODA network with its wav2vec2 audio encoder (shared by all subjects; made by
                          MODA Load MODA Model, consumed by MODA Audio to Motion)
``MODA_AUDIO_ENCODER``    a wav2vec2 audio encoder that replaces the one inside MODA_MODEL (optional input of
                          MODA Audio to Motion)
``MODA_FACO``             FaCo-Net alone (the facial composer: mouth + eyes + template -> 478 points)
``MODA_RENDERER``         a subject's renderer (U-Net with temporal positional encoding); per subject
========================= ==================================================================================

Model values are defined by the nodes that create them (lead-owned); this module only fixes the tags, so that
every producer and consumer agrees on them.
"""
from __future__ import annotations

from typing import TypedDict

import torch
from comfy_api.latest import io


class PointsDict(TypedDict):
    """Value of ``MODA_POINTS``: one sample of R in image space of the 512x512 crop (float64, CPU)."""

    face_xy: torch.Tensor      # [T, 478, 2] pixel positions (x right, y down)
    torso_xy: torch.Tensor     # [T, 18, 2]
    face_xyz: torch.Tensor     # [T, 478, 3] with z toward the camera
    torso_xyz: torch.Tensor    # [T, 18, 3]
    fps: float
    image_size: int            # 512
    face_center: tuple         # (x, y, z) used to de-normalise


MODA_REPR = io.Custom("MODA_REPR")
MODA_SUBJECT = io.Custom("MODA_SUBJECT")
MODA_POINTS = io.Custom("MODA_POINTS")
MODA_MODEL = io.Custom("MODA_MODEL")
MODA_AUDIO_ENCODER = io.Custom("MODA_AUDIO_ENCODER")
MODA_FACO = io.Custom("MODA_FACO")
MODA_RENDERER = io.Custom("MODA_RENDERER")

ALL_TYPES = (MODA_REPR, MODA_SUBJECT, MODA_POINTS, MODA_MODEL, MODA_AUDIO_ENCODER, MODA_FACO, MODA_RENDERER)
CATEGORY = "MODA"


def node_error(display_name: str, input_name: str, problem: str, action: str) -> ValueError:
    """The pack's error style: ``<display name> ("MODA ...")``: input '<name>': <what is wrong>, <what to do>``."""
    return ValueError(f"{display_name}: input '{input_name}': {problem}, {action}")


def searchable(display_name: str, *aliases: str) -> dict:
    """``io.Schema`` keywords that let the node search find the node by ``aliases`` ("talking head", ...):
    ``search_aliases`` where the schema has it (ComfyUI after 0.8); otherwise the aliases go into the display name,
    the only text besides the node id that the frontend's search (1.35) matches."""
    import dataclasses

    if "search_aliases" in {f.name for f in dataclasses.fields(io.Schema)}:
        return {"display_name": display_name, "search_aliases": list(aliases)}
    return {"display_name": f"{display_name} ({', '.join(aliases)})"}
