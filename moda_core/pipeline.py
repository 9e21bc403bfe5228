"""Photo + audio -> talking-portrait video, composed of the stage functions below (paper Fig. 2).

1. :func:`predict_motion`   audio (16 kHz) -> wav2vec2 -> MODA samples -> R offsets          (per seed)
2. :func:`smooth_motion`    the authors' temporal Gaussian smoothing                        (moda_core.smoothing)
3. :func:`compose_face`     FaCo-Net: mouth + eyes + subject -> dense 478-point face
4. :func:`condition_batches` pose transform + orthographic projection -> condition images (streamed)
5. :func:`render_batch`     renderer with TPE -> frames
6. :func:`animate`          all of the above, streamed into an H.264 + AAC mp4

Every stage reads and writes :class:`~moda_core.repr.TalkingRepr`, so any of them can be replaced or edited.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from moda_core.drawing import draw_condition_images
from moda_core.geometry import AUTHORS_INFERENCE_FACE_CENTER
from moda_core.models.audio_encoder import SAMPLE_RATE, FrameCount, frames_for_samples, normalise_waveform
from moda_core.projection import project_repr
from moda_core.recorded_noise import RecordedNoise, as_recorded_noise
from moda_core.render_settings import RenderSettings
from moda_core.repr import TalkingRepr
from moda_core.smoothing import SmoothingSigmas, smooth_face, smooth_motion
from moda_core.subject import REFERENCE_SIZE, Subject
from moda_core.streaming import prefetch
from moda_core.tpe import TPEConfig, temporal_positional_encoding, tpe_values

Progress = Callable[[str, int, int], None]       # (stage, done, total); may raise to stop the run
BatchHook = Callable[[int, torch.Tensor, torch.Tensor], None]   # (start frame, conditions, frames), per batch
WEIGHT_FILES = {"moda": "moda.safetensors", "faco": "faco.safetensors", "renderer": "renderer.safetensors"}
RendererLayout = Literal["channels_last", "plain"]


def _channels_last(layout: str) -> bool:
    if layout not in ("channels_last", "plain"):
        raise ValueError(f"renderer_layout must be 'channels_last' or 'plain', got {layout!r}")
    return layout == "channels_last"


class WeightsNotFoundError(FileNotFoundError):
    """A weight file is missing; the message says which, where we looked and how to get it."""


def default_weights_dir() -> Path:
    """``$MODA_WEIGHTS_DIR`` or ``~/.cache/moda/weights``."""
    return Path(os.environ.get("MODA_WEIGHTS_DIR", Path.home() / ".cache" / "moda" / "weights")).expanduser()


def has_weight_file(kind: str, weights_dir: str | os.PathLike | None = None) -> bool:
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    return (folder / WEIGHT_FILES[kind]).is_file() or _other_weight_file(kind, folder) is not None


def _other_weight_file(kind: str, folder: Path) -> Path | None:
    """When ``<kind>.safetensors`` is absent: the one file of ``kind`` among the authors' .pkl/.pth in ``folder``
    (their assets/ckpts layout) or, for the renderer, the one file in ``folder/renderer/`` (``moda download``'s
    layout). Several candidates: an error naming them."""
    from moda_core.checkpoints import AUTHORS_SUFFIXES, authors_file_kind, read_metadata

    def kind_of(path: Path) -> str | None:
        if path.suffix in AUTHORS_SUFFIXES:
            return authors_file_kind(path)
        try:
            return read_metadata(path).get("kind")
        except ValueError:
            return None

    places = [folder] + ([folder / "renderer"] if kind == "renderer" else [])
    found = [path for place in places if place.is_dir() for path in sorted(place.iterdir())
             if path.is_file() and path.suffix in AUTHORS_SUFFIXES + (".safetensors",)
             and (path.suffix != ".safetensors" or place != folder) and kind_of(path) == kind]
    if len(found) > 1:
        raise WeightsNotFoundError(f"several {kind} files in {folder} ({', '.join(str(p) for p in found)}) and "
                                   f"no {WEIGHT_FILES[kind]}: copy or link the one to use to "
                                   f"{folder / WEIGHT_FILES[kind]}")
    return found[0] if found else None


def find_weight_file(kind: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """``<weights_dir>/<kind>.safetensors``, else the one file of that kind among the authors' .pkl/.pth there
    (converted once, cached beside it by content hash) or, for the renderer, in ``renderer/``."""
    folder = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = folder / WEIGHT_FILES[kind]
    if path.is_file():
        return path
    other = _other_weight_file(kind, folder)
    if other is not None:
        from moda_core.checkpoints import AUTHORS_SUFFIXES, converted_copy
        return converted_copy(other, kind=kind) if other.suffix in AUTHORS_SUFFIXES else other
    raise WeightsNotFoundError(
        f"missing {kind} weights: {path} does not exist. Either train them with `moda quickstart --out {folder}` "
        f"(or `moda train`), or convert the authors' released checkpoints (MODA.pkl, FaCo.pkl, renderer/<name>.pth "
        f"from the MODA repository's install.sh Google-Drive links) with `moda download --source authors --out "
        f"{folder}` (or put the .pkl/.pth files there as they are, or convert one with `moda convert FILE --out "
        f"{path}`), or download converted files from a Hugging "
        f"Face repo with `moda download --source hf --repo REPO_ID {WEIGHT_FILES[kind]} --out {folder}` (or the "
        f"MODA Download Weights node in ComfyUI).")


@dataclass
class MODAModels:
    """The three networks of the pipeline (MODA includes its wav2vec2 audio encoder)."""

    moda: torch.nn.Module
    faco: torch.nn.Module
    renderer: torch.nn.Module | None                  # None: only the warp renderer can render
    render_settings: RenderSettings = field(default_factory=RenderSettings)   # TPE + face centre it expects
    renderer_backend: object = None                   # RendererBackend that runs the renderer (render_backends)

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
             precision: str = "fp32", renderer: bool | None = True,
             renderer_layout: RendererLayout = "channels_last", backend: str = "torch",
             cache_dir: str | os.PathLike | None = None) -> "MODAModels":
        """Load the weight files; the renderer runs on ``backend`` ("torch", "openvino", "auto": see
        :func:`moda_core.render_backends.select_backend`) in ``precision`` ("auto": bf16 where the device has
        fast bf16, else fp32 on a CPU) and, with torch, ``renderer_layout`` memory.

        ``renderer``: True needs the renderer file, False skips it (warp rendering), None loads it if present.
        ``renderer_layout``: "channels_last" (faster on CPU) or "plain" (contiguous, like the authors; on the
        parity renderer plain stays within 2 levels of their frames, channels-last moves a few values up to 8).
        """
        from moda_core.checkpoints import content_hash, load_model
        from moda_core.render_backends import select_backend

        kinds = [k for k in WEIGHT_FILES if k != "renderer"]
        if renderer or (renderer is None and has_weight_file("renderer", weights_dir)):
            kinds.append("renderer")
        paths = {kind: find_weight_file(kind, weights_dir) for kind in kinds}
        nets = {kind: load_model(path, kind=kind, device=device) for kind, path in paths.items()}
        if "renderer" not in nets:
            return cls(**nets, renderer=None)
        models = cls(**nets, render_settings=RenderSettings.of_weight_file(paths["renderer"]))
        models.renderer_backend = select_backend(models.renderer, device, backend, precision,
                                                 weights_hash=lambda: content_hash(paths["renderer"]),
                                                 cache_dir=cache_dir,
                                                 channels_last=_channels_last(renderer_layout))
        return models

    @property
    def device(self) -> torch.device:
        return next((self.renderer or self.moda).parameters()).device

    @property
    def render_size(self) -> int:
        return self.renderer.config.image_size if self.renderer is not None else REFERENCE_SIZE


@dataclass(frozen=True)
class AnimateOptions:
    """Options of :func:`animate`; defaults reproduce the authors' inference except the exact frame count and
    rounded 8-bit frames (theirs: ``frame_count="authors"``, ``quantize="truncate"``)."""

    fps: float = 30.0
    seed: int = 0
    num_samples: int = 1
    sample: int = 0                                  # which sample goes to the video
    smoothing: bool = True
    sigmas: SmoothingSigmas = field(default_factory=SmoothingSigmas)
    window_blend: Literal["average", "crossfade"] = "average"
    face_center: tuple[float, float, float] | None = None   # None: as the renderer was trained (RenderSettings)
    drawing_style: Literal["authors", "antialiased"] = "authors"
    tpe: TPEConfig | None = None                            # None: as the renderer was trained
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"   # used where the models hold no renderer_backend
    batch_size: int = 8
    output_size: int | None = None                   # None: the renderer's size
    paste_back: bool = False
    paste_feather: int = 24                          # px of soft edge on the pasted crop
    layout: Literal["render", "debug"] = "render"    # debug: [render | reference | condition]
    noise: RecordedNoise | None = None               # recorded VAE draw replayed instead of seeded sampling
    renderer: Literal["neural", "warp"] = "neural"   # warp: any photo, no renderer weights (moda_core.warp_renderer)
    models_dir: str | Path | None = None             # warp: MediaPipe models folder -> still background (None: off)
    frame_count: FrameCount = "exact"                # "authors": their float64 count and multi-window merge
    quantize: Literal["round", "truncate"] = "round"  # 8-bit output; "truncate" is the authors' astype(uint8)
    overlap_stages: bool = True      # warp/drawing of the next batch and H.264 encoding run in worker threads
    #                                  while the renderer runs (same frames as without)

    def __post_init__(self):
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.num_samples < 1 or not 0 <= self.sample < self.num_samples:
            raise ValueError(f"need num_samples >= 1 and 0 <= sample < num_samples, got {self.num_samples}, "
                             f"{self.sample}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.layout not in ("render", "debug"):
            raise ValueError(f"layout must be 'render' or 'debug', got {self.layout!r}")
        if self.paste_back and self.layout == "debug":
            raise ValueError("paste_back and the debug layout cannot be combined")
        if self.output_size is not None and (self.output_size < 16 or self.output_size % 2):
            raise ValueError(f"output_size must be an even number >= 16, got {self.output_size}")
        if self.renderer not in ("neural", "warp"):
            raise ValueError(f"renderer must be 'neural' or 'warp', got {self.renderer!r}")
        if self.frame_count not in ("exact", "authors"):
            raise ValueError(f"frame_count must be 'exact' or 'authors', got {self.frame_count!r}")
        if self.quantize not in ("round", "truncate"):
            raise ValueError(f"quantize must be 'round' or 'truncate', got {self.quantize!r}")


# ----------------------------------------------------------------------------------------- 1. motion
@torch.no_grad()
def predict_motion(moda: torch.nn.Module, waveform: np.ndarray | torch.Tensor, subject: Subject, *,
                   fps: float = 30.0, seed: int = 0, num_samples: int = 1,
                   window_blend: str = "average", progress: Progress | None = None,
                   frame_count: FrameCount = "exact",
                   noise: RecordedNoise | Sequence[torch.Tensor] | str | os.PathLike | None = None) -> TalkingRepr:
    """16 kHz mono waveform -> R offsets with ``num_samples`` samples (seeds ``seed``, ``seed + 1``, ...).

    ``frame_count``: "exact" (``floor(N * fps / 16000)`` frames) or "authors" (their float64 count and window
    merge, see :func:`moda_core.models.moda.motion_windows`).
    ``noise``: a recorded VAE draw (:mod:`moda_core.recorded_noise`: per 20 s window ``[num_samples, frames,
    latent]``, or a noise file) replayed instead of seeded sampling; ``seed`` is then unused.
    """
    from moda_core.models.moda import generate_motion, motion_windows

    wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32)).reshape(-1)
    if frames_for_samples(wave.numel(), fps) < 1:
        raise ValueError(f"audio is {wave.numel() / SAMPLE_RATE:.3f} s long, shorter than one frame at {fps} fps")
    device = next(moda.parameters()).device
    inputs = normalise_waveform(wave).to(device)
    style = subject.style_vector().to(device)
    if noise is not None:
        noise = as_recorded_noise(noise)
        windows, _ = motion_windows(wave.numel(), fps, frame_count=frame_count)
        noise.check(num_samples, moda.config.hidden_size, [window.frames for window in windows])
    samples = []
    for index in range(num_samples):
        generator = torch.Generator().manual_seed(seed + index)

        def report(done: int, windows: int, index: int = index) -> None:
            if progress:                                   # per 20 s window, so long audio can be cancelled
                progress("motion", index * windows + done, num_samples * windows)

        samples.append(generate_motion(moda, inputs, style, fps=fps, generator=generator, blend=window_blend,
                                       frame_count=frame_count, on_window=report,
                                       noise_fn=None if noise is None else noise.window_noise(index)))

    meta = ({"noise": Path(noise.source).name} if noise is not None else
            {"seeds": ",".join(str(seed + i) for i in range(num_samples))})
    return motion_repr(samples, fps, subject=subject.name, meta=meta)


def motion_repr(samples: list, fps: float, **fields) -> TalkingRepr:
    """MODA outputs (one per sample; ``lip``/``eye``/``head``/``torso`` of one clip) -> R offsets on the CPU."""
    def stack(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([getattr(m, name).float().cpu() for m in samples]).reshape(len(samples), -1, *shape)

    return TalkingRepr(mouth=stack("lip", (40, 3)), eyes=stack("eye", (60, 3)), head_pose=stack("head", (7,)),
                       torso=stack("torso", (18, 3)), fps=fps, is_offset=True, **fields)


# ----------------------------------------------------------------------------------------- 3. face
@torch.no_grad()
def compose_face(faco: torch.nn.Module, r: TalkingRepr, subject: Subject, *, smoothing: bool = True,
                 sigmas: SmoothingSigmas = SmoothingSigmas()) -> TalkingRepr:
    """FaCo-Net: R's mouth + eyes -> dense face offsets for all 478 points (then non-semantic smoothing)."""
    offsets = r.to_offsets(subject)
    device = next(faco.parameters()).device
    lip = offsets.mouth.flatten(2).to(device)
    eye = offsets.eyes.flatten(2).to(device)
    style = subject.style_vector().to(device).expand(r.num_samples, -1)
    face = faco(lip, eye, style).reshape(r.num_samples, r.num_frames, 478, 3).float().cpu()
    composed = offsets.replace(face=face)
    if smoothing:
        composed = smooth_face(composed, sigmas)
    return composed if r.is_offset else composed.to_absolute(subject)


