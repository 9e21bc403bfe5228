"""Weight files: the only module that reads or writes them.

Our format is one ``.safetensors`` file per network whose metadata holds ``moda_format`` (the version),
``kind`` (see :data:`KINDS`) and ``config`` (JSON of the network's ``config.to_dict()``), so a file rebuilds its
network without outside information. Loading is always strict. The authors' ``.pkl``/``.pth`` state_dicts are
read with ``torch.load(weights_only=True)`` only and turned into our format by :func:`convert_authors_checkpoint`.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from moda_core.fileio import atomic_write

FORMAT_VERSION = "1"

# kind -> (module, config class, model class); imported lazily so one missing model breaks one kind only
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "moda": ("moda_core.models.moda", "MODAConfig", "MODANet"),
    "faco": ("moda_core.models.faco", "FaCoConfig", "FaCoNet"),
    "faco_discriminator": ("moda_core.models.faco", "FaCoConfig", "PointDiscriminator"),
    "renderer": ("moda_core.models.renderer", "RendererConfig", "RenderGenerator"),
    "renderer_discriminator": ("moda_core.models.discriminators", "DiscriminatorConfig", "MultiscaleDiscriminator"),
}
KINDS = tuple(_REGISTRY)

# first key prefix of each network family in the authors' state_dicts
_KIND_KEY_PREFIXES = {
    "moda": ("audio_encoder.", "audio_encoder_head.", "temporal_body."),
    "faco": ("driven_m_encoder.", "driven_e_encoder.", "decoder."),
    "faco_discriminator": ("mesh_encoder.", "classifier."),
    "renderer": ("netG.",),
    "renderer_discriminator": ("netD.",),
}
_LISTED = 5   # how many offending keys an error message names


@dataclass(frozen=True)
class CheckpointInfo:
    """What a file in our format holds, read from its header only."""

    path: Path
    kind: str
    config: object
    num_parameters: int    # parameters of the rebuilt network (BatchNorm statistics and other buffers excluded)
    num_tensors: int       # state_dict entries stored in the file


def _check_kind(kind: str) -> str:
    if kind not in _REGISTRY:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


def model_classes(kind: str) -> tuple[type, type]:
    """(config class, model class) registered for ``kind``."""
    module_name, config_name, model_name = _REGISTRY[_check_kind(kind)]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, model_name)


def build_model(kind: str, config=None, *, device: torch.device | str = "cpu") -> nn.Module:
    """A fresh network of ``kind`` (default config when ``config`` is None), created directly on ``device``.

    ``device="meta"`` builds shapes only, instantly: use it to count parameters or list keys.
    """
    config_class, model_class = model_classes(kind)
    config = config_class() if config is None else config
    if not isinstance(config, config_class):
        raise ValueError(f"config for kind {kind!r} must be a {config_class.__name__}, got {type(config).__name__}")
    with torch.device(device):
        return model_class(config)


def kind_of(model: nn.Module) -> str:
    """The registered kind whose model class is exactly ``type(model)``."""
    for kind in KINDS:
        module_name, _, model_name = _REGISTRY[kind]
        if type(model).__module__ == module_name and type(model).__name__ == model_name:
            return kind
    raise ValueError(f"model of type {type(model).__name__} is not a registered network ({', '.join(KINDS)})")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f", … (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")


def _mismatch_report(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str:
    """Human-readable differences between two {key: shape} maps; '' when they agree."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [f"{k} (file {list(found[k])}, model {list(expected[k])})"
                 for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_key_list(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_key_list(unexpected)}")
    if misshaped:
        parts.append(f"{len(misshaped)} key(s) with the wrong shape: {_key_list(misshaped)}")
    return "; ".join(parts)


def _load_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: Path, kind: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    report = _mismatch_report(expected, {k: tuple(v.shape) for k, v in state_dict.items()})
    if report:
        raise ValueError(f"{source}: the weights do not fit the {kind} network built from the config: {report}")
    model.load_state_dict(state_dict, strict=True)


# ----------------------------------------------------------------------------------------------- our format

