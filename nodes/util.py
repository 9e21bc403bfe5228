"""Shared helpers of the model and pipeline nodes: the ``models/moda`` folder, loaded networks (cache, device,
precision), progress with cancel, and ComfyUI AUDIO -> 16 kHz mono."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import comfy.model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
import numpy as np
import torch
from comfy.patcher_extension import CallbacksMP

from moda_core.models.audio_encoder import SAMPLE_RATE
from moda_core.preprocess import FACE_LANDMARKER, MODEL_URLS, SELFIE_SEGMENTER, PreprocessError, resample_audio
from moda_core.render_backends import PRECISION_DTYPES
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

from .types import node_error

MODEL_FOLDER = "moda"                        # folder_paths key: <ComfyUI>/models/moda (+ extra_model_paths.yaml)
AVATARS_FOLDER = "avatars"                   # MODA Train Avatar writes models/moda/avatars/<name>/
WEIGHT_SUFFIXES = {".safetensors", ".model", ".pkl", ".pth"}   # .model: SyncNet's; .pkl/.pth: the authors'
_NAMES = {dtype: name for name, dtype in PRECISION_DTYPES.items()}
_HEADER_LIMIT = 64 * 1024 * 1024
log = logging.getLogger("comfyui-moda")


# ---------------------------------------------------------------- models/moda
def register_model_folder() -> None:
    """Register ``models/moda``, listing ``.safetensors`` only; safe to call again. Folders given for ``moda`` in
    extra_model_paths.yaml stay first, so downloads go to the user's choice."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    paths, _ = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, WEIGHT_SUFFIXES)


def model_dir() -> str:
    """The folder downloads go to and missing files are expected in: the first ``moda`` model folder."""
    register_model_folder()
    return folder_paths.get_folder_paths(MODEL_FOLDER)[0]


def weight_files() -> list[str]:
    """Files of the moda model folders, without those in hidden folders (conversion cache, download state) and
    the working files of avatars (``avatars/<name>/train/...``, ``avatars/<name>/sample/...``)."""
    register_model_folder()
    return [name for name in folder_paths.get_filename_list(MODEL_FOLDER)
            if not any(part.startswith(".") for part in name.replace("\\", "/").split("/")[:-1])
            and not is_avatar_work_file(name)]


def is_avatar_work_file(name: str) -> bool:
    """``avatars/<name>/<folder>/...``: a training state or prepared clip inside an avatar, not a result."""
    parts = name.replace("\\", "/").split("/")
    return parts[0] == AVATARS_FOLDER and len(parts) > 3


def find_weight(name: str) -> str | None:
    """Full path of ``name`` in the moda model folders (any extension), or None."""
    register_model_folder()
    return folder_paths.get_full_path(MODEL_FOLDER, name)


def weight_path(display_name: str, input_name: str, name: str) -> str:
    path = find_weight(name)
    if path is None:
        raise node_error(display_name, input_name, f"weight file {name!r} not found in {model_dir()}",
                         "put it there (or download it with MODA Download Weights) and refresh the node list")
    return path


def mediapipe_dir() -> str:
    """The ``moda`` folder holding ``face_landmarker.task`` (else the default one, which errors then name)."""
    found = find_weight(FACE_LANDMARKER)
    return os.path.dirname(found) if found else model_dir()


def safetensors_header(path: str) -> dict:
    """The JSON header of a .safetensors file, read without the tensors ({} when unreadable)."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            return json.loads(handle.read(size)) if size < _HEADER_LIMIT else {}
    except (OSError, ValueError, struct.error):
        return {}


def file_stamp(path: str) -> tuple[int, int]:
    """(mtime in ns, size): what the model cache and the loaders' fingerprints compare."""
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