# ----------------------------------------------------------------------------------------- 4. projection
def condition_batches(r: TalkingRepr, subject: Subject, *, sample: int = 0, batch_size: int = 8,
                      face_center=AUTHORS_INFERENCE_FACE_CENTER, style: str = "authors",
                      size: int = 512) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start_frame, condition images [B, size, size, 3] float 0..1)`` batch by batch."""
    face, torso = project_repr(r, subject, sample=sample, face_center=face_center)
    for start in range(0, r.num_frames, batch_size):
        stop = min(start + batch_size, r.num_frames)
        yield start, draw_condition_images(face[start:stop, :, :2], torso[start:stop, :, :2], size=size,
                                           style=style)


# ----------------------------------------------------------------------------------------- 5. render
def _to_signed(images: torch.Tensor) -> torch.Tensor:
    """[B, H, W, 3] 0..1 (or uint8) -> [B, 3, H, W] float32 in -1..1 (the authors' im2tensor).

    Images holding 8-bit levels (uint8, or floats k/255 as drawn and loaded) are scaled exactly as the authors
    do, (k/255 - 0.5)/0.5 in float64 and then float32 (bit for bit the float32 (2k - 255)/255 computed here);
    other float images as 2x - 1.
    """
    return _signed_nhwc(images).permute(0, 3, 1, 2)


_SIGNED_LEVELS = ((torch.arange(256, dtype=torch.float32) * 2.0 - 255.0) / 255.0).numpy()   # level k -> (2k-255)/255
_LEVEL_PROBE_STRIDE = 997          # a float image is first probed at every 997th value (off-level: no full check)


def _off_levels(values: np.ndarray) -> bool:
    """True when some value of a float32 0..1 array is more than 1e-3 of an 8-bit level off k/255."""
    levels = values * np.float32(255.0)
    return bool(np.abs(levels - np.rint(levels)).max() > 1e-3)


def _signed_nhwc(images: torch.Tensor) -> torch.Tensor:
    """:func:`_to_signed` in the images' own layout: [B, H, W, 3] -> C-contiguous float32 [B, H, W, 3] in -1..1.

    8-bit levels go through a 256-entry table (cv2.LUT), other floats through 2x - 1 in numpy; the values are
    those of the authors' im2tensor (see :func:`_to_signed`)."""
    import cv2

    array = images.detach().cpu()
    array = (array if array.dtype == torch.uint8 else array.to(torch.float32)).contiguous().numpy()
    if array.dtype != np.uint8:
        flat = array.reshape(-1)
        if _off_levels(flat[::_LEVEL_PROBE_STRIDE]) or _off_levels(flat):
            signed = np.multiply(array, np.float32(2.0))
            signed -= np.float32(1.0)
            return torch.from_numpy(signed)
        rounded = np.rint(array * np.float32(255.0))
        if not (rounded.min() >= 0 and rounded.max() <= 255):      # levels outside 0..255 (or NaN): the formula
            return torch.from_numpy(rounded).mul_(2.0).sub_(255.0).div_(255.0)
        array = rounded.astype(np.uint8)
    rows = array.reshape(-1, array.shape[-2] * array.shape[-1]) if array.ndim > 1 else array.reshape(1, -1)
    return torch.from_numpy(cv2.LUT(rows, _SIGNED_LEVELS).reshape(array.shape))


@torch.no_grad()
def render_batch(renderer: torch.nn.Module, conditions: torch.Tensor, reference: torch.Tensor, start_frame: int, *,
                 tpe: TPEConfig = TPEConfig(), precision: str = "fp32") -> torch.Tensor:
    """Condition images ``[B, S, S, 3]`` + reference ``[S, S, 3]`` (0..1) -> frames ``[B, S, S, 3]`` in 0..1.

    ``S`` must be the renderer's image size; frame ``start_frame + i`` gets TPE index ``start_frame + i``.
    ``reference`` may also be one image per frame ``[B, S, S, 3]`` (the warp renderer's frames, for renderers
    with ``warped_reference``). Images may be uint8 (0..255) as well.
    ``renderer``: the module (run in ``precision``; "auto" as :func:`moda_core.render_backends.auto_precision`)
    or a :class:`~moda_core.render_backends.RendererBackend` (runs in its own precision). A ``tpe_bias`` renderer
    gets the TPE as values ``[B, C]``, no full-size planes.
    """
    from moda_core.models.renderer import render
    from moda_core.render_backends import RendererBackend, auto_precision

    backend = renderer if isinstance(renderer, RendererBackend) else None
    device = backend.device if backend is not None else next(renderer.parameters()).device
    config = renderer.config
    batch, size = conditions.shape[0], conditions.shape[1]
    if reference.dim() == 3:
        reference = _signed_nhwc(reference[None]).expand(batch, -1, -1, -1)      # converted once
    elif reference.shape[0] == batch:
        reference = _signed_nhwc(reference)
    else:
        raise ValueError(f"render_batch: {reference.shape[0]} reference images for {batch} condition images; give "
                         "one reference [S, S, 3] or one per frame [B, S, S, 3]")
    frames = torch.arange(start_frame, start_frame + batch)
    if config.tpe_bias:                     # images in channels-last memory (what space-to-depth reads) + TPE values
        x, values = torch.cat([_signed_nhwc(conditions), reference], dim=3).permute(0, 3, 1, 2), tpe_values(frames, tpe)
        if config.space_to_depth == 1:
            x = x.contiguous()
        x, values = x.to(device), values.to(device)
    else:
        planes = temporal_positional_encoding(frames, size, size, tpe)
        x, values = torch.cat([_to_signed(conditions), reference.permute(0, 3, 1, 2), planes], dim=1).to(device), None
    if backend is not None:
        y = backend(x) if values is None else backend(x, tpe=values)
    else:
        y = render(renderer, x, precision=auto_precision(device) if precision == "auto" else precision, tpe=values)
    return y.clamp(-1, 1).add_(1.0).div_(2.0).permute(0, 2, 3, 1).cpu()


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[1] == size:
        return images
    return F.interpolate(images.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)


def reference_at(subject: Subject, size: int) -> torch.Tensor:
    """The subject's reference image as float ``[size, size, 3]`` in 0..1 (area-resized like the authors)."""
    import cv2

    if subject.reference_image.shape[0] == size:
        return subject.reference_float()
    image = cv2.resize(subject.reference_image.numpy(), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image).to(torch.float32) / 255.0


def reference_warp(subject: Subject, size: int, face_center: Sequence[float] | str,
                   models_dir: str | os.PathLike | None = None):
    """The :class:`~moda_core.warp_renderer.WarpRenderer` that makes a ``warped_reference`` renderer's reference
    channels, in training and at inference alike: ``subject``'s reference crop at ``size`` px over its still
    background (person mask from the selfie segmenter in ``models_dir``, default the MediaPipe models folder),
    with the painted mouth interior (a subject file keeps no video frames to take one from)."""
    from moda_core.warp_renderer import WarpRenderer, reference_person_mask

    return WarpRenderer(subject, size, face_center=face_center,
                        person_mask=reference_person_mask(subject, models_dir))


class PasteBack:
    """Warps rendered crops ``[B, S, S, 3]`` back into the subject's source photo with a feathered edge.

    The mask, its warp and the photo are prepared once; each call only warps and blends the frames.
    """

    def __init__(self, subject: Subject, size: int, feather: int = 24):
        import cv2

        if subject.source_image is None:
            raise ValueError("paste-back needs the subject's source photo; build the subject from a photo "
                             "(moda prepare photo) so it keeps it")
        self.width, self.height = subject.source_size
        scale = 512.0 / size                                   # crop_to_source is in 512-px crop coordinates
        self.matrix = subject.crop_to_source.numpy().copy()
        self.matrix[:, :2] *= scale
        mask = np.zeros((size, size), np.float32)
        inset = max(1, int(round(feather / scale)))
        mask[inset:-inset, inset:-inset] = 1.0
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(inset / 2.0, 0.5))
        self.mask = cv2.warpAffine(mask, self.matrix, (self.width, self.height), flags=cv2.INTER_LINEAR)[..., None]
        self.background = subject.source_image.numpy().astype(np.float32) / 255.0 * (1.0 - self.mask)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        import cv2

        out = np.empty((frames.shape[0], self.height, self.width, 3), np.float32)
        for i, frame in enumerate(frames.numpy()):
            warped = cv2.warpAffine(frame, self.matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            out[i] = warped * self.mask + self.background
        return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------- 6. all together
@dataclass
class AnimateResult:
    path: Path | None
    repr: TalkingRepr
    frames: int
    seconds: float
    fps: float


def motion_pipeline(models: MODAModels, waveform: np.ndarray, subject: Subject, options: AnimateOptions,
                    progress: Progress | None = None) -> TalkingRepr:
    """Stages 1-3: audio -> smoothed R offsets with the composed face."""
    r = predict_motion(models.moda, waveform, subject, fps=options.fps, seed=options.seed,
                       num_samples=options.num_samples, window_blend=options.window_blend, progress=progress,
                       noise=options.noise, frame_count=options.frame_count)
    if options.smoothing:
        r = smooth_motion(r, options.sigmas)
    return compose_face(models.faco, r, subject, smoothing=options.smoothing, sigmas=options.sigmas)


def render_stream(models_or_renderer, r: TalkingRepr, subject: Subject, options: AnimateOptions,
                  progress: Progress | None = None, on_batch: BatchHook | None = None) -> Iterator[torch.Tensor]:
    """Stages 4-5, streamed: yields output frames ``[B, H, W, 3]`` in 0..1, batch by batch.

    ``on_batch(start_frame, conditions, frames)`` sees each batch's condition images (renderer input, RGB 0..1)
    and output frames before they are yielded (e.g. :class:`moda_core.frame_files.StageSaver`).
    With ``options.overlap_stages`` the renderer's inputs (projection, warp, drawing) are made in a worker
    thread, a batch ahead, while this thread renders; frames and order are the same as without.
    """
    warp = _warp_renderer(models_or_renderer, subject, options)
    show_conditions = options.layout == "debug" or on_batch is not None
    render_inputs = None                          # (start, conditions, warped or None) -> frames
    if warp is not None:
        size = warp.size
        reference = torch.from_numpy(warp.reference)
        inputs = _warp_batches(warp, r, subject, options, draw=show_conditions)
    else:
        renderer = (getattr(models_or_renderer, "renderer_backend", None)
                    or getattr(models_or_renderer, "renderer", models_or_renderer))
        settings = getattr(models_or_renderer, "render_settings", RenderSettings())
        face_center = options.face_center or settings.face_center
        tpe = options.tpe or settings.tpe
        size = renderer.config.image_size
        reference = reference_at(subject, size)

        def render_inputs(start: int, conditions: torch.Tensor, warped: torch.Tensor | None) -> torch.Tensor:
            return render_batch(renderer, conditions, reference if warped is None else warped, start, tpe=tpe,
                                precision=options.precision)

        if renderer.config.warped_reference:      # per frame, the warp renderer's frame is the reference
            warp = reference_warp(subject, size, face_center, options.models_dir)
            inputs = _warp_batches(warp, r, subject, options, draw=True, as_uint8=True)
        else:
            inputs = ((start, conditions, None)
                      for start, conditions in condition_batches(r, subject, sample=options.sample,
                                                                 batch_size=options.batch_size,
                                                                 face_center=face_center,
                                                                 style=options.drawing_style, size=size))
    paste = PasteBack(subject, size, options.paste_feather) if options.paste_back else None
    with closing(prefetch(inputs, depth=2) if options.overlap_stages else inputs) as batches:
        for start, conditions, frames in batches:
            if render_inputs is not None:
                frames = render_inputs(start, conditions, frames)
            if show_conditions and conditions.dtype == torch.uint8:
                conditions = conditions.to(torch.float32).div_(255.0)      # as draw_condition_images' floats
            if options.layout == "debug":
                frames = torch.cat([frames, reference.expand_as(frames), conditions], dim=2)
            elif paste is not None:
                frames = paste(frames)
            if options.output_size is not None and not options.paste_back and options.layout == "render":
                frames = _resize(frames, options.output_size)
            if on_batch is not None:
                on_batch(start, conditions, frames)
            if progress:
                progress("render", start + frames.shape[0], r.num_frames)
            yield frames


def _warp_renderer(models_or_renderer, subject: Subject, options: AnimateOptions):
    """The :class:`WarpRenderer` to use (given, or made for ``options.renderer == "warp"``), else None."""
    from moda_core.warp_renderer import WarpRenderer

    if isinstance(models_or_renderer, WarpRenderer):
        return models_or_renderer
    if options.renderer == "warp":
        from moda_core.warp_renderer import reference_person_mask

        mask = None if options.models_dir is None else reference_person_mask(subject, options.models_dir)
        return WarpRenderer(subject, REFERENCE_SIZE, face_center=options.face_center or AUTHORS_INFERENCE_FACE_CENTER,
                            person_mask=mask)
    if getattr(models_or_renderer, "renderer", models_or_renderer) is None:
        raise ValueError("no neural renderer is loaded (no renderer.safetensors in the weights folder); render "
                         "with renderer='warp' (`--renderer warp`), which needs no renderer weights, or add the "
                         "renderer file")
    return None


def _warp_batches(warp, r: TalkingRepr, subject: Subject, options: AnimateOptions, draw: bool,
                  as_uint8: bool = False) -> Iterator[tuple[int, torch.Tensor | None, torch.Tensor]]:
    """``(start, condition images or None (uint8 with ``as_uint8``), warped frames)`` batch by batch."""
    face, torso = project_repr(r, subject, sample=options.sample, face_center=warp.face_center)
    face_xy, torso_xy = face[..., :2].cpu().numpy(), torso[..., :2].cpu().numpy()
    for start in range(0, r.num_frames, options.batch_size):
        stop = min(start + options.batch_size, r.num_frames)
        frames = torch.from_numpy(warp.render_points(face_xy[start:stop], torso_xy[start:stop]))
        conditions = (draw_condition_images(face[start:stop, :, :2], torso[start:stop, :, :2], size=warp.size,
                                            style=options.drawing_style, as_uint8=as_uint8) if draw else None)
        yield start, conditions, frames


def animate(models: MODAModels, waveform: np.ndarray, subject: Subject, out_path: str | os.PathLike | None,
            options: AnimateOptions = AnimateOptions(), *, repr_override: TalkingRepr | None = None,
            progress: Progress | None = None, on_batch: BatchHook | None = None,
            mux_audio: tuple[np.ndarray, int] | None = None) -> AnimateResult:
    """Audio (16 kHz mono float) + subject -> mp4 at ``out_path`` (H.264 + AAC).

    ``repr_override`` renders a given (e.g. edited) R instead of predicting one. With ``out_path=None`` only the
    motion is computed. ``on_batch``: see :func:`render_stream`. ``mux_audio``: ``(wave, rate)`` put in the mp4
    instead of ``waveform`` (e.g. the source file at its own rate); the AAC track keeps 44.1/48 kHz, other rates
    are encoded at 48 kHz (:class:`~moda_core.video.VideoWriter`).
    """
    from moda_core.video import VideoWriter

    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if repr_override is not None:
        r = repr_override
        if options.sample >= r.num_samples:
            raise ValueError(f"sample {options.sample} requested but R has {r.num_samples} sample(s)")
        options = replace(options, fps=r.fps, num_samples=r.num_samples)
    else:
        r = motion_pipeline(models, wave, subject, options, progress)
    if out_path is None:
        return AnimateResult(None, r, r.num_frames, r.duration, r.fps)
    if mux_audio is None and wave.size:
        mux_audio = (wave, SAMPLE_RATE)
    with VideoWriter(out_path, r.fps, audio=mux_audio, quantize=options.quantize,
                     background=options.overlap_stages) as writer, \
            closing(render_stream(models, r, subject, options, progress, on_batch)) as stream:
        for frames in stream:
            writer.write(frames)
    return AnimateResult(Path(out_path), r, writer.frames_written, writer.frames_written / r.fps, r.fps)
