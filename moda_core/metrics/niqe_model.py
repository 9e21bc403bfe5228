"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan, Bovik, "Making a 'Completely Blind' Image
Quality Analyzer", IEEE Signal Processing Letters 20(3), 2013). No reference image; lower is better.

The published recipe, as the authors' MATLAB release computes it:

1. Grey level: luma ``Y`` of MATLAB's ``rgb2ycbcr`` (``16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in
   [0, 1]; ``channel="y"``) or ``0.299 R + 0.587 G + 0.114 B`` scaled to 0..255 (``channel="gray"``), rounded to
   integers; the image is cropped to whole 96x96 blocks.
2. At two scales (full, then halved by MATLAB's bicubic ``imresize`` with antialiasing): MSCN coefficients
   ``(I - mu) / (sigma + 1)`` with the 7x7 Gaussian window of the pristine model (replicate borders); per
   96x96 block (48x48 at the half scale), 18 features: the generalised Gaussian shape and scale of the
   coefficients and, for the products with the 4 neighbours (right, down, both diagonals; circular shifts
   within the block), the asymmetric generalised Gaussian shape, mean and left/right scales.
3. The 36 block features give a multivariate Gaussian (mean of blocks, covariance of the blocks without NaN);
   NIQE is the distance ``sqrt((m1 - m2)^T pinv((C1 + C2) / 2) (m1 - m2))`` to the pristine model (``m1``, ``C1``)
   fitted by the authors on pristine natural images.

The pristine parameters are data shipped in ``moda_core/assets/niqe_pris_params.npz`` (provenance and licence in
``moda_core/assets/README.md``). Checked against basicsr 1.4.2's ``calculate_niqe`` (which reproduces the MATLAB
release: 5.7296 on its test image) on the shared portraits; see tests/test_metrics_niqe.py.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from scipy.special import gamma

PRISTINE_PARAMS = Path(__file__).resolve().parents[1] / "assets" / "niqe_pris_params.npz"
BLOCK = 96
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))     # neighbour products: right, down, main and anti diagonal
_ALPHAS = np.arange(0.2, 10.001, 0.001)        # AGGD shape grid of the MATLAB release
_YCBCR_Y = np.array([65.481, 128.553, 24.966])
_GRAY = np.array([0.299, 0.587, 0.114]) * 255.0


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [36], covariance [36, 36], Gaussian window [7, 7]) of the pristine natural-image model."""
    if not PRISTINE_PARAMS.is_file():
        raise FileNotFoundError(f"NIQE's pristine model {PRISTINE_PARAMS} is missing; reinstall moda_core")
    with np.load(PRISTINE_PARAMS) as data:
        return (data["mu_pris_param"].reshape(-1).astype(np.float64), data["cov_pris_param"].astype(np.float64),
                data["gaussian_window"].astype(np.float64))


@functools.lru_cache(maxsize=1)
def _shape_ratio_table() -> np.ndarray:
    """``Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))`` over the shape grid: the moment ratio an AGGD of shape a has."""
    inv = 1.0 / _ALPHAS
    return gamma(2 * inv) ** 2 / (gamma(inv) * gamma(3 * inv))


def _aggd(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit (moment matching) per row of ``blocks`` [N, P]:
    shape, left scale, right scale, each [N] (NaN where a side has no values)."""
    negative, positive = blocks < 0, blocks > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((blocks ** 2 * negative).sum(1) / negative.sum(1))
        right = np.sqrt((blocks ** 2 * positive).sum(1) / positive.sum(1))
        g = left / right
        r = np.abs(blocks).mean(1) ** 2 / (blocks ** 2).mean(1)
        r_norm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    table = _shape_ratio_table()
    shape = _ALPHAS[np.argmin((table[None, :] - np.nan_to_num(r_norm, nan=np.inf)[:, None]) ** 2, axis=1)]
    shape = np.where(np.isfinite(r_norm), shape, np.nan)
    spread = np.sqrt(gamma(1 / shape) / gamma(3 / shape))
    return shape, left * spread, right * spread


