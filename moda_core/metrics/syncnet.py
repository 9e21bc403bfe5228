"""SyncNet lip-sync scores: "Sync" (confidence, LSE-C), "Sync-D" (minimum distance, LSE-D), "Sync offset".

The paper reports SyncNet confidence (Chung & Zisserman 2016). With user-supplied weights (``syncnet_v2.model``
of the syncnet_python project, or that state dict as ``.safetensors``) this module follows the published
evaluation recipe:

1. video at 25 fps (other rates: nearest frame in time), audio at 16 kHz as 16-bit PCM values;
2. one face box per frame, median-filtered over 13 frames; a square crop around it reaching ``0.4 x`` the box
   half-size beyond it to the sides and ``0.8 x`` below (the mouth and chin), ``1 x`` above the centre, grey
   (110) outside the frame, resized to 224 x 224, in BGR order with values 0..255;
3. MFCCs (:mod:`moda_core.metrics.mfcc`), 4 MFCC steps per video frame;
4. every 5-frame window ``i`` is embedded by the lip tower, MFCC steps ``4i .. 4i+20`` by the audio tower;
5. for shifts ``d`` in ``-15..15`` frames the mean distance between lip window ``i`` and audio window ``i + d``
   (zero embeddings beyond the ends); ``Sync-D`` = the smallest mean distance, ``Sync`` = the median minus
   that, and the offset = ``-d`` at the minimum (positive: the lips move that many frames after the sound).

Difference to the reference pipeline: face boxes come from MediaPipe's 478 landmarks (their bounding box) rather
than the S3FD detector, and there is no shot detection (one face, one shot). The landmark box is close to the
S3FD box but not equal, so scores are comparable in trend with published LSE-C/LSE-D, not digit for digit.
Frames already cropped for SyncNet (224 x 224 face tracks) skip step 2 with ``crop=False``.

Without weights every entry point returns the rows skipped with :data:`NO_WEIGHTS_REASON`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import medfilt

from moda_core.metrics.image import Frames
from moda_core.metrics.mfcc import mfcc, pcm16_scale
from moda_core.metrics.report import MetricResult, to_numpy
from moda_core.models.syncnet import CLIP_FRAMES, CROP_SIZE, MFCC_STEPS, SyncNet, SyncNetConfig
from moda_core.smoothing import fill_missing

SYNC_FPS = 25.0
SYNC_RATE = 16000
MAX_OFFSET = 15
MFCC_PER_FRAME = 4
CROP_SCALE = 0.4
BOX_SMOOTHING = 13             # median filter length (frames)
OUTSIDE_GREY = 110
MIN_FRAMES = max(BOX_SMOOTHING // 2 + 1, CLIP_FRAMES + 1)   # >= 7 real boxes in each median, >= 1 window
NO_WEIGHTS_REASON = ("SyncNet confidence needs user-supplied SyncNet weights (syncnet_v2.model of the "
                     "syncnet_python project, or that state dict as .safetensors); none given, so Sync was not "
                     "computed.")

ProgressFn = Callable[[int, int], None]


SYNC_ROWS = (("Sync", "", True), ("Sync-D", "", False), ("Sync offset", "frames at 25 fps", None))
"""(name, unit, higher_is_better) of the three rows."""


@dataclass(frozen=True)
class SyncScore:
    """The outcome of a sync search."""

    confidence: float          # median - min of the mean distances (LSE-C, higher is better)
    min_distance: float        # LSE-D, lower is better
    offset: int                # frames; positive: the lips lag the sound
    distances: np.ndarray      # [2 * max_offset + 1] mean distance per shift d = -max_offset..max_offset
    windows: int               # 5-frame windows scored

    def rows(self, **details: Any) -> list[MetricResult]:
        info = dict(offset_frames=self.offset, windows=self.windows, **details)
        values = (self.confidence, self.min_distance, float(self.offset))
        extra = (dict(min_distance=self.min_distance), dict(confidence=self.confidence), {})
        return [MetricResult(name, value, unit, better, details=dict(info, **more))
                for (name, unit, better), value, more in zip(SYNC_ROWS, values, extra)]


def skipped_rows(reason: str, **details: Any) -> list[MetricResult]:
    """The "Sync", "Sync-D" and "Sync offset" rows, all skipped for ``reason``."""
    return [MetricResult.skip(name, reason, unit, better, **details) for name, unit, better in SYNC_ROWS]


# ----------------------------------------------------------------------------------------------- weights
def _config_from_weights(state: dict[str, torch.Tensor]) -> SyncNetConfig:
    conv_indices = (0, 4, 8, 11, 14, 18)
    try:
        return SyncNetConfig(
            audio_channels=tuple(int(state[f"netcnnaud.{i}.weight"].shape[0]) for i in conv_indices),
            lip_channels=tuple(int(state[f"netcnnlip.{i}.weight"].shape[0]) for i in conv_indices),
            hidden=int(state["netfcaud.0.weight"].shape[0]), embed_dim=int(state["netfcaud.3.weight"].shape[0]))
    except (KeyError, IndexError):
        return SyncNetConfig()      # the strict check below names what is missing


def load_syncnet(path: str | os.PathLike, device: torch.device | str = "cpu") -> SyncNet:
    """SyncNet from ``syncnet_v2.model`` (read with ``torch.load(weights_only=True)``) or ``.safetensors``.

    Loads strictly; a missing ``num_batches_tracked`` (old torch files) is filled in. ``FileNotFoundError`` or
    ``ValueError`` naming the file and the missing/unexpected/mis-shaped keys otherwise.
    """
    from moda_core.checkpoints import _load_strict, read_authors_checkpoint

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet weights not found at {path}; give the path of syncnet_v2.model")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as err:
            raise ValueError(f"{path}: not a readable safetensors file: {err}") from None
    else:
        state = read_authors_checkpoint(path)
    network = SyncNet(_config_from_weights(state))
    expected = network.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value.clone()
    _load_strict(network, state, path, "SyncNet (syncnet_v2.model layout)")
    return network.to(device).eval()


# ----------------------------------------------------------------------------------------------- inputs
def audio_for_syncnet(audio: Any, sample_rate: int | None) -> np.ndarray:
    """A waveform ``[N]``, ``[C, N]`` or ComfyUI's ``[1, C, N]`` at ``sample_rate`` -> 16 kHz PCM16 values."""
    from moda_core.preprocess.audio import resample_audio

    return pcm16_scale(resample_audio(*_checked_waveform(audio, sample_rate), SYNC_RATE))


