"""The paper's metrics as a node: a table of LMD, LMD-v, MA, PSNR, SSIM, TCM, sharpness ratio, landmark follow,
Sync and motion statistics."""
from __future__ import annotations

import contextlib
import os

import torch
from comfy_api.latest import io, ui

from moda_core.metrics import evaluate, load_syncnet
from moda_core.preprocess import FACE_LANDMARKER
from moda_core.projection import FACE_CENTERS
from moda_core.repr import TalkingRepr

from .types import CATEGORY, MODA_REPR, MODA_SUBJECT, node_error
from .util import (
    expect,
    expect_images,
    find_weight,
    load_net,
    mediapipe_dir,
    model_dir,
    progress_callback,
    safetensors_header,
    weight_files,
    weight_path,
)

FORMATS = ("markdown", "text", "json")
NO_SYNCNET = "none"
SYNCNET_SUFFIX = ".model"                   # the published syncnet_v2.model; a .safetensors copy is recognised by keys


def syncnet_files() -> list[str]:
    """SyncNet weights in models/moda: ``*.model`` files and .safetensors holding the lip tower's keys."""
    return [name for name in weight_files() if name.endswith(SYNCNET_SUFFIX)
            or "netcnnlip.0.weight" in safetensors_header(find_weight(name))]


class MODAEvaluate(io.ComfyNode):
    DISPLAY_NAME = "MODA Evaluate"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_Evaluate",
            display_name=cls.DISPLAY_NAME,
            category=CATEGORY,
            description="Compares generated motion/frames with a reference (e.g. the ground truth of a talking "
                        "video) using the paper's metrics, and scores lip sync with SyncNet when its weights are "
                        "given; metrics whose inputs are missing are listed as skipped.",
            is_output_node=True,
            inputs=[
                MODA_REPR.Input("generated", optional=True,
                                tooltip="Generated R. Alone it gives diversity (2+ samples), head-pose range/speed "
                                        "and blink rate."),
                MODA_REPR.Input("reference", optional=True,
                                tooltip="Reference R (same frame count) for LMD, LMD-v and mouth-area IoU."),
                MODA_SUBJECT.Input("subject", optional=True, tooltip="Needed when an R holds offsets."),
                io.Image.Input("generated_frames", optional=True,
                               tooltip="Generated video frames for PSNR, SSIM, TCM and (with audio) Sync."),
                io.Image.Input("reference_frames", optional=True,
                               tooltip="Reference frames, same count and size as generated_frames."),
                io.Audio.Input("audio", optional=True,
                               tooltip="The audio under generated_frames, for Sync (SyncNet lip-sync scores)."),
                io.Combo.Input("format", options=list(FORMATS), default="markdown",
                               tooltip="Layout of the table text."),
                io.Combo.Input("syncnet_weights", options=[NO_SYNCNET, *syncnet_files()], default=NO_SYNCNET,
                               tooltip="SyncNet weights in models/moda (syncnet_v2.model of the syncnet_python "
                                       "project, or a .safetensors copy). 'none' skips the Sync rows."),
                io.Float.Input("fps", default=30.0, min=1.0, max=120.0, step=1.0,
                               tooltip="Frame rate of generated_frames (Sync resamples them to 25 fps)."),
                io.Combo.Input("face_center", options=list(FACE_CENTERS), default="authors",
                               tooltip="Face centre the frames were rendered with (the renderer file records it; "
                                       "quickstart renderers: canonical). Places the generated R's points for "
                                       "the landmark-follow error (MediaPipe re-detects generated_frames; needs "
                                       "generated, subject and face_landmarker.task in models/moda)."),
            ],
            outputs=[io.String.Output("table", display_name="table", tooltip="The metrics table as text.")],
        )

    @classmethod
    def _syncnet(cls, name: str, frames, audio):
        if name == NO_SYNCNET:
            return None
        if frames is None or audio is None:
            missing = "generated_frames" if frames is None else "audio"
            raise node_error(cls.DISPLAY_NAME, missing, "Sync needs the generated frames and their audio",
                             f"connect {missing}, or set syncnet_weights to '{NO_SYNCNET}'")
        if not os.path.isfile(os.path.join(mediapipe_dir(), FACE_LANDMARKER)):
            raise node_error(cls.DISPLAY_NAME, "syncnet_weights", f"Sync finds faces with MediaPipe, but "
                             f"{FACE_LANDMARKER} is missing from {model_dir()}",
                             "copy it there from the pack's samples/models/")
        path = weight_path(cls.DISPLAY_NAME, "syncnet_weights", name)
        try:
            return load_net(path, "syncnet", "fp32", lambda real, device, dtype: load_syncnet(real, device))
        except ValueError as err:
            raise node_error(cls.DISPLAY_NAME, "syncnet_weights", str(err),
                             "choose syncnet_v2.model (or its .safetensors copy)") from err

    @classmethod
    def execute(cls, format: str, syncnet_weights: str, fps: float, face_center: str = "authors",
                generated: TalkingRepr | None = None,
                reference: TalkingRepr | None = None, subject=None, generated_frames: torch.Tensor | None = None,
                reference_frames: torch.Tensor | None = None, audio: dict | None = None) -> io.NodeOutput:
        if generated is None and generated_frames is None:
            raise node_error(cls.DISPLAY_NAME, "generated", "nothing to evaluate",
                             "connect a generated R and/or generated frames")
        frames_alone = generated_frames is not None and generated is None and syncnet_weights == NO_SYNCNET
        if (generated_frames is None and reference_frames is not None) or (reference_frames is None and frames_alone):
            missing = "reference_frames" if reference_frames is None else "generated_frames"
            raise node_error(cls.DISPLAY_NAME, missing, "image metrics need both frame batches",
                             f"connect {missing} or disconnect the other")
        if generated_frames is not None:
            expect_images(cls.DISPLAY_NAME, "generated_frames", generated_frames)
        if audio is not None:
            expect(cls.DISPLAY_NAME, "audio", audio, dict, "AUDIO", "Load Audio (or another AUDIO)")
        loaded = cls._syncnet(syncnet_weights, generated_frames, audio)
        sync = {}
        if audio is not None:
            sync = dict(audio=audio["waveform"][:1], sample_rate=audio["sample_rate"], progress=progress_callback(1))
        with (loaded.active() if loaded is not None else contextlib.nullcontext()) as network:
            report = evaluate(generated, reference, subject=subject, generated_frames=generated_frames,
                              reference_frames=reference_frames, syncnet=network, fps=fps, models_dir=mediapipe_dir(),
                              face_center=face_center, **sync)
        table = {"markdown": report.to_markdown, "text": report.to_text, "json": report.to_json}[format]()
        return io.NodeOutput(table, ui=ui.PreviewText(table))


NODES = [MODAEvaluate]