def _block_features(mscn: np.ndarray, size: int) -> np.ndarray:
    """18 NSS features per ``size`` x ``size`` block of an MSCN map -> [blocks, 18] (row-major block order)."""
    rows, cols = mscn.shape[0] // size, mscn.shape[1] // size
    blocks = mscn[:rows * size, :cols * size].reshape(rows, size, cols, size).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(rows * cols, size, size)
    shape, left, right = _aggd(blocks.reshape(len(blocks), -1))
    features = [shape, (left + right) / 2]
    for shift in _SHIFTS:
        product = blocks * np.roll(blocks, shift, axis=(1, 2))
        shape, left, right = _aggd(product.reshape(len(blocks), -1))
        mean = (right - left) * gamma(2 / shape) / gamma(1 / shape)
        features += [shape, mean, left, right]
    return np.stack(features, axis=1)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' bicubic kernel with a = -0.5 (MATLAB's ``imresize`` 'bicubic')."""
    x = np.abs(x)
    return np.where(x <= 1, 1.5 * x ** 3 - 2.5 * x ** 2 + 1,
                    np.where(x <= 2, -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2, 0.0))


@functools.lru_cache(maxsize=8)
def _resize_matrix(length: int, scale: float) -> np.ndarray:
    """``[ceil(length * scale), length]`` matrix of MATLAB's antialiased bicubic resampling along one axis
    (kernel stretched by ``1/scale`` when shrinking, symmetric borders, weights normalised per output)."""
    out_len = math.ceil(length * scale)
    stretch = min(scale, 1.0)
    width = 4.0 / stretch
    centre = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)          # 1-based input coordinates
    first = np.floor(centre - width / 2)
    taps = first[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    weights = stretch * _cubic(stretch * (centre[:, None] - taps))
    weights /= weights.sum(1, keepdims=True)
    mirrored = np.concatenate([np.arange(length), np.arange(length)[::-1]])
    index = mirrored[(taps.astype(np.int64) - 1) % (2 * length)]
    matrix = np.zeros((out_len, length))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps.shape[1]), index.ravel()), weights.ravel())
    return matrix


def imresize_half(image: np.ndarray) -> np.ndarray:
    """Halve a 2-D float image as MATLAB's ``imresize(image, 0.5)`` does (bicubic, antialiased)."""
    return _resize_matrix(image.shape[0], 0.5) @ image @ _resize_matrix(image.shape[1], 0.5).T


def _filter(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlation with ``window``, borders replicated (MATLAB ``imfilter(..., 'replicate')``)."""
    return cv2.filter2D(image, cv2.CV_64F, window, borderType=cv2.BORDER_REPLICATE)


def grey_levels(rgb: np.ndarray, channel: Literal["y", "gray"] = "y") -> np.ndarray:
    """RGB float [H, W, 3] in [0, 1] (or [H, W, 1] / [H, W]) -> rounded grey levels 0..255 (float64)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim == 3 and rgb.shape[-1] == 1:
        rgb = rgb[..., 0]
    if rgb.ndim == 2:
        return np.round(rgb * 255.0)
    if channel == "y":
        return np.round(16.0 + rgb @ _YCBCR_Y)
    if channel == "gray":
        return np.round(rgb @ _GRAY)
    raise ValueError(f"channel must be 'y' (MATLAB YCbCr luma) or 'gray', got {channel!r}")


def niqe_score(rgb: np.ndarray, channel: Literal["y", "gray"] = "y") -> float:
    """NIQE of one image: RGB float ``[H, W, 3]`` in [0, 1] (grey ``[H, W]``/``[H, W, 1]`` also taken).

    Needs at least two 96x96 blocks (e.g. 192x96 px) with texture; raises ``ValueError`` otherwise.
    """
    grey = grey_levels(rgb, channel)
    rows, cols = grey.shape[0] // BLOCK, grey.shape[1] // BLOCK
    if rows * cols < 2:
        raise ValueError(f"NIQE needs an image of at least two {BLOCK}x{BLOCK} blocks (e.g. 192x96 px), got "
                         f"{grey.shape[1]}x{grey.shape[0]}")
    mean_pristine, cov_pristine, window = pristine_model()
    image = grey[:rows * BLOCK, :cols * BLOCK]
    per_scale = []
    for scale in (1, 2):
        mu = _filter(image, window)
        sigma = np.sqrt(np.abs(_filter(image * image, window) - mu * mu))
        per_scale.append(_block_features((image - mu) / (sigma + 1), BLOCK // scale))
        if scale == 1:
            image = imresize_half(image / 255.0) * 255.0
    features = np.concatenate(per_scale, axis=1)
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        raise ValueError("NIQE needs at least two image blocks with texture; this image is (nearly) flat")
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(features, axis=0)
    diff = mean_pristine - mean
    cov = (cov_pristine + np.cov(complete, rowvar=False)) / 2
    return float(np.sqrt(diff @ np.linalg.pinv(cov) @ diff))
