"""MODA Train Avatar: a talking video -> a renderer trained on that person, in models/moda/avatars/<name>/.

A thin adapter over :func:`moda_core.train.avatar.train_avatar`: progress (and the current losses) on the node,
a preview (held-out ground truth | render) every ``preview_every`` steps, ComfyUI's cancel stops at the next
step with the state saved; queueing it again with the same name resumes.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time

import comfy.model_management
import comfy.utils
import folder_paths
import numpy as np
import torch
from comfy_api.latest import io, ui
from PIL import Image

from moda_core.checkpoints import content_hash
from moda_core.subject import Subject, SubjectError

from .models import MODALoadRenderer, files_of_kind, show_on_node
from .types import CATEGORY, MODA_RENDERER, MODA_SUBJECT, node_error
from .util import (AVATARS_FOLDER, check_choice, load_net, log, model_dir, require_mediapipe,
                   inside)

FROM_SCRATCH = "(none: from scratch)"
NO_TEACHER = "(none: no distillation)"
PRESETS = ("full", "small", "tiny", "fast")               # what `moda train avatar --preset` offers
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PREVIEW_SIZE = 512                                  # longest side of the preview sent to the frontend
TEXT_EVERY_S = 1.0                                  # losses shown on the node at most this often


def avatar_dir(name: str) -> str:
    return os.path.join(model_dir(), AVATARS_FOLDER, name)


def _check_name(display_name: str, name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.match(name) or ".." in name:
        raise node_error(display_name, "name", f"{name!r} cannot be a folder name",
                         "use letters, digits, '_', '-' or '.' (e.g. 'anna' or 'anna_v2'), up to 64 characters")
    return name


class _Cancel:
    """``should_stop`` for the library: ComfyUI's cancel flag, or a cancel the progress hook already consumed
    (the server's hook raises InterruptProcessingException from ``ProgressBar.update_absolute`` and clears it)."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        self.requested = self.requested or comfy.model_management.processing_interrupted()
        return self.requested

    def guard(self, update, *args) -> None:
        """Run a progress update; a cancel raised inside it is remembered, not propagated into the trainer."""
        if self():
            return
        try:
            update(*args)
        except comfy.model_management.InterruptProcessingException:
            self.requested = True


def _video_source(display_name: str, video, folder: str) -> str:
    """A ComfyUI VIDEO -> a file path: its own file when it has one, else written once into ``folder`` under a
    name from its content (so another video never reuses this avatar's prepared clip)."""
    stream = video.get_stream_source() if hasattr(video, "get_stream_source") else None
    if isinstance(stream, (str, os.PathLike)) and os.path.isfile(stream):
        return os.fspath(stream)
    if not hasattr(video, "save_to"):
        raise node_error(display_name, "video", f"expected a VIDEO, got {type(video).__name__}",
                         "connect Load Video (or another VIDEO output)")
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".video.", suffix=".mp4", dir=folder)
    os.close(fd)
    try:
        video.save_to(tmp)
        path = os.path.join(folder, f"video_{content_hash(tmp)[:12]}.mp4")
        os.replace(tmp, path)
        return path
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _text_source(display_name: str, source: str) -> str:
    """``source``: a file or folder in input/ (``talking.mp4``, ``samples/anna``) or a full path."""
    source = source.strip()
    candidates = [folder_paths.get_annotated_filepath(source), os.path.expanduser(source)]
    for path in candidates:
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "sample.json")):
                raise node_error(display_name, "source", f"folder {source!r} holds no sample.json",
                                 "give a talking video or a folder made by `moda prepare video`")
            return path
        if os.path.isfile(path):
            return path
    raise node_error(display_name, "source", f"{source!r} not found in the input folder or as a path",
                     "type a video file name from ComfyUI/input (e.g. talking.mp4), a full path, or a prepared "
                     "sample folder; or connect a video to 'video'")


