"""Pose transform and projection: R + Subject -> condition images the renderer reads."""
from __future__ import annotations

import comfy.model_management
from comfy_api.latest import io

from moda_core.projection import FACE_CENTERS, project_repr, render_condition_images
from moda_core.repr import ReprError, TalkingRepr
from moda_core.subject import Subject

from .types import CATEGORY, MODA_POINTS, MODA_REPR, MODA_SUBJECT, PointsDict, node_error
from .util import check_choice, check_repr, check_sample, check_subject, progress_callback

FACE_CENTER_OPTIONS = {"authors (y 235)": "authors", "canonical (y 232)": "canonical"}
STYLE_OPTIONS = ("authors", "antialiased")
FRAMES_PER_STEP = 16                 # frames drawn between progress updates / cancel checks


class MODAProjectRepr(io.ComfyNode):
    DISPLAY_NAME = "MODA Pose Transform and Projection"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_ProjectRepr",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description="Places one sample of R on the subject: applies each frame's head pose to the face and "
                        "shoulders, projects them onto the 512x512 crop and draws the condition images (face mesh "
                        "and shoulder lines) the MODA renderer reads. Uses the composed face track when R has "
                        "one, else the subject's template with R's mouth and eyes.",
            inputs=[
                MODA_REPR.Input("repr", tooltip="The motion (R); offsets are made absolute with the subject."),
                MODA_SUBJECT.Input("subject", tooltip="The person: template face, mean head pose and torso."),
                io.Int.Input("sample", default=0, min=0, max=4095, step=1,
                             tooltip="Which sample of R to project (0 = first seed)."),
                io.Combo.Input("face_center", options=list(FACE_CENTER_OPTIONS), default="authors (y 235)",
                               tooltip="Centre the canonical face is placed around, in px. 'authors' (y 235) "
                                       "matches the released checkpoints; 'canonical' (y 232) is the value the "
                                       "canonical space was built with (the face sits ~2.6 px lower)."),
                io.Combo.Input("style", options=list(STYLE_OPTIONS), default="authors",
                               tooltip="'authors': 1 px / 2 px aliased lines as the renderer was trained on. "
                                       "'antialiased': smoother lines for viewing only."),
            ],
            outputs=[
                io.Image.Output("images", display_name="condition images",
                                tooltip="[T, 512, 512, 3] RGB in 0..1: one drawing per frame of the sample."),
                MODA_POINTS.Output("points", display_name="points",
                                   tooltip="Projected points: face_xy [T, 478, 2], torso_xy [T, 18, 2] pixels "
                                           "(plus xyz with z toward the camera), fps."),
            ],
        )

    @classmethod
    def execute(cls, repr: TalkingRepr, subject: Subject, sample: int, face_center: str,
                style: str) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        check_repr(name, repr)
        check_subject(name, subject, optional=False)
        check_sample(name, repr, sample)
        check_choice(name, "face_center", face_center, FACE_CENTER_OPTIONS)
        check_choice(name, "style", style, STYLE_OPTIONS)

        center = FACE_CENTERS[FACE_CENTER_OPTIONS[face_center]]
        try:
            face_xyz, torso_xyz = project_repr(repr.to("cpu"), subject, sample=sample, face_center=center)
        except (ReprError, ValueError) as err:
            raise node_error(name, "repr", f"cannot project it onto subject {subject.name or '(unnamed)'}: {err}",
                             "check that R and the subject belong together") from err

        try:
            images = render_condition_images(face_xyz[..., :2], torso_xyz[..., :2], style=style,
                                             batch_size=FRAMES_PER_STEP, on_batch=progress_callback(face_xyz.shape[0]))
        except ValueError as err:    # non-finite points, e.g. a head scale of 0 in an edited R
            raise node_error(name, "repr", f"sample {sample} cannot be drawn: {err}",
                             "check the head-pose curves (scale must be > 0)") from err
        points: PointsDict = {"face_xy": face_xyz[..., :2], "torso_xy": torso_xyz[..., :2], "face_xyz": face_xyz,
                              "torso_xyz": torso_xyz, "fps": repr.fps, "image_size": images.shape[1],
                              "face_center": tuple(center)}
        return io.NodeOutput(images.to(comfy.model_management.intermediate_device()), points)


NODES = [MODAProjectRepr]