# ---------------------------------------------------------------- loaded networks
@dataclass(frozen=True)
class LoadedNet:
    """A network as the loader nodes hand it on: loaded on ``offload_device``, run on ``device`` in ``dtype``.

    Shared through the model cache and ComfyUI's output cache, so nodes never change it. ``patcher`` (a ComfyUI
    ModelPatcher, as core wraps CLIP vision) registers it with ComfyUI's model management: :meth:`active` loads
    it onto the compute device with ``load_models_gpu``, and ComfyUI moves it back when memory is needed, on
    "Unload models" / ``/free`` and ``unload_all_models`` (which also drops it from the pack's cache).
    """

    module: torch.nn.Module
    kind: str
    path: str
    device: torch.device
    offload_device: torch.device
    dtype: torch.dtype
    patcher: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.patcher is None:
            patcher = comfy.model_patcher.ModelPatcher(self.module, load_device=self.device,
                                                       offload_device=self.offload_device)
            object.__setattr__(self, "patcher", patcher)

    @property
    def precision(self) -> str:
        return _NAMES[self.dtype]

    @contextlib.contextmanager
    def active(self) -> Iterator[torch.nn.Module]:
        """The module on the compute device (loaded by ComfyUI's model management, which may keep it there for
        the next run), under autocast when its weights are half precision."""
        # full load: these plain modules cannot run partly offloaded (ComfyUI's low-VRAM casting needs comfy.ops)
        comfy.model_management.load_models_gpu([self.patcher], force_full_load=True)
        if any(not _same_device(p.device, self.device) for p in self.module.parameters()):
            self.module.to(self.device)        # --novram loads nothing itself; the net still has to run there
        autocast = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            yield self.module


_CACHE: dict[tuple, LoadedNet] = {}


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    """``cuda:0`` is ``cuda`` (index unset: the current device)."""
    return actual.type == wanted.type and (wanted.index is None or actual.index == wanted.index)


def resolve_precision(precision: str, device: torch.device, kind: str | None = None) -> torch.dtype:
    """``auto``: bf16 where ComfyUI says the device runs it well, else fp16 where it does, else fp32. The renderer
    on a CPU follows the library's rule instead: bf16 with AVX512-BF16/AMX, else fp32."""
    if precision != "auto":
        return PRECISION_DTYPES[precision]
    if kind == "renderer" and device.type == "cpu":
        from moda_core.render_backends import auto_precision
        return PRECISION_DTYPES[auto_precision(device)]
    if comfy.model_management.should_use_bf16(device):
        return torch.bfloat16
    if comfy.model_management.should_use_fp16(device):
        return torch.float16
    return torch.float32


def load_net(path: str, kind: str, precision: str, load: Callable[[str, torch.device, torch.dtype],
                                                                    torch.nn.Module]) -> LoadedNet:
    """``load(path, device, dtype)`` once per (file, mtime, size, devices, dtype); later calls reuse the network.

    An older entry for the same file and kind (a replaced file or another precision) is dropped.
    """
    device = comfy.model_management.get_torch_device()
    offload = comfy.model_management.unet_offload_device()
    dtype = resolve_precision(precision, device, kind)
    real = os.path.realpath(path)
    key = (real, kind, file_stamp(real), str(device), str(offload), str(dtype))
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[:2] == key[:2]]:
            del _CACHE[old]
        net = LoadedNet(load(real, offload, dtype).eval(), kind, real, device, offload, dtype)
        net.patcher.add_callback(CallbacksMP.ON_DETACH, _forget_on_unload(key))
        _CACHE[key] = net
    return _CACHE[key]


def _forget_on_unload(key: tuple) -> Callable[..., None]:
    """ModelPatcher ON_DETACH callback: when ComfyUI unloads the network (/free, unload_all_models, memory
    pressure), the pack's cache lets go of it; the next load reads the file again."""
    def forget(patcher, *_) -> None:
        if key in _CACHE and _CACHE[key].patcher is patcher:
            del _CACHE[key]
            log.info("MODA: %s network %s unloaded by ComfyUI, released from the pack's cache", key[1],
                     os.path.basename(key[0]))
    return forget


# ---------------------------------------------------------------- progress, audio
def progress_callback(total: int) -> Callable[..., None]:
    """``report(done, total)`` (extra leading arguments, e.g. a stage name, are ignored): updates a ProgressBar
    and stops the run when the user cancelled."""
    bar = comfy.utils.ProgressBar(total)

    def report(*args) -> None:
        done, count = args[-2:]
        bar.update_absolute(done, count)
        comfy.model_management.throw_exception_if_processing_interrupted()

    return report