def _checked_waveform(audio: Any, sample_rate: int | None) -> tuple[np.ndarray, int]:
    wave = to_numpy(audio, "audio")
    if wave.ndim == 3 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.ndim not in (1, 2) or wave.shape[-1] == 0 or not np.issubdtype(wave.dtype, np.number):
        raise ValueError(f"audio must be a waveform [N], [C, N] or [1, C, N], got shape {list(wave.shape)}")
    if sample_rate is None or int(sample_rate) <= 0:
        raise ValueError(f"audio needs sample_rate > 0, got {sample_rate}")
    return wave, int(sample_rate)


def frame_indices_at(count: int, fps: float, target_fps: float = SYNC_FPS) -> np.ndarray:
    """Indices of the ``count`` frames at ``fps`` nearest to each tick of ``target_fps`` (same duration)."""
    if not fps > 0:
        raise ValueError(f"frames need fps > 0, got {fps}")
    total = max(1, int(round(count / fps * target_fps)))
    return np.minimum(np.floor(np.arange(total) * fps / target_fps + 0.5).astype(int), count - 1)


def _rgb_uint8(frames: Frames, t: int) -> np.ndarray:
    """Frame ``t`` as uint8 RGB (uint8 input as it is, anything else through the [0, 1] scale)."""
    frame = frames.array[t]
    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frames[t] * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame


# ----------------------------------------------------------------------------------------------- face crops
def face_boxes(frames: Iterable[np.ndarray], *, models_dir: str | os.PathLike | None = None) -> np.ndarray:
    """``[T, 4]`` boxes ``(x0, y0, x1, y1)`` in pixels: the bounding box of MediaPipe's 478 landmarks.

    Frames without a face get a box interpolated from their neighbours; ``ValueError`` if no frame has one.
    """
    from moda_core.preprocess.landmarks import FaceLandmarks

    boxes: list[np.ndarray] = []
    with FaceLandmarks(models_dir, video=True) as landmarker:
        for t, rgb in enumerate(frames):
            faces = landmarker.detect(rgb, timestamp_ms=int(round(t * 1000.0 / SYNC_FPS)))
            boxes.append(np.full(4, np.nan) if not faces else
                         np.concatenate([faces[0][:, :2].min(0), faces[0][:, :2].max(0)]))
    found = ~np.isnan(np.stack(boxes)[:, 0])
    if not found.any():
        raise ValueError(f"SyncNet: no face found in any of the {len(boxes)} frames; give a video of a face")
    return fill_missing(np.stack(boxes), found)


def _check_length(frames: int) -> None:
    if frames < MIN_FRAMES:
        raise ValueError(f"SyncNet needs at least {MIN_FRAMES} frames at 25 fps "
                         f"({MIN_FRAMES / SYNC_FPS:.2f} s), got {frames}")


