"""Audio loading and resampling for every MODA stage: anything in, 16 kHz mono float32 out.

* Files (wav of any sample format, mp3, m4a/aac, flac, the audio track of a video, 8-48 kHz, any channel
  count) are decoded with PyAV at their own rate; no ``ffmpeg`` binary is needed.
* In-memory waveforms (e.g. ComfyUI AUDIO ``{"waveform": [B, C, N], "sample_rate"}``) are taken as they are.

Both are then handled as the authors' ``librosa.load(path, sr=16000)``: float32 channels averaged to mono, then
(other rates only) resampled with soxr at librosa's default quality ("soxr_hq") and padded/trimmed to
``ceil(N * 16000 / rate)`` samples. FFmpeg's libswresample would differ from that by up to 0.018 (RMS 0.0013)
on a 48 kHz speech clip of peak 1.09; 16 kHz input is passed through unchanged.
"""
from __future__ import annotations

import os
import math
from typing import BinaryIO

import av
import numpy as np
import torch

from moda_core.preprocess.errors import PreprocessError, ffmpeg_message

AUDIO_RATE = 16000


def _decode_advice(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    if suffix in (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".mp4", ".mov", ".mkv", ".webm"):
        return (f"The file is damaged or not really {suffix[1:]} (maybe renamed): open it in an audio editor and "
                "export it again (e.g. 16-bit PCM wav).")
    return "Convert it to wav, mp3 or m4a."


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<audio stream>")


def load_audio(source: str | os.PathLike | BinaryIO,
               target_rate: int | None = AUDIO_RATE) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file -> (float32 ``[N]`` mono in -1..1, ``target_rate``).

    ``target_rate=None`` keeps the file's own rate (e.g. for muxing the original sound into a video)."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise PreprocessError(f"audio file not found: {name}")
    try:
        with av.open(source if not isinstance(source, os.PathLike) else os.fspath(source)) as container:
            if not container.streams.audio:
                raise PreprocessError(f"{name} has no audio track; give a file with sound (wav, mp3, m4a, or a "
                                      "video with an audio track)")
            target_rate = target_rate or container.streams.audio[0].rate
            resampler = av.AudioResampler(format="fltp")              # planar float, the file's own rate
            rate = None
            chunks = []
            for frame in container.decode(audio=0):
                rate = rate or frame.sample_rate
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    except PreprocessError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as err:
        raise PreprocessError(f"cannot decode audio from {name}: {ffmpeg_message(err)}. "
                              f"{_decode_advice(name)}") from err
    if not chunks:
        raise PreprocessError(f"{name} contains no audio samples")
    waveform = np.concatenate(chunks, axis=1).astype(np.float32)    # [C, N] planar float
    return _resample_mono(waveform.mean(axis=0), rate, target_rate), target_rate


def _resample_mono(mono: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """float32 ``[N]`` at ``rate`` -> ``target_rate`` as librosa's default resampler (soxr "HQ", fixed length)."""
    if rate == target_rate:
        return mono
    try:
        import soxr
    except ImportError as err:
        raise PreprocessError(f"resampling {rate} Hz audio to {target_rate} Hz needs the soxr package "
                              "(pip install soxr), or give 16 kHz audio") from err
    resampled = soxr.resample(mono, rate, target_rate, quality="HQ").astype(np.float32)
    length = math.ceil(len(mono) * target_rate / rate)
    return np.pad(resampled, (0, max(0, length - len(resampled))))[:length]


def resample_audio(waveform: np.ndarray | torch.Tensor, rate: int, target_rate: int = AUDIO_RATE) -> np.ndarray:
    """``[N]`` or ``[C, N]`` (e.g. ``audio["waveform"][b]`` of ComfyUI AUDIO) at ``rate`` Hz -> float32 mono
    ``[N']`` at ``target_rate`` Hz."""
    array = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise PreprocessError(f"waveform must be [samples] or [channels, samples], got shape {array.shape}")
    if rate <= 0 or target_rate <= 0:
        raise PreprocessError(f"sample rates must be positive, got {rate} -> {target_rate}")
    array = array.astype(np.float32)
    mono = array.mean(axis=0) if array.ndim == 2 else array
    return _resample_mono(np.ascontiguousarray(mono), int(rate), int(target_rate))
