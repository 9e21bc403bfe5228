"""Weights: download (the authors' release or a Hugging Face repo) into models/moda, and the loaders of the four
networks (which also take the authors' .pkl/.pth checkpoints, converted once and cached beside them).

Everything lives in ``<ComfyUI>/models/moda`` (registered as the ``moda`` model folder, so
``extra_model_paths.yaml`` can add more): ``moda.safetensors``, ``faco.safetensors``, ``renderer.safetensors``
(any names and sub-folders work; each loader lists the files of its kind) and the MediaPipe files
``face_landmarker.task`` and ``selfie_segmenter.tflite`` the subject nodes need.
"""
from __future__ import annotations

import copy
import os
import re

import torch
from comfy_api.latest import io, ui
from safetensors import SafetensorError

from moda_core.checkpoints import (AUTHORS_SUFFIXES, authors_file_kind, converted_copy, load_audio_encoder,
                                   load_model)
from moda_core.motion_check import motion_warning
from moda_core.render_backends import PRECISIONS
from moda_core.render_settings import RenderSettings
from moda_core.pipeline import WEIGHT_FILES

from .types import CATEGORY, MODA_AUDIO_ENCODER, MODA_FACO, MODA_MODEL, MODA_RENDERER, node_error
from .util import (
    check_choice,
    file_stamp,
    find_weight,
    load_net,
    log,
    model_dir,
    progress_callback,
    register_model_folder,
    safetensors_header,
    weight_files,
    weight_path,
)

register_model_folder()

PRECISION_TOOLTIP = ("Weights and compute precision. auto: bf16 or fp16 where ComfyUI says the GPU runs it well, "
                     "else fp32 (on the CPU fp32, except the renderer: bf16 on CPUs with AVX512-BF16 or AMX). bf16/fp16 "
                     "halve the memory and speed up recent GPUs.")
_WAV2VEC2_KEY = "feature_extractor.conv_layers.0.conv.weight"


# ---------------------------------------------------------------- file kinds
def file_kind(path: str) -> str | None:
    """``moda``/``faco``/``renderer``/... for our files and the authors' .pkl/.pth checkpoints (by their keys),
    ``wav2vec2`` for a Hugging Face wav2vec2 file, else None."""
    if path.endswith(AUTHORS_SUFFIXES):
        return authors_file_kind(path)
    header = safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    if "moda_format" in metadata:
        return metadata.get("kind")
    if any(key.endswith(_WAV2VEC2_KEY) for key in header):
        return "wav2vec2"
    return None


def files_of_kind(*kinds: str) -> list[str]:
    return [name for name in weight_files() if file_kind(find_weight(name)) in kinds]


WEIGHTS_HOWTO = ("make them with `moda quickstart --out DIR` (small networks trained on the bundled clip) or `moda "
                 "train`, convert the authors' checkpoints with `moda convert`, or fetch converted files with MODA "
                 "Download Weights; then press R (refresh) in ComfyUI")


def no_weights_choice(what: str) -> str:
    """The one option of a loader with no file of its kind (an empty list shows 'undefined' in the frontend)."""
    return f"(no {what} in models/moda)"


def _combo(name: str, kinds: tuple[str, ...], default: str, tooltip: str, what: str) -> io.Combo.Input:
    options = files_of_kind(*kinds) or [no_weights_choice(what)]
    return io.Combo.Input(name, options=options, default=default if default in options else options[0],
                          tooltip=tooltip)


def validate_weights(display_name: str, input_name: str, name, kinds: tuple[str, ...], what: str) -> bool | str:
    """A loader's ``validate_inputs``: True, or what is missing, where it goes and how to get it (instead of
    ComfyUI's "Value not in list")."""
    path = find_weight(name) if isinstance(name, str) and name.strip() else None
    if path is None:
        have = files_of_kind(*kinds)
        problem = (f"no {what} in {model_dir()}" if not have or name == no_weights_choice(what) else
                   f"{name!r} is not in {model_dir()} (found: {', '.join(have[:5])}{', ...' if len(have) > 5 else ''})")
        return str(node_error(display_name, input_name, problem,
                              f"pick one from the list, or put the file there: {WEIGHTS_HOWTO}" if have else
                              f"put one there: {WEIGHTS_HOWTO}"))
    kind = file_kind(path)
    if kind not in kinds:
        holds = f"a {kind} network" if kind else "no MODA network"
        return str(node_error(display_name, input_name, f"{name!r} holds {holds}, not a {what}",
                              "pick a file of this kind (`moda info FILE` shows what a file holds)"))
    return True


