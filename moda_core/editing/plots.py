"""Previews of R: curve plots over time (optionally before/after) and landmarks over the reference image.

Both return float32 images in 0..1 (ComfyUI IMAGE layout without / with the batch axis). Plots use
matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from moda_core.drawing import draw_condition_frame
from moda_core.editing.eyes import eye_openness
from moda_core.editing.keyframes import check_number, parse_names
from moda_core.editing.mouth import mouth_openness
from moda_core.geometry import canonical_to_image
from moda_core.projection import canonical_face
from moda_core.repr import TalkingRepr
from moda_core.subject import Subject

PLOT_TRACKS = ("head", "eyes", "mouth")
_PANEL_HEIGHT = 180                         # px per panel when no height is given


def _panels(r: TalkingRepr, subject: Subject | None, sample: int, tracks: Sequence[str]):
    """``(title, {curve name: values [T]})`` per panel for one sample."""
    if not -r.num_samples <= sample < r.num_samples:
        raise ValueError(f"sample {sample} out of range for R with {r.num_samples} samples")
    one = r.select_samples(sample)
    pose = one.head_pose[0].detach().cpu().double().numpy()
    panels = []
    if "head" in tracks:
        panels += [("head rotation (deg)", {n: pose[:, i] for i, n in enumerate(("yaw", "pitch", "roll"))}),
                   ("head translation (px)", {n: pose[:, 3 + i] for i, n in enumerate(("tx", "ty", "tz"))}),
                   ("head scale", {"scale": pose[:, 6]})]
    if "eyes" in tracks:
        eyes = eye_openness(one, subject)[0].detach().cpu().double().numpy()
        panels.append(("eye openness (gap / width)", {"left": eyes[:, 0], "right": eyes[:, 1]}))
    if "mouth" in tracks:
        mouth = mouth_openness(one, subject)[0].detach().cpu().double().numpy()
        panels.append(("mouth openness (px)", {"mouth": mouth}))
    if one.is_offset:
        panels = [(title + (", offsets" if title.startswith("head") else ""), curves) for title, curves in panels]
    return panels


def plot_curves(r: TalkingRepr, other: TalkingRepr | None = None, *, width: int = 1024, height: int | None = None,
                sample: int = 0, tracks: str | Sequence[str] = PLOT_TRACKS, subject: Subject | None = None,
                labels: tuple[str, str] = ("after", "before")) -> torch.Tensor:
    """Curves of one sample over time (seconds) as a float32 image ``[height, width, 3]``.

    ``tracks``: any of ``head`` (rotation, translation, scale panels), ``eyes`` (openness per eye), ``mouth``
    (inner-lip opening). ``other`` (e.g. R before an edit) is drawn dashed under R's solid lines, with
    ``labels`` naming the two in the legend. ``height`` defaults to 180 px per panel. Eye and mouth panels
    need ``subject`` when an R holds offsets.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    chosen = parse_names(tracks, PLOT_TRACKS, param="tracks")
    panels = _panels(r, subject, sample, chosen)
    before = _panels(other, subject, sample, chosen) if other is not None else None
    height = _PANEL_HEIGHT * len(panels) + 40 if height is None else int(height)
    if not (64 <= int(width) <= 8192 and 64 <= height <= 8192):
        raise ValueError(f"plot size must be 64 to 8192 px each way, got {width}x{height}")
    dpi = 100
    figure = Figure(figsize=(int(width) / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    colours = matplotlib.colormaps["tab10"].colors
    for k, (axis, (title, curves)) in enumerate(zip(axes, panels)):
        for c, (name, values) in enumerate(curves.items()):
            if before is not None:
                old = before[k][1][name]
                axis.plot(np.arange(len(old)) / other.fps, old, color=colours[c], linestyle="--", linewidth=1.0,
                          alpha=0.7)
            axis.plot(np.arange(len(values)) / r.fps, values, color=colours[c], linewidth=1.4, label=name)
        axis.set_title(title, fontsize=9, loc="left")
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper right", ncol=len(curves))
    axes[-1].set_xlabel("time (s)", fontsize=8)
    if before is not None:
        styles = [Line2D([], [], color="black", linewidth=1.4), Line2D([], [], color="black", linestyle="--")]
        figure.legend(styles, list(labels), loc="upper center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.97 if before is not None else 1))
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3]
    if image.shape[:2] != (height, int(width)):
        import cv2
        image = cv2.resize(image, (int(width), height), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(image.astype(np.float32) / 255.0)


def overlay_landmarks(r: TalkingRepr, subject: Subject, *, sample: int = 0, every_n: int = 1,
                      opacity: float = 0.7) -> torch.Tensor:
    """Face mesh and shoulders of one sample drawn over the subject's reference image, posed by R's head
    pose: float32 ``[ceil(T / every_n), 512, 512, 3]`` in 0..1 (every ``every_n``-th frame; ``opacity`` of
    the lines over the image)."""
    if not -r.num_samples <= sample < r.num_samples or int(every_n) != every_n or every_n < 1:
        raise ValueError(f"need 0 <= sample < {r.num_samples} and a whole every_n >= 1, got sample={sample}, "
                         f"every_n={every_n}")
    opacity = check_number("opacity", opacity, 0.0, 1.0)
    one = r.select_samples(sample)
    frames = torch.arange(0, one.num_frames, int(every_n))
    absolute = one.to_absolute(subject)
    pose = absolute.head_pose[0, frames].double()
    face_xy = canonical_to_image(canonical_face(one, subject)[0, frames].double(), pose)[..., :2].numpy()
    torso_xy = canonical_to_image(absolute.torso[0, frames].double(), pose)[..., :2].numpy()
    background = subject.reference_image.numpy().astype(np.float32) / 255.0
    out = np.empty((len(frames), *background.shape), np.float32)
    lines = np.zeros(background.shape, np.uint8)
    for k in range(len(frames)):
        lines.fill(0)
        draw_condition_frame(face_xy[k], torso_xy[k], lines, style="antialiased")
        drawn = lines.astype(np.float32) / 255.0
        alpha = opacity * drawn.max(axis=-1, keepdims=True)
        out[k] = background * (1 - alpha) + drawn * alpha
    return torch.from_numpy(out)