def audio_to_16k(display_name: str, input_name: str, audio) -> np.ndarray:
    """ComfyUI AUDIO ``{"waveform": [B, C, T], "sample_rate"}`` -> float32 mono ``[N]`` at 16 kHz (item 0)."""
    waveform = audio.get("waveform") if isinstance(audio, dict) else None
    rate = audio.get("sample_rate") if isinstance(audio, dict) else None
    if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or not isinstance(rate, int):
        raise node_error(display_name, input_name, "expected AUDIO {'waveform': [batch, channels, samples], "
                         "'sample_rate': int}", "connect a Load Audio (or another AUDIO) output")
    if waveform.shape[0] > 1:
        log.warning("%s: input '%s' holds %d clips; using the first one", display_name, input_name,
                    waveform.shape[0])
    try:
        wave = resample_audio(waveform[0], rate, SAMPLE_RATE)
    except PreprocessError as err:
        raise node_error(display_name, input_name, f"cannot use this audio: {err}",
                         "connect a clip with at least one sample") from err
    if not np.isfinite(wave).all():
        raise node_error(display_name, input_name, "the waveform contains NaN or infinite values",
                         "check the node that made the audio")
    return wave


# ---------------------------------------------------------------- input checks
def expect(display_name: str, input_name: str, value, kind: type, what: str, socket: str):
    """``value`` if it is a ``kind``, else the pack's error naming the node, the input and the socket to connect."""
    if not isinstance(value, kind):
        raise node_error(display_name, input_name, f"expected {what}, got {type(value).__name__}",
                         f"connect a {socket} output")
    return value


def check_repr(display_name: str, value, input_name: str = "repr") -> TalkingRepr:
    return expect(display_name, input_name, value, TalkingRepr, "R (TalkingRepr)", "MODA_REPR")


def check_subject(display_name: str, value, input_name: str = "subject", optional: bool = True) -> Subject | None:
    """``value`` if it is a Subject (or None when ``optional``), else the pack's error."""
    if value is None and optional:
        return None
    return expect(display_name, input_name, value, Subject, "a Subject", "MODA_SUBJECT")


def check_choice(display_name: str, input_name: str, value, options, what: str = "option") -> None:
    if value not in options:
        raise node_error(display_name, input_name, f"unknown {what} {value!r}", f"choose one of {list(options)}")


def check_sample(display_name: str, r: TalkingRepr, sample: int, input_name: str = "sample") -> int:
    if not 0 <= sample < r.num_samples:
        raise node_error(display_name, input_name, f"{sample} is out of range, R has {r.num_samples} sample(s)",
                         f"use 0..{r.num_samples - 1}")
    return sample


def expect_net(display_name: str, input_name: str, value, kind: str, socket: str) -> LoadedNet:
    if not isinstance(value, LoadedNet) or value.kind != kind:
        got = value.kind if isinstance(value, LoadedNet) else type(value).__name__
        raise node_error(display_name, input_name, f"expected a loaded {kind} network, got {got}",
                         f"connect a {socket} output")
    return value


