"""Preview nodes for edited R: curve plots over time (before/after) and landmarks over the subject photo."""
from __future__ import annotations

import comfy.model_management
import torch
from comfy_api.latest import io

from moda_core import editing
from moda_core.editing.keyframes import parse_names
from moda_core.editing.plots import PLOT_TRACKS
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

from .editing import INSPECT_CATEGORY, SUBJECT_ACTION, edit_errors
from .types import MODA_REPR, MODA_SUBJECT, node_error
from .util import check_repr, check_sample, check_subject, progress_callback

OVERLAY_FRAMES_PER_STEP = 16          # overlay frames drawn between progress updates / cancel checks


class MODAPlotCurves(io.ComfyNode):
    DISPLAY_NAME = "MODA Plot Curves"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_PlotCurves",
            display_name=cls.DISPLAY_NAME,
            category=INSPECT_CATEGORY,
            description="Draws R's curves over time as an image: head rotation, translation and scale, eye "
                        "openness per eye, mouth openness. Connect the R before an edit to 'before' to see it dashed "
                        "under the edited curves.",
            inputs=[
                MODA_REPR.Input("repr", tooltip="The motion (R) to plot (solid lines; 'after')."),
                io.Int.Input("width", default=1024, min=64, max=8192, step=8, tooltip="Image width in px."),
                io.Int.Input("height", default=960, min=64, max=8192, step=8,
                             tooltip="Image height in px (about 180 px per panel reads well: 5 panels for "
                                     "head + eyes + mouth)."),
                io.String.Input("tracks", default="head, eyes, mouth",
                                tooltip="Panels, comma separated: head (rotation in degrees, translation in px, "
                                        "scale), eyes (openness, lid gap / eye width), mouth (inner-lip opening, "
                                        "canonical px), or 'all'. Eyes and mouth need the subject when R holds "
                                        "offsets."),
                io.Int.Input("sample", default=0, min=0, max=4095, step=1,
                             tooltip="Which sample of R (and of 'before') to plot (0 = first seed)."),
                MODA_REPR.Input("before", optional=True,
                                tooltip="Optional R before the edit, drawn dashed under R (its own time axis, so a "
                                        "trimmed or looped R can be compared too)."),
                MODA_SUBJECT.Input("subject", optional=True,
                                   tooltip="The person R was made for; needed for the eye and mouth panels when R "
                                           "holds offsets (what the motion generator outputs)."),
            ],
            outputs=[io.Image.Output("image", display_name="image",
                                     tooltip="The plot as IMAGE [1, height, width, 3] in 0..1 (connect to Preview "
                                             "Image or Save Image).")],
        )

    @classmethod
    def execute(cls, repr: TalkingRepr, width: int, height: int, tracks: str, sample: int,
                before: TalkingRepr | None = None, subject: Subject | None = None) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        r = check_repr(name, repr)
        check_sample(name, r, sample)
        if before is not None:
            check_repr(name, before, "before")
            check_sample(name, before, sample, "before")
        subject = check_subject(name, subject)
        with edit_errors(name, ("tracks",), default="tracks"):
            chosen = parse_names(tracks, PLOT_TRACKS, param="tracks")
        if subject is None and {"eyes", "mouth"} & set(chosen):
            offset = "repr" if r.is_offset else "before" if before is not None and before.is_offset else None
            if offset:
                raise node_error(name, "subject", f"'{offset}' holds offsets, so the eye and mouth panels need the "
                                 "subject's template", f"{SUBJECT_ACTION}, or set tracks to 'head'")
        with edit_errors(name, ("width", "height", "tracks", "subject"), default="repr"):
            image = editing.plot_curves(r, before, width=width, height=height, sample=sample, tracks=chosen,
                                        subject=subject)
        return io.NodeOutput(image.unsqueeze(0).to(comfy.model_management.intermediate_device()))


class MODAOverlayLandmarks(io.ComfyNode):
    DISPLAY_NAME = "MODA Landmark Overlay"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_OverlayLandmarks",
            display_name=cls.DISPLAY_NAME,
            category=INSPECT_CATEGORY,
            description="Draws R's face mesh and shoulders, posed by its head pose, over the subject's reference "
                        "photo: a quick preview of an edit before rendering (every n-th frame).",
            inputs=[
                MODA_REPR.Input("repr", tooltip="The motion (R) to preview."),
                MODA_SUBJECT.Input("subject", tooltip="The person R was made for: reference photo, template and "
                                                      "mean pose."),
                io.Int.Input("every_n", default=1, min=1, max=10000, step=1,
                             tooltip="Draw every n-th frame (1 = all frames; 5 at 25 fps = 5 previews a second)."),
                io.Int.Input("sample", default=0, min=0, max=4095, step=1,
                             tooltip="Which sample of R to draw (0 = first seed)."),
                io.Float.Input("opacity", default=0.7, min=0.0, max=1.0, step=0.05,
                               tooltip="Opacity of the drawn lines over the photo (unitless, 0..1)."),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="IMAGE batch [ceil(T / every_n), 512, 512, 3] in 0..1.")],
        )

    @classmethod
    def execute(cls, repr: TalkingRepr, subject: Subject, every_n: int, sample: int,
                opacity: float) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        r = check_repr(name, repr)
        check_subject(name, subject, optional=False)
        check_sample(name, r, sample)
        if every_n < 1:
            raise node_error(name, "every_n", f"{every_n} is less than 1", "use 1 or more")
        one = r.select_samples(sample)
        chunk = OVERLAY_FRAMES_PER_STEP * every_n            # whole multiples of every_n: same frames as one call
        total = -(-one.num_frames // every_n)
        report = progress_callback(total)
        parts = []
        for start in range(0, one.num_frames, chunk):
            with edit_errors(name, ("opacity", "subject"), default="repr",
                             action="check that R and the subject belong together"):
                parts.append(editing.overlay_landmarks(one.slice_time(start, min(start + chunk, one.num_frames)),
                                                       subject, every_n=every_n, opacity=opacity))
            report(sum(p.shape[0] for p in parts), total)
        return io.NodeOutput(torch.cat(parts).to(comfy.model_management.intermediate_device()))


NODES = [MODAPlotCurves, MODAOverlayLandmarks]