# ---------------------------------------------------------------- loaders
def with_audio_encoder(moda: torch.nn.Module, encoder: torch.nn.Module) -> torch.nn.Module:
    """A shallow copy of MODANet whose ``audio_encoder`` is ``encoder``; ``moda`` itself is left as it is."""
    swapped = copy.copy(moda)
    swapped._modules = {**moda._modules, "audio_encoder": encoder}
    return swapped


class _Loader(io.ComfyNode):
    """A loader node: one weight file of ``KIND`` from models/moda -> a cached :class:`LoadedNet`."""

    DISPLAY_NAME = NODE_ID = KIND = DEFAULT_FILE = DESCRIPTION = WEIGHTS_HELP = WHAT = ""   # WHAT: "MODA model file"
    FILE_KINDS: tuple[str, ...] = ()
    OUTPUT: tuple = ()                     # (socket type, name, display name, tooltip)

    @classmethod
    def define_schema(cls) -> io.Schema:
        socket, name, display_name, tooltip = cls.OUTPUT
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY, description=cls.DESCRIPTION,
            inputs=[_combo("weights", cls.FILE_KINDS, cls.DEFAULT_FILE,
                           f"{cls.WEIGHTS_HELP} in models/moda (listed by the kind stored in the file; refresh "
                           "after adding files). Use MODA Download Weights or copy the file there.", cls.WHAT),
                    io.Combo.Input("precision", options=list(PRECISIONS), default="auto", tooltip=PRECISION_TOOLTIP)],
            outputs=[socket.Output(name, display_name=display_name, tooltip=tooltip)],
        )

    @classmethod
    def _load(cls, path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        return load_model(path, kind=cls.KIND, device=device, dtype=dtype)

    @classmethod
    def _load_any(cls, path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        """An authors' .pkl/.pth is converted once (cached beside it by content hash), then loaded as ours."""
        if path.endswith(AUTHORS_SUFFIXES):
            path = str(converted_copy(path))
        return cls._load(path, device, dtype)

    @classmethod
    def execute(cls, weights: str, precision: str) -> io.NodeOutput:
        check_choice(cls.DISPLAY_NAME, "precision", precision, PRECISIONS)
        path = weight_path(cls.DISPLAY_NAME, "weights", weights)
        try:
            return io.NodeOutput(load_net(path, cls.KIND, precision, cls._load_any))
        except (ValueError, OSError, SafetensorError) as err:
            raise node_error(cls.DISPLAY_NAME, "weights", f"cannot load {weights!r}: {err}", "pick another file "
                             "(`moda info FILE` shows what a file holds) or download it again") from err

    @classmethod
    def validate_inputs(cls, weights: str) -> bool | str:
        """Missing or wrong weights get the pack's message, pinned on ``weights`` only."""
        return validate_weights(cls.DISPLAY_NAME, "weights", weights, cls.FILE_KINDS, cls.WHAT)

    @classmethod
    def fingerprint_inputs(cls, weights: str, precision: str):
        """Load again when the file is replaced (mtime and size; the model cache uses the same stamp)."""
        path = find_weight(weights)
        return (file_stamp(path), precision) if path else float("nan")


class MODALoadMODAModel(_Loader):
    DISPLAY_NAME, NODE_ID = "MODA Load MODA Model", "MODA_LoadMODAModel"
    KIND, FILE_KINDS, DEFAULT_FILE = "moda", ("moda",), WEIGHT_FILES["moda"]
    DESCRIPTION = ("Loads the MODA speech-to-motion network (with its wav2vec2 audio encoder) from models/moda. One "
                   "file serves every subject. Loaded networks are kept between runs.")
    WEIGHTS_HELP, WHAT = "The MODA network file (e.g. moda.safetensors)", "MODA model file"
    OUTPUT = (MODA_MODEL, "model", "model", "The MODA network; connect it to MODA Audio to Motion.")

    @classmethod
    def _load(cls, path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        warning = motion_warning(path)          # weights found flatter than their training clip
        if warning:
            log.warning("%s: %s", cls.DISPLAY_NAME, warning)
        return super()._load(path, device, dtype)


class MODALoadFaCo(_Loader):
    DISPLAY_NAME, NODE_ID = "MODA Load FaCo", "MODA_LoadFaCo"
    KIND, FILE_KINDS, DEFAULT_FILE = "faco", ("faco",), WEIGHT_FILES["faco"]
    DESCRIPTION = ("Loads FaCo-Net, the facial composer that turns R's mouth and eye points into the dense 478-point "
                   "face, from models/moda. Loaded networks are kept between runs.")
    WEIGHTS_HELP, WHAT = "The FaCo-Net file (e.g. faco.safetensors)", "FaCo-Net file"
    OUTPUT = (MODA_FACO, "faco", "faco", "FaCo-Net; connect it to MODA Compose Face.")


class MODALoadRenderer(_Loader):
    DISPLAY_NAME, NODE_ID = "MODA Load Renderer", "MODA_LoadRenderer"
    KIND, FILE_KINDS, DEFAULT_FILE = "renderer", ("renderer",), WEIGHT_FILES["renderer"]
    DESCRIPTION = ("Loads a renderer (U-Net with temporal positional encoding) from models/moda. A renderer is "
                   "trained for one person; other faces come out as that person. Kept between runs.")
    WEIGHTS_HELP = "The renderer file (e.g. renderer.safetensors, or renderer/<person>.safetensors)"
    WHAT = "renderer file"
    OUTPUT = (MODA_RENDERER, "renderer", "renderer", "The renderer; connect it to MODA Render.")

    @classmethod
    def _load(cls, path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        renderer = load_model(path, kind="renderer", device=device, dtype=dtype)
        renderer.render_settings = RenderSettings.of_weight_file(path)   # TPE it was trained with
        return renderer


class MODALoadAudioEncoder(_Loader):
    DISPLAY_NAME, NODE_ID = "MODA Load Audio Encoder", "MODA_LoadAudioEncoder"
    KIND, FILE_KINDS, DEFAULT_FILE = "audio_encoder", ("moda", "wav2vec2"), WEIGHT_FILES["moda"]
    DESCRIPTION = ("Loads a wav2vec2 audio encoder to use instead of the one inside the MODA model (optional input "
                   "of MODA Audio to Motion): the encoder of a MODA file, or a Hugging Face wav2vec2 .safetensors "
                   "(Wav2Vec2Model or ...ForCTC keys; config.json next to it, else the wav2vec2-base-960h "
                   "architecture). Its width must match the MODA model's.")
    WEIGHTS_HELP = "A MODA file or a Hugging Face wav2vec2 model.safetensors"
    WHAT = "MODA or wav2vec2 file"
    OUTPUT = (MODA_AUDIO_ENCODER, "audio_encoder", "audio encoder",
              "The wav2vec2 encoder; connect it to MODA Audio to Motion.")

    @classmethod
    def _load(cls, path: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
        return load_audio_encoder(path, device, dtype)


# ---------------------------------------------------------------- download
SOURCES = {"authors' release (Google Drive)": "authors", "Hugging Face repo": "hf"}
PROGRESS_STEPS = 1000                    # progress steps per file


def _split_names(filenames: str) -> list[str]:
    return [name.strip() for name in re.split(r"[\n,]", filenames) if name.strip()]


def show_on_node(node_id, text: str) -> None:
    """Text under the node in the ComfyUI frontend (what core's Get Image Size does), when run by a server."""
    try:
        from server import PromptServer
    except ImportError:
        return
    if node_id and getattr(PromptServer, "instance", None) is not None:
        PromptServer.instance.send_progress_text(text, node_id)


class MODADownloadWeights(io.ComfyNode):
    DISPLAY_NAME = "MODA Download Weights"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_DownloadWeights", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Gets weights into models/moda, with progress on the node; an interrupted download resumes "
                        "where it stopped. authors' release: the MODA, FaCo and Cathy renderer checkpoints and "
                        "Cathy's subject files from the authors' Google Drive, converted to .safetensors (loaded "
                        "strictly) and Cathy's subject imported. Hugging Face repo: the listed files of any repo. "
                        "The outcome (one line per file) shows on the node; a file that could not be fetched "
                        "fails the node, naming its URL and the folder to put it in, even when a same-name local "
                        "copy exists.",
            inputs=[
                io.Combo.Input("source", options=list(SOURCES), default=next(iter(SOURCES)),
                               tooltip="authors' release: the files of the authors' install.sh (repo_id, filenames "
                                       "and revision are not used). Hugging Face repo: repo_id + filenames."),
                io.String.Input("repo_id", default="", placeholder="owner/repo",
                                tooltip="Hugging Face repo holding converted weights, e.g. 'owner/moda-weights'. "
                                        "Private or gated repos use the token of `hf auth login` or HF_TOKEN."),
                io.String.Input("filenames", default="\n".join(WEIGHT_FILES.values()), multiline=True,
                                tooltip="Hugging Face: files to fetch, one per line (or comma-separated), as named in "
                                        "the repo. Sub-folders are kept: 'renderer/cathy.safetensors' lands in "
                                        "models/moda/renderer/."),
                io.String.Input("revision", default="main",
                                tooltip="Hugging Face: branch, tag or commit hash of the repo (a commit hash pins "
                                        "the files)."),
            ],
            outputs=[io.String.Output("paths", display_name="paths",
                                      tooltip="Local paths of the files, one per line.")],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, filenames: str) -> bool | str:
        """Only what is wrong whatever the source: a file name that leaves models/moda."""
        from moda_core.download import leaves_folder

        for name in _split_names(filenames):
            if leaves_folder(name):
                return str(node_error(cls.DISPLAY_NAME, "filenames", f"{name!r} leaves models/moda",
                                      "use the file's path inside the repo"))
        return True

    @classmethod
    def fingerprint_inputs(cls, source: str, repo_id: str, filenames: str, revision: str):
        """Run again when a file it fetches was removed or changed since (ComfyUI reuses a successful run only
        while the files stay as they were)."""
        from moda_core.download import AUTHORS_TARGETS

        names = list(AUTHORS_TARGETS.values()) if SOURCES.get(source) == "authors" else _split_names(filenames)
        paths = [os.path.join(model_dir(), name) for name in names]
        return tuple(file_stamp(path) if os.path.isfile(path) else None for path in paths)

    @classmethod
    def execute(cls, source: str, repo_id: str, filenames: str, revision: str) -> io.NodeOutput:
        from moda_core.download import DownloadError, check_request, download_weights, select_authors_files

        check_choice(cls.DISPLAY_NAME, "source", source, SOURCES)
        kind = SOURCES[source]
        names = _split_names(filenames) if kind == "hf" else []
        problems = check_request(kind, repo_id, names, revision)
        if problems:
            raise ValueError("\n".join(str(node_error(cls.DISPLAY_NAME, name, problem, "then run again"))
                                        for name, problem in problems))
        folder = model_dir()
        files = names or [drive.progress_name for drive in select_authors_files()]
        report = progress_callback(len(files) * PROGRESS_STEPS)

        def progress(name: str, done: int, total: int | None) -> None:
            step = files.index(name) if name in files else len(files) - 1
            fraction = min(done / total, 1.0) if total else 0.0
            report(step * PROGRESS_STEPS + int(fraction * PROGRESS_STEPS), len(files) * PROGRESS_STEPS)

        try:
            outcome = download_weights(kind, folder, repo_id=repo_id, files=names, revision=revision,
                                       progress=progress)
        except DownloadError as err:
            show_on_node(cls.hidden.unique_id, f"FAILED\n{err}")
            raise ValueError(f"{cls.DISPLAY_NAME}: input '{err.input_name}': {err}") from err
        except OSError as err:                     # the folder itself: read-only, full disk, a file in the way
            show_on_node(cls.hidden.unique_id, f"FAILED\ncannot write in {folder}: {err}")
            raise ValueError(f"{cls.DISPLAY_NAME}: cannot write in {folder} ({err}); make models/moda writable "
                             "(and free some disk space), then run again") from err
        report(len(files) * PROGRESS_STEPS, len(files) * PROGRESS_STEPS)
        text = f"{len(outcome.paths)} file(s) in {folder}:\n{outcome.text()}"
        show_on_node(cls.hidden.unique_id, text)
        return io.NodeOutput("\n".join(str(p) for p in outcome.paths), ui=ui.PreviewText(text))


NODES = [MODADownloadWeights, MODALoadMODAModel, MODALoadFaCo, MODALoadRenderer, MODALoadAudioEncoder]