def save_model(model: nn.Module, path: str | os.PathLike, kind: str | None = None, *,
               extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s state_dict and config to ``path`` atomically (a temp file renamed into place).

    ``extra_metadata`` adds string entries (e.g. ``render_settings``: how a renderer was trained to be used).
    """
    kind = kind_of(model) if kind is None else _check_kind(kind)
    _, model_class = model_classes(kind)
    if not isinstance(model, model_class):
        raise ValueError(f"kind {kind!r} expects a {model_class.__name__}, got {type(model).__name__}")
    path = Path(path)
    tensors, seen_storages = {}, set()
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        storage = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if storage in seen_storages:    # safetensors refuses tensors that share memory
            tensor = tensor.clone()
        seen_storages.add(storage)
        tensors[key] = tensor
    metadata = {"moda_format": FORMAT_VERSION, "kind": kind, "config": json.dumps(model.config.to_dict())}
    clash = set(extra_metadata or {}) & set(metadata)
    if clash:
        raise ValueError(f"extra_metadata may not replace {sorted(clash)}")
    metadata.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temp_name: str) -> None:
        save_file(tensors, temp_name, metadata=metadata)
        with open(temp_name, "rb") as written:
            os.fsync(written.fileno())

    atomic_write(path, write)
    return path


def _read_header(path: Path) -> tuple[str, object, dict[str, tuple[int, ...]]]:
    """(kind, config, {key: shape}) of a file in our format, without reading the tensor data."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path}: not a readable .safetensors file (truncated or corrupt?): {err}") from None
    version = metadata.get("moda_format")
    if version is None:
        raise ValueError(f"{path}: no 'moda_format' metadata, so not a moda checkpoint; convert the authors' "
                         "weights with `moda convert`")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: moda_format version {version!r} is not supported (this version reads "
                         f"{FORMAT_VERSION!r}); update comfyui-moda or re-convert the weights")
    kind = metadata.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"{path}: unknown network kind {kind!r} in the metadata (known: {', '.join(KINDS)})")
    config_class, _ = model_classes(kind)
    try:
        config = config_class.from_dict(json.loads(metadata.get("config", "")))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid {kind} config in the metadata: {err}") from None
    return kind, config, shapes


def describe_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Kind, config and sizes of a file in our format; checks its keys/shapes against the config."""
    path = Path(path)
    kind, config, shapes = _read_header(path)
    model = build_model(kind, config, device="meta")
    report = _mismatch_report({k: tuple(v.shape) for k, v in model.state_dict().items()}, shapes)
    if report:
        raise ValueError(f"{path}: tensors do not fit its own {kind} config: {report}")
    return CheckpointInfo(path, kind, config, count_parameters(model), len(shapes))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata strings of a weight file in our format (header only)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a readable .safetensors file ({err})") from None


def load_model(path: str | os.PathLike, *, kind: str | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild the network stored at ``path`` (our format), load it strictly, return it in eval mode.

    ``kind`` (optional) must match the file's kind. ``dtype`` casts floating tensors after loading.
    """
    path = Path(path)
    file_kind, config, _ = _read_header(path)
    if kind is not None and _check_kind(kind) != file_kind:
        raise ValueError(f"{path}: holds a {file_kind} network, expected {kind}")
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    try:
        state_dict = load_file(path, device="cpu")
    except SafetensorError as err:
        raise ValueError(f"{path}: could not read the tensors (truncated or corrupt?): {err}") from None
    model = build_model(file_kind, config, device=device)
    _load_strict(model, state_dict, path, file_kind)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


# ------------------------------------------------------------------------------------ authors' checkpoints

