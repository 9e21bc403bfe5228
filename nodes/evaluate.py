"""The paper's metrics as a node: a table of LMD, LMD-v, MA, PSNR, SSIM, TCM and motion statistics."""
from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from moda_core.metrics import evaluate
from moda_core.repr import TalkingRepr

from .types import CATEGORY, MODA_REPR, MODA_SUBJECT, node_error

FORMATS = ("markdown", "text", "json")


class MODAEvaluate(io.ComfyNode):
    DISPLAY_NAME = "MODA Evaluate"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_Evaluate",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description="Compares generated motion/frames with a reference (e.g. the ground truth of a talking "
                        "video) using the paper's metrics; metrics whose inputs are missing are listed as skipped.",
            is_output_node=True,
            inputs=[
                MODA_REPR.Input("generated", optional=True,
                                tooltip="Generated R. Alone it gives diversity (2+ samples), head-pose range/speed "
                                        "and blink rate."),
                MODA_REPR.Input("reference", optional=True,
                                tooltip="Reference R (same frame count) for LMD, LMD-v and mouth-area IoU."),
                MODA_SUBJECT.Input("subject", optional=True, tooltip="Needed when an R holds offsets."),
                io.Image.Input("generated_frames", optional=True, tooltip="Generated video frames for PSNR, SSIM, TCM."),
                io.Image.Input("reference_frames", optional=True,
                               tooltip="Reference frames, same count and size as generated_frames."),
                io.Combo.Input("format", options=list(FORMATS), default="markdown",
                               tooltip="Layout of the table text."),
            ],
            outputs=[io.String.Output("table", display_name="table", tooltip="The metrics table as text.")],
        )

    @classmethod
    def execute(cls, format: str, generated: TalkingRepr | None = None, reference: TalkingRepr | None = None,
                subject=None, generated_frames: torch.Tensor | None = None,
                reference_frames: torch.Tensor | None = None) -> io.NodeOutput:
        if generated is None and generated_frames is None:
            raise node_error(cls.DISPLAY_NAME, "generated", "nothing to evaluate",
                             "connect a generated R and/or generated frames")
        if (generated_frames is None) != (reference_frames is None):
            missing = "reference_frames" if reference_frames is None else "generated_frames"
            raise node_error(cls.DISPLAY_NAME, missing, "image metrics need both frame batches",
                             f"connect {missing} or disconnect the other")
        report = evaluate(generated, reference, subject=subject, generated_frames=generated_frames,
                          reference_frames=reference_frames)
        table = {"markdown": report.to_markdown, "text": report.to_text, "json": report.to_json}[format]()
        return io.NodeOutput(table, ui=ui.PreviewText(table))


NODES = [MODAEvaluate]
