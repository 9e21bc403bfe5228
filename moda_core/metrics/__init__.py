"""Evaluation metrics of the MODA paper (section 4.1) and motion statistics.

Every function accepts numpy arrays or torch tensors (and :class:`~moda_core.repr.TalkingRepr` where it says
so), validates shapes with a ``ValueError``, and documents its definition and units in its module:

* :mod:`.landmarks`: :func:`lmd`, :func:`lmd_v` (canonical px), :func:`mouth_area_iou` (MA).
* :mod:`.image`: :func:`psnr` (dB, capped at 100), :func:`ssim`, :func:`niqe` (no reference).
* :mod:`.temporal`: :func:`tcm` (eq. 16, Farneback optical flow).
* :mod:`.sharpness`: :func:`sharpness_ratio` (Laplacian variance of generated over real frames, face box).
* :mod:`.follow`: :func:`landmark_follow` (MediaPipe re-detection of rendered frames against their target points).
* :mod:`.motion`: :func:`diversity` (Table 3), :func:`head_pose_stats`, :func:`blink_rate`.
* :mod:`.syncnet`: :func:`syncnet_confidence` ("Sync" / "Sync-D", LSE-C / LSE-D, with user-supplied SyncNet
  weights), :func:`load_syncnet`, :func:`score_video`; :mod:`.mfcc`: SyncNet's MFCC front end.
* :mod:`.report`: :class:`MetricResult`, :class:`MetricsReport` (text / Markdown / JSON), :func:`evaluate`.
"""
from moda_core.metrics.report import MetricResult, MetricsReport, evaluate
from moda_core.metrics.landmarks import lip_contour, lmd, lmd_v, mouth_area_iou
from moda_core.metrics.image import NIQE_MAX_FRAMES, PSNR_CAP_DB, niqe, psnr, psnr_per_frame, ssim, ssim_per_frame
from moda_core.metrics.temporal import tcm, tcm_per_frame
from moda_core.metrics.sharpness import sharpness_ratio
from moda_core.metrics.follow import landmark_follow
from moda_core.metrics.motion import blink_rate, diversity, eye_openness_series, head_pose_stats
from moda_core.metrics.syncnet import load_syncnet, score_video, syncnet_confidence

__all__ = [
    "MetricResult", "MetricsReport", "evaluate",
    "lmd", "lmd_v", "mouth_area_iou", "lip_contour",
    "psnr", "psnr_per_frame", "ssim", "ssim_per_frame", "niqe", "PSNR_CAP_DB", "NIQE_MAX_FRAMES",
    "tcm", "tcm_per_frame", "sharpness_ratio", "landmark_follow",
    "diversity", "head_pose_stats", "blink_rate", "eye_openness_series",
    "syncnet_confidence", "load_syncnet", "score_video",
]