def _smoothed_centres(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median-filtered (13 frames, zero-padded ends as in the reference) half-size and centre per frame."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise ValueError(f"face boxes must be finite [T, 4] (x0, y0, x1, y1), got shape {list(boxes.shape)}")
    _check_length(len(boxes))
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    return (medfilt(half, BOX_SMOOTHING), medfilt((boxes[:, 0] + boxes[:, 2]) / 2, BOX_SMOOTHING),
            medfilt((boxes[:, 1] + boxes[:, 3]) / 2, BOX_SMOOTHING))


def crop_face(rgb: np.ndarray, half: float, cx: float, cy: float) -> np.ndarray:
    """One 224 x 224 BGR crop around a face of half-size ``half`` centred at ``(cx, cy)`` (see module doc)."""
    pad = int(half * (1 + 2 * CROP_SCALE))
    # edges in the reference's padded-frame coordinates (int() truncation), then back to frame coordinates
    top = int(cy + pad - half) - pad
    bottom = int(cy + pad + half * (1 + 2 * CROP_SCALE)) - pad
    left = int(cx + pad - half * (1 + CROP_SCALE)) - pad
    right = int(cx + pad + half * (1 + CROP_SCALE)) - pad
    if bottom <= top or right <= left:
        raise ValueError(f"SyncNet: face box of half-size {half:.1f} px is too small to crop")
    height, width = rgb.shape[:2]
    face = np.full((bottom - top, right - left, 3), OUTSIDE_GREY, dtype=np.uint8)
    y0, y1, x0, x1 = max(top, 0), min(bottom, height), max(left, 0), min(right, width)
    if y1 > y0 and x1 > x0:
        face[y0 - top:y1 - top, x0 - left:x1 - left] = rgb[y0:y1, x0:x1, ::-1]
    return cv2.resize(face, (CROP_SIZE, CROP_SIZE))


def crop_faces(frames: Iterable[np.ndarray], boxes: np.ndarray) -> np.ndarray:
    """RGB uint8 frames + their ``[T, 4]`` face boxes -> ``[T, 224, 224, 3]`` BGR uint8 SyncNet crops."""
    half, cx, cy = _smoothed_centres(boxes)
    crops = [crop_face(rgb, half[t], cx[t], cy[t]) for t, rgb in zip(range(len(half)), frames)]
    if len(crops) != len(half):
        raise ValueError(f"{len(half)} face boxes but only {len(crops)} frames")
    return np.stack(crops)


# ----------------------------------------------------------------------------------------------- scoring
def sync_search(lip_embeddings: torch.Tensor, audio_embeddings: torch.Tensor,
                max_offset: int = MAX_OFFSET) -> SyncScore:
    """Mean distance per shift, then Sync-D (min), Sync (median - min) and the offset (see module doc)."""
    lips, audio = lip_embeddings.float().cpu(), audio_embeddings.float().cpu()
    if lips.dim() != 2 or lips.shape != audio.shape or len(lips) == 0:
        raise ValueError(f"lip and audio embeddings must be equal non-empty [W, D], got {list(lips.shape)} "
                         f"and {list(audio.shape)}")
    shifts = 2 * max_offset + 1
    padded = F.pad(audio, (0, 0, max_offset, max_offset))
    windows = padded[torch.arange(len(lips))[:, None] + torch.arange(shifts)[None, :]]    # [W, shifts, D]
    mean_distance = F.pairwise_distance(lips[:, None, :], windows).mean(0).double().numpy()
    best = int(np.argmin(mean_distance))
    low = float(mean_distance[best])
    return SyncScore(confidence=float(np.median(mean_distance)) - low, min_distance=low,
                     offset=max_offset - best, distances=mean_distance, windows=len(lips))


@torch.inference_mode()
def score_crops(network: SyncNet, crops: np.ndarray, pcm16: np.ndarray, *, max_offset: int = MAX_OFFSET,
                batch_size: int = 20, progress: ProgressFn | None = None) -> SyncScore:
    """Score ``[T, 224, 224, 3]`` BGR crops at 25 fps against 16 kHz PCM16 audio."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise ValueError(f"SyncNet crops must be [T, {CROP_SIZE}, {CROP_SIZE}, 3], got {list(crops.shape)}")
    usable = min(len(crops), len(pcm16) // int(SYNC_RATE / SYNC_FPS))
    count = usable - CLIP_FRAMES
    if count < 1:
        raise ValueError(f"SyncNet needs more than {CLIP_FRAMES} frames with audio under them; got {len(crops)} "
                         f"frames and {len(pcm16) / SYNC_RATE:.2f} s of audio")
    device = next(network.parameters()).device
    cepstra = torch.from_numpy(mfcc(pcm16, SYNC_RATE).T.copy()).float()                     # [13, steps]
    windows = cepstra.unfold(1, MFCC_STEPS, MFCC_PER_FRAME)                                  # [13, W, 20]
    video = torch.from_numpy(np.ascontiguousarray(crops[:usable])).permute(3, 0, 1, 2).float()  # [3, T, 224, 224]
    lips, sounds = [], []
    for start in range(0, count, batch_size):
        stop = min(count, start + batch_size)
        clips = video[:, start:stop + CLIP_FRAMES - 1].unfold(1, CLIP_FRAMES, 1)           # [3, B, H, W, 5]
        lips.append(network.embed_lips(clips.permute(1, 0, 4, 2, 3).to(device)).cpu())
        steps = windows[:, start:stop].permute(1, 0, 2)                                   # [B, 13, 20]
        sounds.append(network.embed_audio(steps[:, None].to(device)).cpu())
        if progress is not None:
            progress(stop, count)
    return sync_search(torch.cat(lips), torch.cat(sounds), max_offset)


def score_frames(network: SyncNet, frames: Any, pcm16: np.ndarray, *, fps: float,
                 boxes: np.ndarray | None = None, crop: bool = True, models_dir: str | os.PathLike | None = None,
                 progress: ProgressFn | None = None) -> SyncScore:
    """Sync of an in-memory video ``[T, H, W, 3]`` (uint8, or float in [0, 1]) at ``fps`` with its audio as
    16 kHz PCM16 values (:func:`audio_for_syncnet`).

    ``boxes``: ``[T, 4]`` face boxes of the given frames (default: MediaPipe); ``crop=False``: the frames are
    already 224 x 224 SyncNet crops in RGB.
    """
    checked = frames if isinstance(frames, Frames) else Frames(frames, "frames")
    picks = frame_indices_at(len(checked), fps)
    _check_length(len(picks))
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or len(boxes) != len(checked):
            raise ValueError(f"boxes must be [T, 4] for the {len(checked)} frames, got {list(boxes.shape)}")
        boxes = boxes[picks]
    rgb = [_rgb_uint8(checked, int(t)) for t in picks]
    if not crop:
        crops = np.stack(rgb)[..., ::-1]
    else:
        crops = crop_faces(rgb, boxes if boxes is not None else face_boxes(rgb, models_dir=models_dir))
    return score_crops(network, crops, pcm16, progress=progress)


def score_video(network: SyncNet, video: str | os.PathLike, *, audio: str | os.PathLike | None = None,
                models_dir: str | os.PathLike | None = None, progress: ProgressFn | None = None) -> SyncScore:
    """Sync of a video file with its own audio track (or ``audio``); decodes twice instead of holding frames."""
    from moda_core.preprocess.audio import load_audio
    from moda_core.preprocess.video import read_frames

    def decoded() -> Iterator[np.ndarray]:
        return (rgb for _, _, rgb in read_frames(video, SYNC_FPS))

    wave, rate = load_audio(audio if audio is not None else video, SYNC_RATE)
    crops = crop_faces(decoded(), face_boxes(decoded(), models_dir=models_dir))
    return score_crops(network, crops, pcm16_scale(wave), progress=progress)


# ----------------------------------------------------------------------------------------------- the rows
def syncnet_confidence(frames: Any, audio: Any, sample_rate: int | None, *, fps: float | None = None,
                       weights_path: str | os.PathLike | None = None, network: SyncNet | None = None,
                       boxes: np.ndarray | None = None, crop: bool = True, device: torch.device | str = "cpu",
                       models_dir: str | os.PathLike | None = None,
                       progress: ProgressFn | None = None) -> list[MetricResult]:
    """The "Sync", "Sync-D" and "Sync offset" rows for frames at ``fps`` and their audio.

    Inputs are validated first (``ValueError``). No ``weights_path``/``network``: the rows are skipped with
    :data:`NO_WEIGHTS_REASON`; a ``weights_path`` that does not exist: ``FileNotFoundError``.
    """
    checked = Frames(frames, "frames")
    _checked_waveform(audio, sample_rate)
    if network is None and (weights_path is None or str(weights_path) == ""):
        return skipped_rows(NO_WEIGHTS_REASON)
    if fps is None:
        raise ValueError("SyncNet needs the frame rate of the frames (fps)")
    network = network if network is not None else load_syncnet(weights_path, device)
    score = score_frames(network, checked, audio_for_syncnet(audio, sample_rate), fps=fps, boxes=boxes, crop=crop,
                         models_dir=models_dir, progress=progress)
    return score.rows(crop="given boxes" if boxes is not None else ("mediapipe" if crop else "none"))
