"""Renderer backends behind one interface, and the precision rules they share.

A :class:`RendererBackend` turns renderer input ``[B, C, S, S]`` into float32 frames ``[B, 3, S, S]`` in [-1, 1];
``backend(images, tpe=values)`` takes the images ``[B, 6, S, S]`` and the TPE values ``[B, C - 6]`` instead of
full-size TPE planes (what ``tpe_bias`` renderers read; others get the planes built for them).

- :class:`TorchBackend`: the module itself, fp32/bf16/fp16 weights, channels-last memory; on CUDA optionally
  ``torch.compile`` (mode "reduce-overhead" captures CUDA graphs) with the batch padded to a fixed size.
- :class:`OpenVINOBackend`: the network converted once by ``openvino.convert_model`` and cached as IR in a
  folder keyed by the weights' content hash + config + precision (optional extra ``comfyui-moda[openvino]``).

:func:`select_backend` picks one for a device: ``precision="auto"`` is bf16 on CPUs with AVX512-BF16 or AMX,
bf16 (else fp16) on CUDA, fp32 otherwise; ``backend="auto"`` tries OpenVINO on a CPU and keeps it only when a
short timed probe (cached per machine and model) finds it faster than torch. Every fallback is said in one line.
fp32 torch in the plain layout is what reproduces the authors' frames.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("auto", "torch", "openvino")
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
Log = Callable[[str], None]


class PrecisionError(ValueError):
    """A precision the device cannot run; the message names the device and the precisions it can."""


def _stderr(message: str) -> None:
    print(f"moda: {message}", file=sys.stderr)


def default_cache_dir() -> Path:
    """``$MODA_CACHE_DIR`` or ``~/.cache/moda``: converted networks and backend probe results."""
    return Path(os.environ.get("MODA_CACHE_DIR", Path.home() / ".cache" / "moda")).expanduser()


# ------------------------------------------------------------------------------------------- CPU / device facts
def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS/Windows)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 (bf16 matrix instructions); without them torch runs bf16 on a CPU, slowly."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_fast_fp16() -> bool:
    """AMX-FP16 or AVX512-FP16; without them fp16 convolutions on a CPU are far slower than fp32."""
    return bool(cpu_flags() & {"amx_fp16", "avx512_fp16"})


def cuda_bf16_supported(device: torch.device) -> bool:
    """Native bf16 on this GPU (Ampere and later), not emulated."""
    try:
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:                                   # older torch: no including_emulation
        return torch.cuda.get_device_capability(device)[0] >= 8


def device_precisions(device: torch.device | str) -> dict[str, bool]:
    """{precision: fast} for the precisions ``device`` can run (fp32 always); ``fast`` False means it runs but
    slowly (e.g. bf16 on a CPU without bf16 instructions)."""
    device = torch.device(device)
    if device.type == "cpu":
        return {"fp32": True, "bf16": cpu_has_fast_bf16(), "fp16": cpu_has_fast_fp16()}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        found = {"fp32": True}
        if (major, minor) >= (5, 3):
            found["fp16"] = major >= 7                   # tensor cores from Volta on
        if cuda_bf16_supported(device):
            found["bf16"] = True
        return found
    if device.type == "mps":
        return {"fp32": True, "fp16": True}
    return {"fp32": True}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return f"{device} ({torch.cuda.get_device_name(device)})"
        except (AssertionError, RuntimeError):              # no CUDA here: the name alone
            return str(device)
    if device.type == "cpu":
        return f"cpu ({cpu_name()})"
    return str(device)


def auto_precision(device: torch.device | str) -> str:
    """bf16 on CPUs with AVX512-BF16/AMX, bf16 (else fp16) on CUDA, fp32 otherwise."""
    device = torch.device(device)
    available = device_precisions(device)
    if device.type == "cpu":
        return "bf16" if available["bf16"] else "fp32"
    if device.type == "cuda":
        for precision in ("bf16", "fp16"):
            if available.get(precision):
                return precision
    return "fp32"


def resolve_precision(precision: str, device: torch.device | str, log: Log | None = _stderr) -> str:
    """``precision`` ("auto", "fp32", "bf16", "fp16") for ``device`` -> a concrete one.

    One that the device cannot run raises :class:`PrecisionError`; one that runs but slowly there is allowed
    with a one-line warning to ``log``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return auto_precision(device)
    available = device_precisions(device)
    if precision not in available:
        raise PrecisionError(f"{device_name(device)} cannot run the renderer in {precision}; it runs "
                             f"{', '.join(available)} (or use precision auto)")
    if not available[precision] and log is not None:
        log(f"warning: {device_name(device)} has no fast {precision} instructions; {precision} runs but is slower "
            f"than fp32 here (precision auto picks fp32)")
    return precision