def expect_images(display_name: str, input_name: str, images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise node_error(display_name, input_name, f"expected IMAGE [batch, height, width, 3], got {shape}",
                         "connect an IMAGE output with at least one RGB image")
    return images


def require_mediapipe(display_name: str, input_name: str) -> str:
    """The folder holding both MediaPipe model files, or an error naming the missing file and where it goes."""
    folder = mediapipe_dir()
    for name in (FACE_LANDMARKER, SELFIE_SEGMENTER):
        if not os.path.isfile(os.path.join(folder, name)):
            raise node_error(display_name, input_name, f"MediaPipe model file {name} is missing from {folder}",
                             f"copy it there from the pack's samples/models/ (or download {MODEL_URLS[name]})")
    return folder


def inside(path: str, folder: str) -> bool:
    """True when ``path`` (after resolving links) lies in ``folder``."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath((path, folder)) == folder


def file_fingerprint(resolve: Callable[[], str]):
    """sha256 of the file ``resolve()`` names, as core LoadAudio fingerprints its file; NaN (always re-run,
    execute then reports the problem) when it cannot be resolved or read."""
    try:
        digest = hashlib.sha256()
        with open(resolve(), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except (OSError, ValueError):
        return float("nan")


# ---------------------------------------------------------------- user files: input/ and output/moda/
OUTPUT_SUBFOLDER = "moda"      # the Save nodes write here; the Load nodes list it as "moda/<file> [output]"


def _walk_files(root: str, suffixes: tuple[str, ...], accept: Callable[[str], bool]) -> list[str]:
    found = []
    if not os.path.isdir(root):
        return found
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            full = os.path.join(dirpath, name)
            if name.endswith(suffixes) and accept(full):
                found.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return sorted(found)


def list_user_files(suffixes: tuple[str, ...], accept: Callable[[str], bool]) -> list[str]:
    """Files ending in ``suffixes`` that ``accept(full_path)`` in the input folder (any depth), then those in
    output/moda/ as ``moda/<name> [output]`` (annotated names that ``folder_paths`` resolves)."""
    output_moda = os.path.join(folder_paths.get_output_directory(), OUTPUT_SUBFOLDER)
    return (_walk_files(folder_paths.get_input_directory(), suffixes, accept)
            + [f"{OUTPUT_SUBFOLDER}/{name} [output]" for name in _walk_files(output_moda, suffixes, accept)])


def resolve_user_file(display_name: str, input_name: str, name: str) -> str:
    """Full path of a :func:`list_user_files` choice; refuses names that leave the input and output folders."""
    path = folder_paths.get_annotated_filepath(name)
    if not any(inside(path, root) for root in (folder_paths.get_input_directory(),
                                                folder_paths.get_output_directory())):
        raise node_error(display_name, input_name, f"{name!r} points outside the input and output folders",
                         "pick a file from the list")
    return path


def no_user_file_choice(what: str) -> str:
    """The one option of a user-file combo with nothing to list (an empty list shows 'undefined')."""
    return f"(no {what} in input/ or output/moda/)"


def user_file_options(files: list[str], what: str) -> list[str]:
    return list(files) or [no_user_file_choice(what)]


def validate_user_file(display_name: str, input_name: str, name, suffixes: tuple[str, ...], what: str,
                       made_by: str) -> bool | str:
    """``validate_inputs`` of a :func:`list_user_files` combo: True, or why ``name`` cannot be used. ``what``
    names the kind of file (``is not a <what>``), ``made_by`` how one is written into output/moda/."""
    if name == no_user_file_choice(what):
        return str(node_error(display_name, input_name, f"no {what} in the input folder or output/moda/ yet",
                              f"put one in the input folder (or {made_by}) and refresh"))
    if not isinstance(name, str) or not name.endswith(tuple(s + t for s in suffixes
                                                            for t in ("", " [output]", " [input]"))):
        return str(node_error(display_name, input_name, f"{name!r} is not a {what}", "pick one from the list"))
    try:
        path = resolve_user_file(display_name, input_name, name)
    except ValueError as err:
        return str(err)
    if not os.path.isfile(path):
        return str(node_error(display_name, input_name, f"file {name!r} not found",
                              f"put it in the input folder (or {made_by}) and refresh"))
    return True


def save_target(display_name: str, filename_prefix: str, example: str) -> tuple[str, str, str]:
    """``(output_dir, folder, stem_with_counter)`` for a new file under output/moda/<prefix>: the caller appends
    its suffix to ``os.path.join(folder, stem_with_counter)`` (e.g. ``repr_00001_`` + ``.npz``)."""
    prefix = filename_prefix.strip().replace("\\", "/")
    if not prefix or prefix.startswith("/") or ".." in prefix.split("/"):
        raise node_error(display_name, "filename_prefix", f"{filename_prefix!r} is empty or leaves the output "
                         "folder", f"use a relative name such as '{example}' or 'cathy/{example}'")
    output_dir = folder_paths.get_output_directory()
    folder, stem, counter, _, _ = folder_paths.get_save_image_path(f"{OUTPUT_SUBFOLDER}/{prefix}", output_dir)
    return output_dir, folder, f"{stem}_{counter:05}_"
