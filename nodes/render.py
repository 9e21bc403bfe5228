"""Rendering: condition images + subject -> frames (the TPE renderer), and pasting frames back into the photo."""
from __future__ import annotations

from collections.abc import Callable

import comfy.model_management
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from moda_core.pipeline import PasteBack, reference_at, render_batch
from moda_core.render_settings import RenderSettings
from moda_core.subject import Subject

from .types import CATEGORY, MODA_POINTS, MODA_RENDERER, MODA_SUBJECT, node_error
from .util import expect, expect_images, expect_net, file_stamp, log, progress_callback, require_mediapipe

PASTE_CHUNK = 16                         # frames pasted between progress updates / cancel checks
RENDER_BACKENDS = ("torch", "openvino", "auto")
_CPU_BACKENDS: dict[tuple, object] = {}  # (file, stamp, dtype, backend) -> RendererBackend, the latest only


def _cpu_backend(renderer, backend: str):
    """The OpenVINO (or, for "auto", the faster) backend for a loaded renderer that runs on the CPU; None where
    torch it is (then the node renders with the loaded module as usual). Converted once per file and precision."""
    import copy

    from moda_core.checkpoints import content_hash
    from moda_core.render_backends import TorchBackend, select_backend

    key = (renderer.path, file_stamp(renderer.path), str(renderer.dtype), backend)
    if key not in _CPU_BACKENDS:
        _CPU_BACKENDS.clear()
        model = copy.deepcopy(renderer.module).float().cpu()
        chosen = select_backend(model, "cpu", backend, renderer.precision, weights_hash=content_hash(renderer.path),
                                log=lambda line: log.warning("MODA Render: %s", line))
        _CPU_BACKENDS[key] = None if isinstance(chosen, TorchBackend) else chosen
    return _CPU_BACKENDS[key]


def _fit(conditions: torch.Tensor, size: int) -> torch.Tensor:
    """Condition images ``[B, H, W, 3]`` at the renderer's size (area-averaged, as the library draws them)."""
    if conditions.shape[1] == size:
        return conditions
    resized = F.interpolate(conditions.permute(0, 3, 1, 2), size=(size, size), mode="area")
    return resized.permute(0, 2, 3, 1)