_LEGACY_WEIGHT_NORM = re.compile(r"\.weight_[gv]$")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def read_authors_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state_dict in an authors' ``.pkl``/``.pth`` file, with current key names.

    Reads with ``torch.load(weights_only=True)`` (refuses arbitrary pickled objects), strips a leading
    ``module.`` (DataParallel), drops ``_metadata`` and renames legacy weight-norm keys ``weight_g``/``weight_v``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refusal = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
        if refusal is None or refusal.group(1).startswith("Unsupported operand"):   # not a pickle at all
            detail = refusal.group(1) if refusal else _first_line(err)
            raise ValueError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): {detail}") from None
        reason = refusal.group(1).split(". ")[0]
        raise ValueError(f"{path}: refused: the file holds objects other than tensors, which torch.load "
                         f"(weights_only=True) does not unpickle for safety ({reason})") from None
    except Exception as err:                     # any other parse failure (struct.error, EOFError, ...) of a bad file
        raise ValueError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
                         f"{_first_line(err)}") from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a mapping of names to tensors), "
                         f"got {type(loaded).__name__}")
    state_dict = {}
    for key, value in loaded.items():
        if key == "_metadata":
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                             "expected a plain state_dict")
        state_dict[key.removeprefix("module.")] = value
    if any(_LEGACY_WEIGHT_NORM.search(key) for key in state_dict):
        from moda_core.models.audio_encoder import remap_legacy_weight_norm
        state_dict = remap_legacy_weight_norm(state_dict)
    return state_dict


def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The network kind of an authors' state_dict, from its top-level key families."""
    matches = [kind for kind, prefixes in _KIND_KEY_PREFIXES.items()
               if any(key.startswith(prefixes) for key in state_dict)]
    if len(matches) != 1:
        found = sorted({key.split(".")[0] for key in state_dict})
        raise ValueError(f"cannot tell the network kind from the keys (top-level names: {_key_list(found)}); "
                         f"matching kinds: {matches or 'none'}; pass kind= one of {', '.join(KINDS)}")
    return matches[0]


def _config_for(kind: str, state_dict: Mapping[str, torch.Tensor]):
    """The authors' default config for ``kind``, with the sizes that can be read off the weights filled in."""
    config_class, _ = model_classes(kind)
    config = config_class()
    if kind == "moda" and "audio_encoder_head.layers.0.weight" in state_dict:
        config = dataclasses.replace(config, hidden_size=state_dict["audio_encoder_head.layers.0.weight"].shape[0])
    elif kind == "renderer" and "netG.model.model.0.weight" in state_dict:
        first = state_dict["netG.model.model.0.weight"]
        level_pattern = re.compile(r"^netG\.model\.model\.3(?:\.model\.4)*\.model\.0\.weight$")
        inner_levels = sum(1 for key in state_dict if level_pattern.match(key))
        config = dataclasses.replace(config, ngf=first.shape[0], in_channels=first.shape[1],
                                     num_levels=1 + inner_levels if inner_levels else config.num_levels)
    return config


def convert_authors_checkpoint(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
                               kind: str | None = None, config=None) -> Path:
    """Convert an authors' checkpoint to our format; returns the written path (default: ``src`` as .safetensors).

    ``kind`` defaults to :func:`detect_kind`; ``config`` defaults to the authors' config for that kind, with the
    MODA hidden size and the renderer width/depth read off the weights. The weights must load strictly.
    """
    src = Path(src)
    dst = src.with_suffix(".safetensors") if dst is None else Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError(f"output {dst} would overwrite the source checkpoint; pick another output path")
    state_dict = read_authors_checkpoint(src)
    kind = detect_kind(state_dict) if kind is None else _check_kind(kind)
    config = _config_for(kind, state_dict) if config is None else config
    model = build_model(kind, config)
    _load_strict(model, state_dict, src, kind)
    return save_model(model, dst, kind=kind)


# ------------------------------------------------------------------------------------ wav2vec2 encoders

_HF_SKIPPED_PREFIXES = ("lm_head.", "quantizer.", "project_q.", "project_hid.", "dropout_features.")


def _file_kind(path: str) -> str | None:
    try:
        return read_metadata(path).get("kind")
    except ValueError:
        return None


