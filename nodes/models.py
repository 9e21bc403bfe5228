"""Weights: download from the Hugging Face Hub into models/moda, and the loaders of the four networks.

Everything lives in ``<ComfyUI>/models/moda`` (registered as the ``moda`` model folder, so
``extra_model_paths.yaml`` can add more): ``moda.safetensors``, ``faco.safetensors``, ``renderer.safetensors``
(any names and sub-folders work; each loader lists the files of its kind) and the MediaPipe files
``face_landmarker.task`` and ``selfie_segmenter.tflite`` the subject nodes need.
"""
from __future__ import annotations

import concurrent.futures
import copy
import os
import re

import torch
from comfy_api.latest import io, ui
from safetensors import SafetensorError

from moda_core.checkpoints import load_audio_encoder, load_model
from moda_core.render_settings import RenderSettings
from moda_core.pipeline import WEIGHT_FILES

from .types import CATEGORY, MODA_AUDIO_ENCODER, MODA_FACO, MODA_MODEL, MODA_RENDERER, node_error
from .util import (
    PRECISIONS,
    check_choice,
    file_stamp,
    find_weight,
    load_net,
    model_dir,
    progress_callback,
    register_model_folder,
    safetensors_header,
    weight_files,
    weight_path,
)

register_model_folder()

PRECISION_TOOLTIP = ("Weights and compute precision. auto: bf16 or fp16 where ComfyUI says the GPU runs it well, "
                     "else fp32 (always fp32 on the CPU). bf16/fp16 halve the memory and speed up recent GPUs.")
HUB_PERMILLE = 1000                      # progress steps per downloaded file
_WAV2VEC2_KEY = "feature_extractor.conv_layers.0.conv.weight"


# ---------------------------------------------------------------- file kinds
def file_kind(path: str) -> str | None:
    """``moda``/``faco``/``renderer``/... for our files, ``wav2vec2`` for a Hugging Face wav2vec2 file, else None."""
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
    def execute(cls, weights: str, precision: str) -> io.NodeOutput:
        check_choice(cls.DISPLAY_NAME, "precision", precision, PRECISIONS)
        path = weight_path(cls.DISPLAY_NAME, "weights", weights)
        try:
            return io.NodeOutput(load_net(path, cls.KIND, precision, cls._load))
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


# ---------------------------------------------------------------- Hub download
def _split_names(filenames: str) -> list[str]:
    return [name.strip() for name in re.split(r"[\n,]", filenames) if name.strip()]


class _Transfer:
    """Byte counts of the file being downloaded, written by huggingface_hub's progress bars (any thread)."""

    def __init__(self):
        self.bars: dict[int, tuple[int, int | None]] = {}
        self.cancelled = False

    def fraction(self) -> float:
        done = [n / total for n, total in list(self.bars.values()) if total]
        return min(max(done, default=0.0), 1.0)

    def tqdm_class(self) -> type:
        from huggingface_hub.utils import tqdm

        transfer = self

        class ProgressTqdm(tqdm):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.counted = kwargs.get("initial", 0)
                transfer.bars[id(self)] = (self.counted, self.total)

            def update(self, n=1):
                if transfer.cancelled:
                    raise InterruptedError("download cancelled in ComfyUI")
                self.counted += n or 0
                transfer.bars[id(self)] = (self.counted, self.total)
                return super().update(n)

        return ProgressTqdm