def _error_input(message: str) -> str:
    """The input a library error is about (for the pack's one-line message)."""
    lowered = message.lower()
    if "teacher" in lowered:
        return "teacher_renderer"
    if "starting renderer" in lowered or "preset" in lowered:
        return "init_renderer"
    if "other settings" in lowered:
        return "name"
    if "perceptual" in lowered or "vgg19" in lowered:
        return "name"
    return "video"


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).to(torch.float32).div_(255.0)[None].to(
        comfy.model_management.intermediate_device())


class MODATrainAvatar(io.ComfyNode):
    DISPLAY_NAME = "MODA Train Avatar"

    @classmethod
    def define_schema(cls) -> io.Schema:
        renderers = [FROM_SCRATCH] + files_of_kind("renderer")
        return io.Schema(
            node_id="MODA_TrainAvatar", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Trains a renderer for the person in a talking video (5 s or more, one face, with sound): "
                        "prepares the clip, trains on its first 80 % for a fixed number of steps (from scratch or "
                        "fine-tuning a renderer), scores the last 20 % (held-out PSNR / SSIM / sharpness) and "
                        "writes models/moda/avatars/<name>/ (renderer.safetensors, subject.safetensors, "
                        "preview.png, report.json). Same video, seed and steps: the same weights. Cancel keeps "
                        "the state; queue again with the same name to continue. Slow on a CPU: use the small "
                        "preset and a few hundred steps there.",
            inputs=[
                io.Video.Input("video", optional=True,
                               tooltip="The talking video (Load Video). Or leave it unconnected and fill 'source'."),
                io.String.Input("source", default="",
                                tooltip="Used when 'video' is not connected: a video file in ComfyUI/input (e.g. "
                                        "talking.mp4), a full path, or a sample folder made by `moda prepare "
                                        "video`."),
                io.String.Input("name", default="my_avatar",
                                tooltip="Avatar name: files go to models/moda/avatars/<name>/. The same name "
                                        "resumes (or re-scores) that avatar; use a new name for another person."),
                io.Int.Input("steps", default=3000, min=1, max=10_000_000, step=100,
                             tooltip="Optimiser steps in total (the budget decides the model; a resumed run counts "
                                     "its earlier steps)."),
                io.Combo.Input("init_renderer", options=renderers, default=FROM_SCRATCH,
                               tooltip="Start from this renderer (fine-tuning: fewer steps for the same quality; "
                                       "its size must be the preset's), or from scratch."),
                io.Combo.Input("preset", options=list(PRESETS), default="full",
                               tooltip="Renderer size: full = 512 px (the paper's; a GPU wants), small = 256 px "
                                       "(CPU), tiny = 64 px (tests only), fast = 512 px compact "
                                       "real-time layout that refines MODA Warp Render's frames (CPU; sharp "
                                       "from the first step; connect Warp Render to MODA Render's warped_frames)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=False,
                             tooltip="Seed of initialisation, shuffling and augmentation."),
                io.Float.Input("minutes", default=0.0, min=0.0, max=100_000.0, step=1.0,
                               tooltip="Optional time cap: stops early (the report says so; queue again to "
                                       "continue). 0: no cap."),
                io.Int.Input("preview_every", default=100, min=1, max=100_000, step=10,
                             tooltip="Steps between previews (held-out frame: ground truth | render) and held-out "
                                     "scores."),
                io.Combo.Input("teacher_renderer", options=[NO_TEACHER] + files_of_kind("renderer"),
                               default=NO_TEACHER, optional=True,
                               tooltip="Distil from this renderer: a trained renderer of the same person (e.g. a "
                                       "full-preset avatar) of the preset's size; the new renderer also learns its "
                                       "output (weight 50, as the colour term). Or no distillation."),
            ],
            outputs=[
                MODA_RENDERER.Output("renderer", display_name="renderer",
                                     tooltip="The trained renderer (as MODA Load Renderer gives it); connect it to "
                                             "MODA Render."),
                MODA_SUBJECT.Output("subject", display_name="subject",
                                    tooltip="The person of the video (reference crop, mean face, pose, torso)."),
                io.Image.Output("preview", display_name="preview",
                                tooltip="[1, S, 2S, 3]: a held-out frame, ground truth | render."),
                io.String.Output("report", display_name="report",
                                 tooltip="Steps, held-out PSNR / SSIM / sharpness ratio, the curve, the files."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, name: str, init_renderer: str, preset: str,
                        teacher_renderer: str = NO_TEACHER) -> bool | str:
        try:
            _check_name(cls.DISPLAY_NAME, name)
            check_choice(cls.DISPLAY_NAME, "preset", preset, PRESETS)
        except ValueError as err:
            return str(err)
        if init_renderer != FROM_SCRATCH and init_renderer not in files_of_kind("renderer"):
            return str(node_error(cls.DISPLAY_NAME, "init_renderer", f"{init_renderer!r} is not a renderer file in "
                                  f"{model_dir()}", f"pick one from the list or {FROM_SCRATCH}"))
        if teacher_renderer != NO_TEACHER and teacher_renderer not in files_of_kind("renderer"):
            return str(node_error(cls.DISPLAY_NAME, "teacher_renderer", f"{teacher_renderer!r} is not a renderer "
                                  f"file in {model_dir()}", f"pick one from the list or {NO_TEACHER}"))
        return True

    @classmethod
    def fingerprint_inputs(cls, name: str, steps: int, **_):
        """Always run until the avatar has its ``steps`` (a cancel or the minutes cap: queueing again continues);
        then the report's figures, so a finished avatar is reused instead of trained again."""
        try:
            with open(os.path.join(avatar_dir(name.strip()), "report.json"), encoding="utf-8") as handle:
                report = json.load(handle)
        except (OSError, ValueError):
            return float("nan")
        if report.get("stopped_by") != "steps" or report.get("steps", 0) < steps:
            return float("nan")
        return report.get("steps"), report.get("seed"), report.get("psnr")

    @classmethod
    def execute(cls, source: str, name: str, steps: int, init_renderer: str, preset: str, seed: int, minutes: float,
                preview_every: int, video=None, teacher_renderer: str = NO_TEACHER) -> io.NodeOutput:
        from moda_core.train.avatar import AvatarConfig, AvatarError, AvatarInterrupted, train_avatar

        display = cls.DISPLAY_NAME
        name = _check_name(display, name)
        check_choice(display, "preset", preset, PRESETS)
        out = avatar_dir(name)
        if video is not None:
            path = _video_source(display, video, out)
        elif source.strip():
            path = _text_source(display, source)
        else:
            raise node_error(display, "video", "no video given", "connect Load Video to 'video', or type a video "
                             "file name or a prepared sample folder in 'source'")
        init = _chosen_renderer(display, "init_renderer", init_renderer, FROM_SCRATCH, out,
                                "queue the same name again to continue training, or pick another renderer")
        teacher = _chosen_renderer(display, "teacher_renderer", teacher_renderer, NO_TEACHER, out,
                                   "pick a renderer trained before (e.g. another avatar of the same person)")
        try:
            config = AvatarConfig(steps=steps, init=init, preset=preset, minutes=minutes or None, seed=seed,
                                  teacher=teacher,
                                  preview_every=preview_every, device=str(comfy.model_management.get_torch_device()),
                                  models_dir=require_mediapipe(display, "video"))
        except ValueError as err:
            field = next((f for f in ("minutes", "preview_every") if f in str(err)), "steps")
            raise node_error(display, field, str(err), "change the value") from err

        cancel, node_id = _Cancel(), cls.hidden.unique_id
        bar = comfy.utils.ProgressBar(steps, node_id=node_id)
        shown = [0.0]
        latest_preview: list[tuple] = [None]

        def prepare_progress(stage: str, done: int, total: int) -> None:
            cancel.guard(bar.update_absolute, done, total)
            if done == 1 or done == total:
                show_on_node(node_id, f"preparing the video: {stage} {done}/{total}")

        def progress(step: int, total: int, losses) -> None:
            cancel.guard(bar.update_absolute, step, total, latest_preview[0])
            latest_preview[0] = None
            now = time.monotonic()
            if now - shown[0] >= TEXT_EVERY_S or step == total:
                shown[0] = now
                show_on_node(node_id, f"step {step}/{total}  " + "  ".join(f"{k} {v:.4g}" for k, v in losses.items()))

        def on_preview(step: int, image: np.ndarray) -> None:
            latest_preview[0] = ("JPEG", Image.fromarray(image), PREVIEW_SIZE)   # sent with the next progress
            cancel.guard(bar.update_absolute, step, steps, latest_preview[0])

        try:
            # ComfyUI executes prompts under torch.inference_mode(): training needs autograd back
            with torch.inference_mode(False), torch.enable_grad():
                result = train_avatar(path, out, config, progress=progress, should_stop=cancel,
                                      on_preview=on_preview, log=lambda line: log.info("%s: %s", display, line),
                                      prepare_progress=prepare_progress)
        except AvatarInterrupted as stopped:
            log.info("%s: %s", display, stopped)
            show_on_node(node_id, f"cancelled at step {stopped.step}; queue again with the name {name!r} to continue")
            comfy.model_management.throw_exception_if_processing_interrupted()
            raise comfy.model_management.InterruptProcessingException() from None
        except (AvatarError, ValueError) as err:
            input_name = "source" if video is None and _error_input(str(err)) == "video" else _error_input(str(err))
            raise ValueError(f"{display}: input '{input_name}': {err}") from err
        finally:
            comfy.model_management.soft_empty_cache()

        renderer = load_net(str(result.renderer), "renderer", "auto", MODALoadRenderer._load)
        try:
            subject = Subject.load(result.subject)
        except SubjectError as err:
            raise node_error(display, "video", f"cannot read the written subject: {err}", "queue it again") from err
        with Image.open(result.preview) as opened:
            preview = _image_tensor(np.array(opened.convert("RGB")))
        report = _report_text(result, out)
        show_on_node(node_id, report.split("\n\n")[0])
        return io.NodeOutput(renderer, subject, preview, report, ui=ui.PreviewText(report))


def _report_text(result, out: str) -> str:
    """The report for the STRING output: the headline figures, then report.md (which has the curve)."""
    r = result.report
    stopped = (f" (stopped early by the {r['minutes']:g}-minute cap; queue again to reach {r['steps_budget']})"
               if r.get("stopped_by") == "minutes" else "")
    head = (f"{os.path.basename(out)}: {r['steps']} steps{stopped}, held-out PSNR {r['psnr']:.2f} dB, "
            f"SSIM {r['ssim']:.4f}, sharpness ratio {r['sharpness']:.3f}\nfiles: {out}")
    md_path = os.path.join(out, "report.md")
    body = open(md_path, encoding="utf-8").read() if os.path.isfile(md_path) else ""
    return head + ("\n\n" + body if body else "")


NODES = [MODATrainAvatar]


def _chosen_renderer(display: str, input_name: str, choice: str, none_label: str, out, own_fix: str):
    """The path of the renderer picked in ``input_name`` (None for ``none_label``); not this avatar's own."""
    if choice == none_label:
        return None
    path = folder_paths.get_full_path("moda", choice)
    if path is None:
        raise node_error(display, input_name, f"{choice!r} not found in {model_dir()}",
                         f"pick one from the list (refresh after adding files) or {none_label}")
    if inside(path, out):
        raise node_error(display, input_name, "it is this avatar's own renderer", own_fix)
    return path