# ------------------------------------------------------------------------------------------- backends
class RendererBackend:
    """``backend(x)``: renderer input ``[B, C, S, S]`` (any device) -> float32 ``[B, 3, S, S]`` in [-1, 1] on
    :attr:`device`; ``backend(images, tpe=values)``: images ``[B, 6, S, S]`` + TPE values ``[B, C - 6]`` (see
    :meth:`~moda_core.models.renderer.RenderGenerator.forward`). ``name`` ("torch", "openvino"), ``precision``
    (what it really runs), ``config`` (the renderer's config), ``device``."""

    name: str = "?"
    precision: str = "fp32"

    def __init__(self, config, device: torch.device):
        self.config = config
        self.device = torch.device(device)

    def __call__(self, x: torch.Tensor, tpe: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, {self.precision}, {self.device})"


class TorchBackend(RendererBackend):
    """The renderer module in ``precision`` weights (prepared in place, as
    :func:`~moda_core.models.renderer.prepare_for_inference`), channels-last unless ``channels_last=False``.

    ``compile=True`` wraps it in ``torch.compile`` (mode "reduce-overhead" on CUDA, which records CUDA graphs);
    every batch is then padded to ``batch_size`` frames so one graph serves the whole clip.
    """

    name = "torch"

    def __init__(self, renderer: torch.nn.Module, precision: str = "fp32", *, channels_last: bool = True,
                 compile: bool = False, batch_size: int | None = None):
        from moda_core.models.renderer import prepare_for_inference

        if precision not in PRECISION_DTYPES:
            raise ValueError(f"TorchBackend precision must be fp32, bf16 or fp16, got {precision!r}")
        super().__init__(renderer.config, next(renderer.parameters()).device)
        self.precision = precision
        self.module = prepare_for_inference(renderer, precision, channels_last=channels_last)
        self.channels_last = channels_last
        self.batch_size = batch_size
        self.compiled = None
        if compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self.compiled = torch.compile(self.module, mode=mode, dynamic=False)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, tpe: torch.Tensor | None = None) -> torch.Tensor:
        from moda_core.models.renderer import render

        x = x.to(self.device)
        tpe = None if tpe is None else tpe.to(self.device)
        if self.compiled is None:
            return render(self.module, x, channels_last=self.channels_last, tpe=tpe)
        count = x.shape[0]
        size = max(self.batch_size or count, count)
        if count < size:                                  # one fixed shape: no recompilation, one CUDA graph
            x = torch.cat([x, x[-1:].expand(size - count, -1, -1, -1)])
            tpe = None if tpe is None else torch.cat([tpe, tpe[-1:].expand(size - count, -1)])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = PRECISION_DTYPES[self.precision]
        y = self.compiled(x.to(dtype)) if tpe is None else self.compiled(x.to(dtype), tpe.to(dtype))
        return y[:count].float().contiguous()


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def state_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes, bytes): a weights key when no file hash is known."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        value = value.detach().float().cpu().contiguous()
        digest.update(f"{key}:{list(value.shape)}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


class OpenVINOBackend(RendererBackend):
    """The renderer converted by ``openvino.convert_model`` (batch dimension dynamic), cached as IR in
    ``cache_dir/openvino/<key>/renderer.xml`` (key: weights hash + config + OpenVINO version + input layout; the
    IR is f32 for every precision, which is a compile hint) and
    compiled for the CPU with ``INFERENCE_PRECISION_HINT``. Where the CPU cannot run the hinted precision,
    OpenVINO runs f32: :attr:`precision` says what actually runs.

    A ``tpe_bias`` renderer is converted with two inputs, images ``[B, 6, S, S]`` and TPE values ``[B, C - 6]``
    (no full-size TPE planes); given planes, it reads them at pixel (0, 0), as the network itself does."""

    name = "openvino"

    def __init__(self, renderer: torch.nn.Module, precision: str = "fp32", *, weights_hash: str | None = None,
                 cache_dir: str | os.PathLike | None = None, log: Log | None = _stderr):
        import openvino as ov

        if precision not in _OPENVINO_HINTS:
            raise ValueError(f"OpenVINOBackend precision must be fp32, bf16 or fp16, got {precision!r}")
        super().__init__(renderer.config, torch.device("cpu"))
        self.requested = precision
        self.ir_path = self.ir_folder(renderer, weights_hash, cache_dir) / "renderer.xml"
        if not self.ir_path.is_file():
            self._convert(renderer, self.ir_path)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(self.ir_path)), "CPU",
                                           {"INFERENCE_PRECISION_HINT": _OPENVINO_HINTS[precision],
                                            "PERFORMANCE_HINT": "LATENCY"})
        runs = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        runs = runs.get_type_name() if hasattr(runs, "get_type_name") else str(runs)
        self.precision = {hint: name for name, hint in _OPENVINO_HINTS.items()}.get(runs, precision)
        if self.precision != precision and log is not None:
            log(f"openvino: this CPU has no {precision} support in OpenVINO; it runs {self.precision}")

    @staticmethod
    def ir_folder(renderer: torch.nn.Module, weights_hash: str | None,
                  cache_dir: str | os.PathLike | None) -> Path:
        import openvino as ov

        weights = weights_hash or state_hash(renderer)
        key = json.dumps({"weights": weights, "config": asdict(renderer.config), "openvino": ov.__version__,
                          "inputs": OpenVINOBackend.input_names(renderer.config)}, sort_keys=True)
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return folder / "openvino" / hashlib.sha256(key.encode()).hexdigest()[:24]

    @staticmethod
    def input_names(config) -> list[str]:
        """The converted network's inputs: the TPE as values beside the images for ``tpe_bias`` renderers."""
        return ["images", "tpe"] if config.tpe_bias else ["x"]

    @staticmethod
    def _convert(renderer: torch.nn.Module, xml: Path) -> None:
        """Convert an fp32 contiguous copy (the module may be prepared in another precision) and write the IR
        atomically: into a temporary folder, renamed into place."""
        import warnings

        import openvino as ov

        from moda_core.fileio import current_umask

        from moda_core.models.renderer import IMAGE_CHANNELS

        cfg = renderer.config
        model = copy.deepcopy(renderer).float().to(memory_format=torch.contiguous_format).eval().cpu()
        size = (cfg.image_size, cfg.image_size)
        if cfg.tpe_bias:
            example = (torch.zeros(1, IMAGE_CHANNELS, *size), torch.zeros(1, cfg.in_channels - IMAGE_CHANNELS))
            shapes = [(-1, IMAGE_CHANNELS, *size), (-1, cfg.in_channels - IMAGE_CHANNELS)]
        else:
            example, shapes = torch.zeros(1, cfg.in_channels, *size), [(-1, cfg.in_channels, *size)]
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")               # tracer warnings about the input-shape checks
            converted = ov.convert_model(model, example_input=example, input=shapes)
        xml.parent.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=xml.parent.parent))
        try:
            ov.save_model(converted, str(scratch / xml.name), compress_to_fp16=False)
            os.chmod(scratch, 0o777 & ~current_umask())        # mkdtemp makes 0700
            try:
                os.replace(scratch, xml.parent)
            except OSError:                               # another process wrote it first
                if not xml.is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def __call__(self, x: torch.Tensor, tpe: torch.Tensor | None = None) -> torch.Tensor:
        from moda_core.models.renderer import IMAGE_CHANNELS

        def array(t: torch.Tensor):
            return t.detach().to("cpu", torch.float32).contiguous().numpy()

        if not self.config.tpe_bias:
            if tpe is not None:                          # this network reads full-size planes
                x = torch.cat([x.cpu(), tpe.cpu().to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
            out = self.compiled(array(x))[0]
        elif tpe is None:                                # planes given: their values at pixel (0, 0)
            out = self.compiled([array(x[:, :IMAGE_CHANNELS]), array(x[:, IMAGE_CHANNELS:, 0, 0])])[0]
        else:
            out = self.compiled([array(x), array(tpe)])[0]
        return torch.from_numpy(out.copy())


# ------------------------------------------------------------------------------------------- selection
def time_backend(backend: RendererBackend, x: torch.Tensor, repeats: int = 1) -> float:
    """Best-of seconds per frame of ``backend(x)`` after one untimed warm-up call."""
    backend(x)
    best = float("inf")
    for _ in range(repeats):
        if backend.device.type == "cuda":
            torch.cuda.synchronize(backend.device)
        start = time.perf_counter()
        backend(x)
        if backend.device.type == "cuda":
            torch.cuda.synchronize(backend.device)
        best = min(best, time.perf_counter() - start)
    return best / x.shape[0]


def _probe_input(config) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, config.in_channels, config.image_size, config.image_size, generator=generator) * 2 - 1


def _probe_file(cache_dir: str | os.PathLike | None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "backend_probe.json"


def _probe_key(weights: str, config, precision: str) -> str:
    return json.dumps({"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "weights": weights, "config": asdict(config), "precision": precision}, sort_keys=True)


def _known_probes(cache_dir: str | os.PathLike | None) -> dict:
    try:
        return json.loads(_probe_file(cache_dir).read_text())
    except (OSError, ValueError):
        return {}


def openvino_faster(torch_backend: TorchBackend, ov_backend: "OpenVINOBackend", weights: str,
                    cache_dir: str | os.PathLike | None = None) -> tuple[bool, float, float]:
    """(OpenVINO faster?, torch s/frame, OpenVINO s/frame) from a one-frame timed probe, cached per machine,
    model and precision in ``cache_dir/backend_probe.json``."""
    from moda_core.fileio import atomic_write

    path = _probe_file(cache_dir)
    key = _probe_key(weights, torch_backend.config, torch_backend.precision)
    known = _known_probes(cache_dir)
    if key not in known:
        x = _probe_input(torch_backend.config)
        known[key] = {"torch": time_backend(torch_backend, x), "openvino": time_backend(ov_backend, x)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(known, indent=1)))
    seconds = known[key]
    return seconds["openvino"] < seconds["torch"], seconds["torch"], seconds["openvino"]


def select_backend(renderer: torch.nn.Module, device: torch.device | str | None = None, backend: str = "auto",
                   precision: str = "auto", *, weights_hash: str | Callable[[], str] | None = None,
                   cache_dir: str | os.PathLike | None = None, channels_last: bool = True, compile: bool = False,
                   batch_size: int | None = None, log: Log | None = _stderr) -> RendererBackend:
    """The renderer backend to use on ``device`` (default: where the renderer is).

    ``backend``: "torch", "openvino" (CPU only; falls back to torch with one line when it is not installed or
    cannot convert the network) or "auto" (OpenVINO on a CPU when installed and faster than torch in a cached
    one-frame probe, else torch). ``precision``: see :func:`resolve_precision`. ``weights_hash``: the weights'
    key for the OpenVINO cache, or a function computing it, called only when OpenVINO is tried. The renderer
    module is moved to ``device`` and prepared in place for the torch backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = torch.device(device) if device is not None else next(renderer.parameters()).device
    if backend == "openvino" and device.type != "cpu":
        raise ValueError(f"backend openvino runs on the CPU only, not on {device_name(device)}; use backend torch "
                         "(or auto) there")
    precision = resolve_precision(precision, device, log)
    say = log or (lambda message: None)
    renderer.to(device)

    def torch_backend() -> TorchBackend:
        return TorchBackend(renderer, precision, channels_last=channels_last, compile=compile,
                            batch_size=batch_size)

    if backend == "torch" or (backend == "auto" and device.type != "cpu"):
        return torch_backend()
    if not openvino_available():
        say("openvino is not installed (pip install comfyui-moda[openvino]); rendering with torch")
        return torch_backend()
    weights = (weights_hash() if callable(weights_hash) else weights_hash) or state_hash(renderer)

    def slower(fallback: TorchBackend, torch_s: float, ov_s: float) -> TorchBackend:
        say(f"openvino is slower than torch on this machine ({ov_s:.3f} vs {torch_s:.3f} s/frame, {precision}); "
            "rendering with torch")
        return fallback

    if backend == "auto":                  # a cached probe that chose torch: no conversion or compile to throw away
        known = _known_probes(cache_dir).get(_probe_key(weights, renderer.config, precision))
        if known is not None and known["openvino"] >= known["torch"]:
            return slower(torch_backend(), known["torch"], known["openvino"])
    try:
        ov_backend = OpenVINOBackend(renderer, precision, weights_hash=weights, cache_dir=cache_dir, log=log)
    except Exception as err:                           # noqa: BLE001 - any conversion failure falls back
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        say(f"openvino could not convert the renderer ({first[:200]}); rendering with torch")
        return torch_backend()
    if backend == "openvino":
        return ov_backend
    fallback = torch_backend()
    faster, torch_s, ov_s = openvino_faster(fallback, ov_backend, weights, cache_dir)
    return ov_backend if faster else slower(fallback, torch_s, ov_s)