class MODADownloadWeights(io.ComfyNode):
    DISPLAY_NAME = "MODA Download Weights"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_DownloadWeights", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="Downloads weight files from a Hugging Face Hub repo into models/moda (progress shown on "
                        "the node; an interrupted download resumes where it stopped). Files already there and up "
                        "to date are not downloaded again. Offline, copy the files into models/moda by hand.",
            inputs=[
                io.String.Input("repo_id", default="", placeholder="owner/repo",
                                tooltip="Hugging Face repo holding converted weights, e.g. 'owner/moda-weights'. "
                                        "Private or gated repos use the token of `hf auth login` or HF_TOKEN."),
                io.String.Input("filenames", default="\n".join(WEIGHT_FILES.values()), multiline=True,
                                tooltip="Files to fetch, one per line (or comma-separated), as named in the repo. "
                                        "Sub-folders are kept: 'renderer/cathy.safetensors' lands in "
                                        "models/moda/renderer/."),
                io.String.Input("revision", default="main",
                                tooltip="Branch, tag or commit hash of the repo (a commit hash pins the files)."),
            ],
            outputs=[io.String.Output("paths", display_name="paths",
                                      tooltip="Local paths of the files, one per line.")],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, repo_id: str, filenames: str, revision: str) -> bool | str:
        name = cls.DISPLAY_NAME
        if not repo_id.strip() or any(c.isspace() for c in repo_id.strip()):
            return f"{name}: input 'repo_id': {repo_id!r} is not a repo id, enter one such as 'owner/moda-weights'"
        names = _split_names(filenames)
        if not names:
            return f"{name}: input 'filenames': no file named, enter one file name per line"
        for file in names:
            if file.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", file):
                return (f"{name}: input 'filenames': {file!r} leaves models/moda, use the file's path inside the "
                        "repo")
        if not revision.strip():
            return f"{name}: input 'revision': empty, use 'main' or a tag or commit hash"
        return True

    @classmethod
    def fingerprint_inputs(cls, repo_id: str, filenames: str, revision: str):
        """Run again when one of the files went missing from models/moda."""
        return tuple(os.path.isfile(os.path.join(model_dir(), f)) for f in _split_names(filenames))

    @classmethod
    def _download(cls, repo_id: str, filename: str, revision: str, folder: str, report, step: int,
                  steps: int) -> str:
        import huggingface_hub
        from huggingface_hub import errors

        transfer = _Transfer()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = pool.submit(huggingface_hub.hf_hub_download, repo_id=repo_id, filename=filename,
                             revision=revision, local_dir=folder, tqdm_class=transfer.tqdm_class())
        page = f"https://huggingface.co/{repo_id}/blob/{revision}/{filename}"
        try:
            while True:
                try:
                    return future.result(timeout=0.2)
                except concurrent.futures.TimeoutError:
                    report(step * HUB_PERMILLE + int(transfer.fraction() * HUB_PERMILLE), steps * HUB_PERMILLE)
        except errors.LocalEntryNotFoundError as err:
            raise node_error(cls.DISPLAY_NAME, "repo_id", f"cannot reach the Hugging Face Hub to get {filename!r} "
                             f"({err.__cause__ or err})", f"check the connection and run again (an interrupted "
                             f"download resumes), or download {page} by hand and put it in {folder}") from err
        except errors.RepositoryNotFoundError as err:
            raise node_error(cls.DISPLAY_NAME, "repo_id", f"repo {repo_id!r} not found, private or gated",
                             "check the name, or log in with `hf auth login` (or set HF_TOKEN) for private and "
                             f"gated repos; or copy the files into {folder}") from err
        except errors.RevisionNotFoundError as err:
            raise node_error(cls.DISPLAY_NAME, "revision", f"revision {revision!r} not found in {repo_id}",
                             "use 'main' or an existing tag or commit hash") from err
        except errors.EntryNotFoundError as err:
            raise node_error(cls.DISPLAY_NAME, "filenames", f"{filename!r} is not in {repo_id} at {revision}",
                             f"check the file list at https://huggingface.co/{repo_id}/tree/{revision}") from err
        except (errors.HfHubHTTPError, errors.HFValidationError, OSError) as err:
            raise node_error(cls.DISPLAY_NAME, "repo_id", f"downloading {filename!r} from {repo_id} failed: {err}",
                             f"run again to resume, or download {page} by hand and put it in {folder}") from err
        finally:
            transfer.cancelled = True           # a cancelled run stops the transfer at its next chunk
            pool.shutdown(wait=False)

    @classmethod
    def execute(cls, repo_id: str, filenames: str, revision: str) -> io.NodeOutput:
        names, folder = _split_names(filenames), model_dir()
        report = progress_callback(len(names) * HUB_PERMILLE)
        paths = []
        for step, filename in enumerate(names):
            paths.append(cls._download(repo_id.strip(), filename, revision.strip(), folder, report, step, len(names)))
            report((step + 1) * HUB_PERMILLE, len(names) * HUB_PERMILLE)
        return io.NodeOutput("\n".join(paths), ui=ui.PreviewText(
            f"{len(paths)} file(s) in {folder}:\n" + "\n".join(os.path.relpath(p, folder) for p in paths)))


NODES = [MODADownloadWeights, MODALoadMODAModel, MODALoadFaCo, MODALoadRenderer, MODALoadAudioEncoder]