def _map_chunks(frames: torch.Tensor, chunk: int, work: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``work(start, frames[start:start + chunk])`` for each chunk, with progress and cancel; concatenated on the
    intermediate device."""
    count, done = frames.shape[0], []
    report = progress_callback(count)
    for start in range(0, count, chunk):
        done.append(work(start, frames[start:start + chunk]).to(comfy.model_management.intermediate_device()))
        report(min(start + chunk, count), count)
    return torch.cat(done)


class MODARender(io.ComfyNode):
    DISPLAY_NAME = "MODA Render"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_Render", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Renders the talking portrait: each condition image (face mesh + shoulders from MODA Pose "
                        "Transform and Projection) with the subject's reference crop and the frame's temporal "
                        "positional encoding (TPE) goes through the renderer. Output at the renderer's size "
                        "(512x512 for the released ones).",
            inputs=[
                io.Image.Input("conditions", tooltip="Condition images [T, 512, 512, 3] from MODA Pose Transform "
                                                     "and Projection (resized to the renderer's size if needed)."),
                MODA_SUBJECT.Input("subject", tooltip="The person: its reference crop is the renderer's appearance "
                                                      "input."),
                MODA_RENDERER.Input("renderer", tooltip="The renderer from MODA Load Renderer (trained for this "
                                                        "person)."),
                io.Int.Input("start_frame", default=0, min=0, max=10_000_000, step=1,
                             tooltip="TPE index of the first condition image. Keep 0, or the frame number where "
                                     "this piece starts when a long clip is rendered in pieces."),
                io.Int.Input("batch_size", default=8, min=1, max=256, step=1,
                             tooltip="Frames rendered at once: more is faster on a large GPU, fewer needs less "
                                     "memory. The result does not depend on it."),
                io.Combo.Input("backend", options=list(RENDER_BACKENDS), default="torch", optional=True,
                               tooltip="Where the renderer runs when ComfyUI computes on the CPU: torch (the loaded "
                                       "network), openvino (converted once and cached; needs `pip install "
                                       "openvino`, else torch with a log line), auto (OpenVINO when installed and "
                                       "faster in a one-frame probe). On a GPU always torch."),
                io.Image.Input("warped_frames", optional=True, lazy=True,
                               tooltip="For renderers trained on warped references (the 'fast' preset, warp-refine "
                                       "avatars): MODA Warp Render's images for the same points and subject, one "
                                       "per condition image; the renderer refines them. Computed only when the "
                                       "renderer needs them, so a workflow can keep it connected for any renderer."),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="The rendered frames [T, S, S, 3] in 0..1 (S = renderer size).")],
        )

    @classmethod
    def check_lazy_status(cls, renderer=None, warped_frames=None, **_) -> list[str]:
        """Ask for warped_frames only when the renderer refines warped frames."""
        module = getattr(renderer, "module", None)
        needed = getattr(getattr(module, "config", None), "warped_reference", False)
        return ["warped_frames"] if needed and warped_frames is None else []

    @classmethod
    def execute(cls, conditions: torch.Tensor, subject: Subject, renderer, start_frame: int,
                batch_size: int, backend: str = "torch", warped_frames: torch.Tensor | None = None) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        conditions = expect_images(name, "conditions", conditions)
        if conditions.shape[1] != conditions.shape[2]:
            raise node_error(name, "conditions", f"images are {conditions.shape[2]}x{conditions.shape[1]}, the "
                             "renderer needs square ones", "connect MODA Pose Transform and Projection's images")
        expect(name, "subject", subject, Subject, "a Subject", "MODA_SUBJECT")
        renderer = expect_net(name, "renderer", renderer, "renderer", "MODA Load Renderer")
        size = renderer.module.config.image_size
        reference = reference_at(subject, size)
        references = _warped_references(name, renderer.module.config.warped_reference, warped_frames, conditions)
        settings = getattr(renderer.module, "render_settings", RenderSettings())
        if backend not in RENDER_BACKENDS:
            raise node_error(name, "backend", f"unknown option {backend!r}",
                             f"pick one of {', '.join(RENDER_BACKENDS)}")
        cpu = None if backend == "torch" or renderer.device.type != "cpu" else _cpu_backend(renderer, backend)
        def reference_for(start: int, count: int) -> torch.Tensor:
            if references is None:
                return reference
            return _fit(references[start:start + count].to("cpu", torch.float32), size)

        if cpu is not None:
            return io.NodeOutput(_map_chunks(conditions, batch_size, lambda start, batch: render_batch(
                cpu, _fit(batch.to(torch.float32), size), reference_for(start, batch.shape[0]), start_frame + start,
                tpe=settings.tpe)))
        with renderer.active() as net:
            return io.NodeOutput(_map_chunks(conditions, batch_size, lambda start, batch: render_batch(
                net, _fit(batch.to(torch.float32), size), reference_for(start, batch.shape[0]), start_frame + start,
                tpe=settings.tpe, precision=renderer.precision)))


def _warped_references(name: str, needed: bool, warped_frames: torch.Tensor | None,
                       conditions: torch.Tensor) -> torch.Tensor | None:
    """The per-frame references of a warp-refine renderer (checked), or None for a still-reference renderer (which
    ignores warped_frames: ComfyUI may pass them when they are already computed)."""
    if not needed:
        return None
    if warped_frames is None:
        raise node_error(name, "warped_frames", "this renderer refines the warp renderer's frames (it was trained "
                         "with warped references) and none are connected",
                         "add MODA Warp Render on the same points and subject and connect its images here")
    warped_frames = expect_images(name, "warped_frames", warped_frames)
    if warped_frames.shape[0] != conditions.shape[0] or warped_frames.shape[1] != warped_frames.shape[2]:
        raise node_error(name, "warped_frames", f"{warped_frames.shape[0]} frames of "
                         f"{warped_frames.shape[2]}x{warped_frames.shape[1]} for {conditions.shape[0]} condition "
                         "images", "connect MODA Warp Render's images made from the same points (one square frame "
                         "per condition image)")
    return warped_frames


class MODAWarpRender(io.ComfyNode):
    DISPLAY_NAME = "MODA Warp Render"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_WarpRender", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Renders the talking portrait with no renderer weights: the subject's reference crop is "
                        "warped, frame by frame, so its face and shoulders follow the projected points (works for "
                        "any photo, no training). The mouth gets an interior when it opens beyond the photo's and "
                        "the eyelids close over the eyes in blinks.",
            inputs=[
                MODA_POINTS.Input("points", tooltip="Projected points from MODA Pose Transform and Projection "
                                                    "(its 'points' output)."),
                MODA_SUBJECT.Input("subject", tooltip="The person: its reference crop is what gets warped; use the "
                                                      "same subject as for the projection."),
                io.Int.Input("size", default=512, min=64, max=2048, step=2,
                             tooltip="Output frame size in px (the 512 crop is resampled to it)."),
                io.Int.Input("batch_size", default=8, min=1, max=256, step=1,
                             tooltip="Frames warped between progress updates / cancel checks. The result does not "
                                     "depend on it."),
                io.Boolean.Input("still_background", default=True, optional=True,
                                 tooltip="Keep the background still: the warped person is laid over the photo's "
                                         "own background (person mask from the MediaPipe selfie segmenter in "
                                         "models/moda). Off: the whole crop is warped."),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="The warped frames [T, size, size, 3] in 0..1.")],
        )

    @classmethod
    def execute(cls, points: dict, subject: Subject, size: int, batch_size: int,
                still_background: bool = True) -> io.NodeOutput:
        from moda_core.warp_renderer import WarpRenderer, reference_person_mask

        name = cls.DISPLAY_NAME
        if not isinstance(points, dict) or not {"face_xy", "torso_xy"} <= points.keys():
            raise node_error(name, "points", f"expected projected points, got {type(points).__name__}",
                             "connect MODA Pose Transform and Projection's 'points' output")
        expect(name, "subject", subject, Subject, "a Subject", "MODA_SUBJECT")
        face = torch.as_tensor(points["face_xy"]).to("cpu", torch.float64)
        torso = torch.as_tensor(points["torso_xy"]).to("cpu", torch.float64)
        if face.ndim != 3 or face.shape[1:] != (478, 2) or torso.shape != (face.shape[0], 18, 2):
            raise node_error(name, "points", f"face_xy {list(face.shape)} / torso_xy {list(torso.shape)} are not "
                             "[T, 478, 2] / [T, 18, 2]", "connect MODA Pose Transform and Projection's 'points'")
        if not (torch.isfinite(face).all() and torch.isfinite(torso).all()):
            raise node_error(name, "points", "they contain NaN or infinite values",
                             "check R's head-pose curves (scale must be > 0) and edits upstream")
        mask = reference_person_mask(subject, require_mediapipe(name, "still_background")) if still_background \
            else None
        warp = WarpRenderer(subject, size, face_center=points.get("face_center", "authors"), person_mask=mask)
        torso = torso.numpy()
        return io.NodeOutput(_map_chunks(face, batch_size, lambda start, chunk: torch.from_numpy(warp.render_points(
            chunk.numpy(), torso[start:start + chunk.shape[0]]))))


class MODAPasteBack(io.ComfyNode):
    DISPLAY_NAME = "MODA Paste Back"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_PasteBack", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Puts rendered frames back into the subject's source photo (or, for a video subject, its "
                        "reference frame) at the original size: each square frame is warped to where the crop came "
                        "from and blended in with a feathered edge.",
            inputs=[
                io.Image.Input("images", tooltip="Rendered frames [T, S, S, 3] from MODA Render."),
                MODA_SUBJECT.Input("subject", tooltip="The subject the frames were rendered for; it must keep its "
                                                      "source photo (MODA Subject from Image / from Video do)."),
                io.Int.Input("feather", default=24, min=0, max=256, step=1,
                             tooltip="Width in source-crop pixels (512 scale) of the soft edge between the render "
                                     "and the photo."),
            ],
            outputs=[io.Image.Output("images", display_name="images",
                                     tooltip="Frames at the source photo's size [T, H, W, 3] in 0..1.")],
        )

    @classmethod
    def execute(cls, images: torch.Tensor, subject: Subject, feather: int) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        images = expect_images(name, "images", images)
        if images.shape[1] != images.shape[2]:
            raise node_error(name, "images", f"frames are {images.shape[2]}x{images.shape[1]}, not square",
                             "connect MODA Render's images")
        expect(name, "subject", subject, Subject, "a Subject", "MODA_SUBJECT")
        if subject.source_image is None:
            raise node_error(name, "subject", "it keeps no source photo", "build it with MODA Subject from Image "
                             "or MODA Subject from Video (loaded sample subjects have none)")
        paste = PasteBack(subject, images.shape[1], feather)
        return io.NodeOutput(_map_chunks(images, PASTE_CHUNK,
                                         lambda start, chunk: paste(chunk.to("cpu", torch.float32))))


NODES = [MODARender, MODAWarpRender, MODAPasteBack]
