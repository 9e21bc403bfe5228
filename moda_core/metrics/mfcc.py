"""MFCCs as SyncNet was trained on them: the defaults of the ``python_speech_features`` package.

25 ms frames every 10 ms with no window function (rectangular), zero-padded at the end; pre-emphasis 0.97;
power spectrum ``|rfft(frame, 512)|^2 / 512``; 26 triangular mel filters from 0 Hz to Nyquist on FFT bins
``floor(513 * mel_to_hz(m) / rate)``; natural log; orthonormal DCT-II, first 13 coefficients; sinusoidal lifter
22; coefficient 0 replaced by the log of the frame's total power. Zeros are replaced by float eps before logs.
Input amplitude matters (coefficient 0 is a log power): SyncNet saw 16-bit PCM values, see :func:`pcm16_scale`.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct

FRAME_SECONDS = 0.025
STEP_SECONDS = 0.010
FFT_SIZE = 512
MEL_FILTERS = 26
COEFFICIENTS = 13
PRE_EMPHASIS = 0.97
LIFTER = 22


def pcm16_scale(wave: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> the integer sample values of 16-bit PCM, as float64."""
    return np.clip(np.rint(np.asarray(wave, dtype=np.float64) * 32768.0), -32768, 32767)


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, filters: int = MEL_FILTERS, fft_size: int = FFT_SIZE) -> np.ndarray:
    """``[filters, fft_size // 2 + 1]`` triangles between mel-spaced FFT bins (0 Hz to Nyquist)."""
    edges = np.floor((fft_size + 1) * _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2), filters + 2))
                     / sample_rate)
    bins = np.arange(fft_size // 2 + 1, dtype=np.float64)
    bank = np.zeros((filters, bins.size))
    for j, (low, mid, high) in enumerate(zip(edges[:-2], edges[1:-1], edges[2:])):
        rising = (bins >= low) & (bins < mid)
        falling = (bins >= mid) & (bins < high)
        bank[j, rising] = (bins[rising] - low) / (mid - low)
        bank[j, falling] = (high - bins[falling]) / (high - mid)
    return bank


def _frames(signal: np.ndarray, length: int, step: int) -> np.ndarray:
    count = 1 if signal.size <= length else 1 + math.ceil((signal.size - length) / step)
    padded = np.zeros((count - 1) * step + length)
    padded[:signal.size] = signal
    starts = np.arange(count)[:, None] * step
    return padded[starts + np.arange(length)[None, :]]


def mfcc(signal: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """``[N]`` samples -> ``[frames, 13]`` MFCCs, one row per 10 ms (``frames = 1 + ceil((N - 400) / 160)``)."""
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1 or signal.size == 0:
        raise ValueError(f"mfcc needs a non-empty mono signal [N], got shape {list(signal.shape)}")
    emphasised = np.concatenate([signal[:1], signal[1:] - PRE_EMPHASIS * signal[:-1]])
    length = int(np.floor(FRAME_SECONDS * sample_rate + 0.5))
    step = int(np.floor(STEP_SECONDS * sample_rate + 0.5))
    power = np.abs(np.fft.rfft(_frames(emphasised, length, step), FFT_SIZE)) ** 2 / FFT_SIZE
    eps = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy[energy == 0] = eps
    banded = power @ mel_filterbank(sample_rate).T
    banded[banded == 0] = eps
    cepstra = dct(np.log(banded), type=2, axis=1, norm="ortho")[:, :COEFFICIENTS]
    cepstra *= 1.0 + (LIFTER / 2.0) * np.sin(np.pi * np.arange(COEFFICIENTS) / LIFTER)
    cepstra[:, 0] = np.log(energy)
    return cepstra