def load_audio_encoder(path: str | os.PathLike, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> nn.Module:
    """The wav2vec2 inside a MODA file, or a Hugging Face wav2vec2 ``.safetensors`` (config.json beside it, else
    the wav2vec2-base-960h architecture MODA uses)."""
    from moda_core.models.audio_encoder import AudioEncoder, AudioEncoderConfig, remap_legacy_weight_norm

    path = str(path)
    if path.endswith(".safetensors") and _file_kind(path) == "moda":
        encoder = load_model(path, kind="moda", device=device, dtype=dtype).audio_encoder
        if encoder is None:
            raise ValueError(f"{os.path.basename(path)} is a MODA file built without an audio encoder")
        return encoder
    config_file = os.path.join(os.path.dirname(path), "config.json")
    fields = set(AudioEncoderConfig.__dataclass_fields__)
    config = AudioEncoderConfig()
    architecture = "wav2vec2-base-960h"
    if os.path.isfile(config_file):
        architecture = "config.json"
        with open(config_file) as handle:
            config = AudioEncoderConfig(**{k: v for k, v in json.load(handle).items() if k in fields})
    state = {key.removeprefix("wav2vec2."): value for key, value in load_file(path).items()
             if not key.startswith(_HF_SKIPPED_PREFIXES)}
    encoder = AudioEncoder(config)
    state = remap_legacy_weight_norm(state)
    state.setdefault("masked_spec_embed", encoder.masked_spec_embed.detach())       # training-only, often left out
    report = _mismatch_report({key: tuple(value.shape) for key, value in encoder.state_dict().items()},
                              {key: tuple(value.shape) for key, value in state.items()})
    if report:
        raise ValueError(f"{os.path.basename(path)} does not fit the wav2vec2 architecture of {architecture}: {report}")
    encoder.load_state_dict(state)
    return encoder.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------- authors' files used directly

AUTHORS_SUFFIXES = (".pkl", ".pth")
CONVERTED_FOLDER = ".moda-converted"       # beside an authors' file: its conversions, named by content hash
_STRING_OPCODES = {"BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"}
_HASHES: dict[tuple[str, int, int], str] = {}


def pickled_strings(path: str | os.PathLike) -> list[str]:
    """The strings in the pickle of a torch zip archive (``*/data.pkl``), read without unpickling anything:
    a state_dict's keys are among them. ValueError when ``path`` is not a torch zip archive."""
    import pickletools
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
            payload = archive.read(members[0]) if members else None
        if payload is not None:
            return [arg for opcode, arg, _ in pickletools.genops(payload) if opcode.name in _STRING_OPCODES]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a torch zip archive (truncated or corrupt?): {err}") from None
    except ValueError as err:
        raise ValueError(f"{path}: unreadable pickle in the archive (truncated or corrupt?): {err}") from None
    raise ValueError(f"{path}: a zip archive without data.pkl, so not a torch checkpoint")


def authors_file_kind(path: str | os.PathLike) -> str | None:
    """The network kind of an authors' ``.pkl``/``.pth`` state_dict from its key names (no tensor is read), or
    None when the keys match no network (e.g. a subject's reference.pth) or the file is not a torch archive."""
    try:
        strings = pickled_strings(path)
    except ValueError:
        return None
    keys = {s.removeprefix("module."): None for s in strings if "." in s}
    try:
        return detect_kind(keys)
    except ValueError:
        return None


def content_hash(path: str | os.PathLike) -> str:
    """sha256 of the file (hex), remembered per (path, mtime, size) for this process."""
    import hashlib

    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def converted_copy(src: str | os.PathLike, kind: str | None = None) -> Path:
    """Our ``.safetensors`` conversion of an authors' checkpoint, made once and cached beside it by content hash
    (``<folder>/.moda-converted/<stem>-<sha256[:16]>.safetensors``); a changed source gets a new conversion and
    the outdated ones of the same stem are removed."""
    src = Path(src)
    digest = content_hash(src)[:16]
    cache = src.parent / CONVERTED_FOLDER
    dst = cache / f"{src.stem}-{digest}.safetensors"
    if dst.is_file():
        return dst
    try:
        cache.mkdir(exist_ok=True)
    except OSError as err:
        raise ValueError(f"{src}: its conversion cannot be kept in {cache} ({err.strerror or err}); convert it once "
                         f"with `moda convert {src} --out FOLDER/NAME.safetensors` into a writable folder and use "
                         f"that file") from None
    try:
        convert_authors_checkpoint(src, dst, kind=kind)
    except BaseException:
        if not any(cache.iterdir()):
            cache.rmdir()
        raise
    for old in cache.glob(f"{src.stem}-*.safetensors"):
        if old != dst and re.fullmatch(rf"{re.escape(src.stem)}-[0-9a-f]{{16}}\.safetensors", old.name):
            old.unlink(missing_ok=True)
    return dst
