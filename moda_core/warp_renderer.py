"""Warp renderer: animates any photo with no training by warping its reference crop so its landmarks follow R.

Per frame, the subject's own points in its reference crop (source) go to the frame's projected points
(target): the dense face (478), the shoulders (18), two rings around the face oval that move with the head
(hair, ears, forehead; they carry part of the oval's own bending and drift toward the shoulders from the cheeks
down), and fixed points just outside the image border. Face points R does not drive (lip bodies, iris centres)
follow the nearby driven ones. A Delaunay triangulation of the source points (laid out with the lips held apart,
so a closed mouth never links one lip to the other's outside) gives a piecewise-affine map; the inverse map
(target pixel -> source pixel) is found on a coarse grid by walking the fixed source triangulation (a per-pixel
triangle lookup built once, each frame starting from the previous frame's triangles), upsampled (the map is
continuous) and applied with one bicubic ``cv2.remap`` per frame. With the reference's person mask the warped
person is laid over the reference's still background (the part the person hides is inpainted once).

Triangles that would flip (a turned head folds its far cheek and nose over itself in 2-D) are unfolded: the
motion of their vertices is smoothed toward their neighbours', then pulled toward the rigid head motion, then
toward the reference; as a last resort the whole motion is damped. A frame never tears or folds.

Where the warp alone cannot look right, the frame is painted: a mouth opened beyond the reference gets an
interior (throat, tongue, and upper teeth coloured like the eye whites when the reference mouth is closed; an
open reference mouth keeps its own teeth, split between the lips; a subject from a video shows the inside of its
own most-open-mouth frame instead) feathered into the lips; an eye closed beyond
the reference gets eyelid skin sampled above the eye and a lash line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Sequence

import cv2
import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy import ndimage
from scipy.spatial import Delaunay

from moda_core.geometry import AUTHORS_INFERENCE_FACE_CENTER, CANONICALISATION_FACE_CENTER, IMAGE_SIZE
from moda_core.landmarks import (NUM_FACE_POINTS, connection_groups, eye_indices, mouth_indices,
                                  non_semantic_indices)
from moda_core.subject import Subject

NUM_TORSO_POINTS = 18
# MediaPipe face-mesh indices (facts of the mesh topology)
INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)      # mouth corner to mouth corner
INNER_LIP_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (78, 308)
LIP_GAP = (13, 14)                                                         # inner-lip midpoints
EYES = {  # name: (corner a, corner b, upper-lid mid, lower-lid mid, iris centre + ring, brow points)
    "right": (33, 133, 159, 145, (468, 469, 470, 471, 472), (70, 63, 105, 66, 107)),
    "left": (362, 263, 386, 374, (473, 474, 475, 476, 477), (300, 293, 334, 296, 336)),
}


@dataclass(frozen=True)
class WarpConfig:
    """Settings of :class:`WarpRenderer`; lengths are in px of the 512-px crop (scaled with the output size)."""

    map_size: int = 128                      # grid the inverse map is built on before upsampling
    ring_scales: tuple[float, ...] = (1.3, 1.75)   # head rings: oval points pushed out from the face centre
    ring_torso_start: float = 0.6            # ring points below this height (0 top of the face, 1 chin) drift
    ring_head_floor: float = 0.3             # ... from the head toward the shoulders, down to this share of head
    border_step: int = 64                    # spacing of the fixed border points
    mouth_open_threshold: float = 0.02       # lip gap / mouth width beyond the reference before filling
    mouth_fill_ramp: float = 0.06            # extra opening over which the interior fades in
    mouth_feather: float = 1.5               # px of soft edge of the mouth interior
    teeth: bool = True                       # synthetic upper teeth when the reference mouth is closed
    open_reference: float = 0.06             # lip gap / mouth width above which the reference mouth counts as open
    eye_close_start: float = 0.35            # eye closure (1 - opening / reference opening) where lids appear
    eye_close_full: float = 0.75             # closure where the lid covers the eye completely
    eye_feather: float = 1.5
    person_grow: float = 1.0                 # px of background rim grown onto the person (moves with it)
    person_feather: float = 1.5              # px of soft edge between the person and the still background
    max_regularise_steps: int = 8
    smoothing_steps: int = 60                # unfolding iterations (motion smoothed over flipping triangles)

    def __post_init__(self):
        if self.map_size < 16:
            raise ValueError(f"WarpConfig.map_size must be >= 16, got {self.map_size}")
        if not self.ring_scales or min(self.ring_scales) <= 1.0:
            raise ValueError(f"WarpConfig.ring_scales must be > 1, got {self.ring_scales}")
        if self.border_step < 8:
            raise ValueError(f"WarpConfig.border_step must be >= 8, got {self.border_step}")
        if not 0 <= self.eye_close_start < self.eye_close_full <= 1:
            raise ValueError("WarpConfig needs 0 <= eye_close_start < eye_close_full <= 1, got "
                             f"{self.eye_close_start}, {self.eye_close_full}")
        if self.mouth_fill_ramp <= 0:
            raise ValueError(f"WarpConfig.mouth_fill_ramp must be > 0, got {self.mouth_fill_ramp}")


# ----------------------------------------------------------------------------------------- mesh facts
def _loop(edges: np.ndarray, start: int | None = None) -> list[int]:
    """Order the closed polyline through ``edges`` (each vertex in exactly two edges) starting at ``start``."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    first = start if start is not None else min(neighbours)
    order, previous = [first], None
    while True:
        options = [n for n in neighbours[order[-1]] if n != previous]
        previous, current = order[-1], options[0]
        if current == first:
            return order
        order.append(current)


@cache
def face_oval_loop() -> np.ndarray:
    return np.asarray(_loop(connection_groups()["face_oval"], 10), dtype=np.int64)


@cache
def eye_loop(side: str) -> np.ndarray:
    group = "left_eye" if side == "left" else "right_eye"
    return np.asarray(_loop(connection_groups()[group], EYES[side][0]), dtype=np.int64)


def inner_lip_loop() -> np.ndarray:
    return np.asarray(INNER_LIP_UPPER + INNER_LIP_LOWER[-2:0:-1], dtype=np.int64)


def similarity_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) ``[B, 2, 3]`` taking ``source [N, 2]`` to
    each ``target [B, N, 2]`` (Umeyama without reflection)."""
    mu_s = source.mean(0)
    mu_t = target.mean(1)
    s = source - mu_s
    t = target - mu_t[:, None]
    a = np.einsum("nd,bnd->b", s, t)                                       # sum s.t
    b = np.einsum("n,bn->b", s[:, 0], t[:, :, 1]) - np.einsum("n,bn->b", s[:, 1], t[:, :, 0])   # sum s x t
    norm = max(float((s ** 2).sum()), 1e-12)
    c, d = a / norm, b / norm                                              # scale*cos, scale*sin
    matrix = np.zeros((target.shape[0], 2, 3))
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = c, -d, d, c
    matrix[:, :, 2] = mu_t - np.einsum("bij,j->bi", matrix[:, :, :2], mu_s)
    return matrix


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[B, 2, 3]`` affine on ``[N, 2]`` -> ``[B, N, 2]``."""
    return np.einsum("bij,nj->bni", matrix[:, :, :2], points) + matrix[:, None, :, 2]


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle ``[..., F]`` for points ``[..., N, 2]`` (positive: counter-clockwise
    in x-right / y-down pixel coordinates as drawn, i.e. the orientation of the source mesh)."""
    p0, p1, p2 = (points[..., triangles[:, k], :] for k in range(3))
    e1, e2 = p1 - p0, p2 - p0
    return e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]


# ----------------------------------------------------------------------------------------- renderer
class WarpRenderer:
    """Warps ``subject``'s reference crop so its landmarks follow projected points; output ``size`` px square.

    ``person_mask`` (optional, ``[H, W]`` person probability of the reference crop, e.g. from
    :func:`reference_person_mask`) keeps the background still: the warped person is laid over the reference's own
    background, whose part hidden behind the person is filled in once (``cv2.inpaint``), with a feathered edge.
    Without it the whole crop is warped (the background near the head moves a little with it).

    ``open_mouth_frame`` (optional, for subjects from a video: ``(image [H, W, 3], face points [478, 2] in
    512-px crop coordinates)``, one of its own frames with the mouth open, see :func:`most_open_mouth`) gives the
    mouth interior: that frame's mouth, moved onto the current inner lips, instead of the painted one.

    ``face_center`` must be the one the targets were projected with (``project_repr``'s default: the authors'
    ``(256, 235, 128)``): the source points are placed consistently, so R equal to the subject's own pose and
    zero offsets reproduces the reference exactly.
    """

    def __init__(self, subject: Subject, size: int = 512, config: WarpConfig = WarpConfig(), *,
                 face_center: Sequence[float] | str = AUTHORS_INFERENCE_FACE_CENTER,
                 person_mask: np.ndarray | None = None,
                 open_mouth_frame: tuple[np.ndarray, np.ndarray] | None = None):
        from moda_core.pipeline import reference_at
        from moda_core.projection import resolve_face_center

        if size < 16:
            raise ValueError(f"warp renderer size must be >= 16 px, got {size}")
        self.subject, self.size, self.config = subject, int(size), config
        self.scale = self.size / IMAGE_SIZE
        self.face_center = resolve_face_center(face_center)
        self.reference = np.ascontiguousarray(reference_at(subject, self.size).numpy(), dtype=np.float32)
        face, torso = source_points(subject, self.face_center)
        self.source_face, self.source_torso = face * self.scale, torso * self.scale
        self._build_mesh()
        self._build_lookup()
        self._build_background(person_mask)
        self._set_open_mouth(open_mouth_frame)
        self._sample_colours()
        self._grid = np.stack(np.meshgrid(np.arange(self.size, dtype=np.float32),
                                          np.arange(self.size, dtype=np.float32)), -1)

    # ------------------------------------------------------------ set-up
    def _build_mesh(self) -> None:
        size, cfg = self.size, self.config
        face, torso = self.source_face, self.source_torso
        oval = face[face_oval_loop()]
        centre = oval.mean(0)
        chin_y, top_y = oval[:, 1].max(), oval[:, 1].min()
        rings, weights, anchors, follows = [], [], [], []
        oval_ids = face_oval_loop()
        margin = 0.06 * size                  # room for head motion before a ring point meets the fixed border
        keep_away = 0.04 * size
        for number, factor in enumerate(self.config.ring_scales):
            ring = centre + factor * (oval - centre)
            inside = ((ring > margin) & (ring < size - 1 - margin)).all(1)
            if torso.size:
                far = np.linalg.norm(ring[:, None] - torso[None], axis=-1).min(1) > keep_away
                inside &= far
            # from the cheeks down the ring drifts from the head toward the shoulders (hanging hair, the neck);
            # starting at 0.6 of the face height rather than at the chin: +0.1 to +0.5 dB on the shared clips
            start_y = top_y + self.config.ring_torso_start * (chin_y - top_y)
            weight = np.clip(1.0 - (ring[:, 1] - start_y) / max(chin_y - top_y, 1.0), self.config.ring_head_floor, 1.0)
            rings.append(ring[inside])
            anchors.append(oval_ids[inside])
            follows.append(np.full(int(inside.sum()), 0.5 ** number))   # share of the oval's own bending
            weights.append(weight[inside])
        self.ring_source = np.concatenate(rings)                     # ring_scales is never empty
        self.ring_head_weight = np.concatenate(weights)
        self.ring_anchor = np.concatenate(anchors).astype(np.int64)
        self.ring_follow = np.concatenate(follows)

        ticks = np.unique(np.concatenate([np.arange(0, size, cfg.border_step * self.scale), [size - 1]]))
        low, high = -1.0, size                 # just outside the image so every pixel is covered
        line = np.clip(ticks, 0, size - 1).astype(np.float64)
        border = np.concatenate([np.stack([line, np.full_like(line, low)], 1),
                                 np.stack([line, np.full_like(line, high)], 1),
                                 np.stack([np.full_like(line, low), line], 1),
                                 np.stack([np.full_like(line, high), line], 1),
                                 [[low, low], [high, low], [low, high], [high, high]]])
        self.border = np.unique(border, axis=0)

        # an open reference mouth: what lies inside moves with the lip it belongs to (upper / lower half), the
        # band between the halves opens up and is painted as the mouth interior
        upper, lower = face[list(INNER_LIP_UPPER[1:-1])], face[list(INNER_LIP_LOWER[1:-1])]
        self.mouth_half_gap = (lower - upper) / 2                               # [9, 2]
        gap = 2 * np.linalg.norm(self.mouth_half_gap, axis=-1)
        self.mid_used = gap > 3.0 * self.scale
        middle = (upper + lower) / 2
        split = 0.02 * self.mouth_half_gap
        mid_source = np.concatenate([(middle - split)[self.mid_used], (middle + split)[self.mid_used]])

        self.n_face, self.n_torso = NUM_FACE_POINTS, NUM_TORSO_POINTS
        self.n_mid = len(mid_source)
        self.n_ring = len(self.ring_source)
        self.source = np.concatenate([face, torso, mid_source, self.ring_source, self.border])
        # connectivity from a copy with the lips held apart: a closed mouth's upper and lower inner lip then
        # only connect to each other (the cavity), never across to the other lip's outer points
        layout = self.source.copy()
        upper_ids, lower_ids = list(INNER_LIP_UPPER[1:-1]), list(INNER_LIP_LOWER[1:-1])
        axis = face[MOUTH_CORNERS[1]] - face[MOUTH_CORNERS[0]]
        width = np.linalg.norm(axis)
        down = np.array([-axis[1], axis[0]]) / max(width, 1e-6)
        gap = (face[lower_ids] - face[upper_ids]) @ down
        push = np.maximum(0.06 * width - gap, 0.0)[:, None] / 2
        layout[upper_ids] -= push * down
        layout[lower_ids] += push * down
        triangles = Delaunay(layout).simplices.astype(np.int64)
        flip = signed_areas(layout, triangles) < 0
        triangles[flip] = triangles[flip][:, [0, 2, 1]]
        self.triangles = triangles
        self._source_corners = self.source[triangles]                          # [F, 3, 2]
        self._source_xy = self._source_corners.transpose(2, 1, 0).copy()      # [2 (x, y), 3 corners, F]
        self._source_area = area = signed_areas(self.source, triangles)
        self._longest_edge = longest = np.linalg.norm(
            self._source_corners - self._source_corners[:, [1, 2, 0]], axis=-1).max(1)

        mid_ids = range(self.n_face + self.n_torso, self.n_face + self.n_torso + self.n_mid)
        hole_sets = [set(inner_lip_loop().tolist()) | set(mid_ids)]
        for side in EYES:
            hole_sets.append(set(eye_loop(side).tolist()) | set(EYES[side][4]))
        tri_list = triangles.tolist()
        self.hole = np.array([any(set(t) <= h for h in hole_sets) or any(v in mid_ids for v in t)
                              for t in tri_list], dtype=bool)
        # tiny triangles and holes painted over may reorient harmlessly; slivers (height under 1 px, e.g. a closed
        # mouth's lip line) may fold by up to a pixel of height
        self.checked = ~self.hole & (area > 0.5 * self.scale ** 2)
        sliver = area < longest * self.scale
        self.fold_allowance = np.where(sliver, longest * self.scale, 0.0)[self.checked]
        self._fold_limit = -self.fold_allowance
        self._flip_index: dict[int, np.ndarray] = {}
        self._checked_ids = np.flatnonzero(self.checked)
        corners = triangles[self.checked]
        self._checked_coords = np.stack([2 * corners[:, k] + d for k in range(3) for d in (0, 1)])  # flat x, y rows
        self.stable_face = non_semantic_indices()
        n_fixed_start = self.n_face + self.n_torso + self.n_mid + self.n_ring
        self.fixed = np.zeros(len(self.source), dtype=bool)
        self.fixed[n_fixed_start:] = True
        edges = triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        n = len(self.source)
        adjacency = coo_matrix((np.ones(len(edges) * 2), (np.concatenate([edges[:, 0], edges[:, 1]]),
                                                           np.concatenate([edges[:, 1], edges[:, 0]]))), shape=(n, n))
        adjacency = adjacency.tocsr() > 0
        adjacency.sort_indices()
        count = np.diff(adjacency.indptr)
        self.degree = count.astype(np.float64).reshape(-1, 1)
        # as a padded neighbour table (row n: a pad pointing at an extra, always-zero / False entry)
        self._neighbours = np.full((n, max(int(count.max()), 1)), n, dtype=np.int64)
        self._neighbours[np.repeat(np.arange(n), count),
                         np.arange(adjacency.nnz) - np.repeat(adjacency.indptr[:-1], count)] = adjacency.indices

        self._follow_matrix = self._driven_follow_matrix(face)
        self.mouth_open_src = self._mouth_opening(face[None])[0]
        self.eye_open_src = {side: self._eye_opening(face[None], side)[0] for side in EYES}

    @staticmethod
    def _driven_follow_matrix(face: np.ndarray) -> csr_matrix:
        """Sparse ``[478, 478]`` matrix M: ``face + M @ face`` moves the face points R does not drive (lip bodies
        between the inner and outer lip lines, iris centres, skin around the lips and lids) with the nearby points R
        drives.

        A driven point's own motion is its position minus where an affine fit of its nearest undriven neighbours
        puts it (zero for the subject's own face, exact under any affine head motion); undriven points take the
        inverse-distance mean of their nearest driven points' motion, fading out with distance. Without this, an
        opening mouth drags its lip lines over the still lip-body points and folds the lower lip."""
        driven = np.union1d(mouth_indices(), eye_indices())
        free = np.setdiff1d(np.arange(NUM_FACE_POINTS), driven)
        iod = float(np.linalg.norm(face[list(EYES["right"][4])].mean(0) - face[list(EYES["left"][4])].mean(0)))
        iod = max(iod, 1e-3)
        rest = np.zeros((len(driven), NUM_FACE_POINTS))            # rows: where each driven point sits at rest
        dist = np.linalg.norm(face[driven][:, None] - face[free][None], axis=-1)
        for row, i in enumerate(driven):
            near = free[np.argsort(dist[row])[:6]]
            system = np.vstack([face[near].T, np.ones(len(near))])     # [3, 6]: sum c x = x_i, sum c = 1
            coeffs = np.linalg.lstsq(system, np.append(face[i], 1.0), rcond=None)[0]
            rest[row, near] = coeffs
        motion = -rest                                              # driven motion = face[driven] - rest @ face
        motion[np.arange(len(driven)), driven] += 1.0
        d = np.linalg.norm(face[free][:, None] - face[driven][None], axis=-1)      # [free, driven]
        nearest = np.argsort(d, axis=1)[:, :4]
        dn = np.take_along_axis(d, nearest, 1)
        weights = 1.0 / np.maximum(dn, 0.05 * iod) ** 2
        weights /= weights.sum(1, keepdims=True)
        fade = np.clip(1.0 - np.maximum(dn[:, 0] - 0.04 * iod, 0.0) / (0.2 * iod), 0.0, 1.0) ** 2
        follow = np.zeros((len(free), len(driven)))
        np.put_along_axis(follow, nearest, weights * fade[:, None], 1)
        matrix = np.zeros((NUM_FACE_POINTS, NUM_FACE_POINTS))
        matrix[free] = follow @ motion
        return csr_matrix(matrix)

    def _build_background(self, person_mask: np.ndarray | None) -> None:
        """The still background (see the class docstring): person alpha of the reference (1 on the person, fading
        over a rim of background) and the background plate: the reference, filled in (inpainted at half size)
        where the person is, so an unmoved frame is unchanged and a moved one leaves no ghost of its outline."""
        self._alpha = self._plate = None
        if person_mask is None:
            return
        mask = np.asarray(person_mask, dtype=np.float32)
        if mask.ndim != 2 or min(mask.shape) < 2 or not np.isfinite(mask).all():
            raise ValueError(f"warp renderer: person_mask must be a finite [H, W] probability map, got shape "
                             f"{list(mask.shape)}")
        # everything that may show the person (soft hair edges included) is hidden: inpainted in the plate and
        # fully opaque in the alpha, which fades out over a rim of background beyond it
        mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_LINEAR) > 0.1
        disc = lambda radius: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)   # noqa: E731
        hidden = cv2.dilate(mask.astype(np.uint8), disc(max(1, int(round(2 * self.scale)))))
        # opaque a coarse-map cell beyond the hidden part too (the alpha is sampled on the coarse grid)
        cell = int(np.ceil(self.size / min(self.config.map_size, self.size)))
        core = cv2.dilate(hidden, disc(cell + 1))
        grow = max(1, int(round(self.config.person_grow * self.scale)))
        alpha = cv2.GaussianBlur(cv2.dilate(core, disc(grow)).astype(np.float32), (0, 0),
                                 sigmaX=self.config.person_feather * self.scale)
        alpha[core.astype(bool)] = 1.0
        hidden = hidden.astype(bool)
        plate = self.reference.copy()
        if hidden.any():
            half = max(self.size // 2, 8)
            small = cv2.resize(np.round(self.reference * 255).astype(np.uint8), (half, half),
                               interpolation=cv2.INTER_AREA)
            small_hole = cv2.resize(hidden.astype(np.uint8), (half, half), interpolation=cv2.INTER_NEAREST)
            small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
            filled = cv2.inpaint(small, small_hole, 5, cv2.INPAINT_TELEA)
            filled = cv2.resize(filled, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            plate[hidden] = filled[hidden].astype(np.float32) / 255
        self._alpha, self._plate = np.ascontiguousarray(alpha), plate
        self._strip_height = max(8, self.size // 16)                   # rows of the remap strips

    def _set_open_mouth(self, open_mouth_frame) -> None:
        self._mouth_image = self._mouth_points = None
        if open_mouth_frame is None:
            return
        image, points = open_mouth_frame
        image = np.asarray(image.numpy() if hasattr(image, "numpy") else image)
        points = np.asarray(points.numpy() if hasattr(points, "numpy") else points, dtype=np.float64)
        if image.ndim != 3 or image.shape[2] < 3 or points.shape != (NUM_FACE_POINTS, 2) or \
                not np.isfinite(points).all():
            raise ValueError(f"warp renderer: open_mouth_frame must be (image [H, W, 3], finite face points "
                             f"[{NUM_FACE_POINTS}, 2]), got {list(image.shape)} and {list(points.shape)}")
        image = image[..., :3].astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        h, w = image.shape[:2]
        self._mouth_image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA) \
            if (h, w) != (self.size, self.size) else np.ascontiguousarray(image)
        self._mouth_points = points * [self.size / IMAGE_SIZE, self.size / IMAGE_SIZE]

    def _sample_colours(self) -> None:
        """Lip and eyelid colours of the reference (medians of small patches)."""
        image, face = self.reference, self.source_face
        radius = max(1, int(round(2 * self.scale)))

        def patch_median(points: np.ndarray) -> np.ndarray:
            pixels = []
            for x, y in np.round(points).astype(int):
                x0, y0 = np.clip([x - radius, y - radius], 0, self.size - 1)
                x1, y1 = np.clip([x + radius + 1, y + radius + 1], 1, self.size)
                pixels.append(image[y0:y1, x0:x1].reshape(-1, 3))
            return np.median(np.concatenate(pixels), 0)

        outer_upper = (0, 37, 39, 40, 267, 269, 270)
        outer_lower = (17, 84, 181, 314, 405)
        self.lip_colour = patch_median(face[list(outer_upper + outer_lower)])
        # teeth: as bright as the whites of the eyes in this photo (same light and white balance), a little warmer
        whites = []
        for side in EYES:
            mask = np.zeros((self.size, self.size), np.uint8)
            cv2.fillPoly(mask, [np.round(face[eye_loop(side)]).astype(np.int32)], 1)
            whites.append(image[mask.astype(bool)])
        whites = np.concatenate(whites)
        if len(whites) >= 4:
            bright = whites[whites.sum(1) >= np.percentile(whites.sum(1), 85)]
            white = np.median(bright, 0)
        else:
            white = np.array([0.85, 0.83, 0.78])
        white = white * max(1.0, 0.72 / max(float(white.mean()), 1e-3))           # eye whites in shadow: brighten
        self.teeth_colour = np.clip(white * np.array([1.0, 0.97, 0.9]) * 1.08, 0.0, 0.95)
        self._throat_colour = np.clip(self.lip_colour * 0.22, 0.02, 1.0)
        self._tongue_colour = np.clip(self.lip_colour * np.array([0.78, 0.55, 0.55]), 0, 1)
        # the painted teeth fade out when the reference mouth is open (it shows its own)
        self._teeth_weight = 1.0 - np.clip(self.mouth_open_src / self.config.open_reference, 0.0, 1.0)
        self.lid_colour = {}
        for side, (a, b, upper, lower, _, brow) in EYES.items():
            loop = eye_loop(side)
            upper_lid = face[loop]
            upper_lid = upper_lid[upper_lid[:, 1] <= np.median(upper_lid[:, 1])]
            brow_y = face[list(brow), 1].mean()
            lid = upper_lid.copy()
            lid[:, 1] = upper_lid[:, 1] + 0.4 * (brow_y - upper_lid[:, 1])
            self.lid_colour[side] = patch_median(lid)

    # ------------------------------------------------------------ measures
    def _mouth_opening(self, face: np.ndarray) -> np.ndarray:
        """Lip gap / mouth width ``[B]`` of faces ``[B, 478, 2]``."""
        return mouth_opening(face)

    def _eye_opening(self, face: np.ndarray, side: str) -> np.ndarray:
        a, b, upper, lower = EYES[side][:4]
        gap = np.linalg.norm(face[:, upper] - face[:, lower], axis=-1)
        width = np.linalg.norm(face[:, a] - face[:, b], axis=-1)
        return gap / np.maximum(width, 1e-6)

    # ------------------------------------------------------------ targets
    def _check(self, face_xy: np.ndarray, torso_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        face_xy = np.asarray(face_xy, dtype=np.float64)
        torso_xy = np.asarray(torso_xy, dtype=np.float64)
        if face_xy.ndim != 3 or face_xy.shape[1:] != (NUM_FACE_POINTS, 2):
            raise ValueError(f"warp renderer: face_xy must be [B, {NUM_FACE_POINTS}, 2] pixel positions, got "
                             f"{list(face_xy.shape)}")
        if torso_xy.shape != (face_xy.shape[0], NUM_TORSO_POINTS, 2):
            raise ValueError(f"warp renderer: torso_xy must be [B, {NUM_TORSO_POINTS}, 2] with B = "
                             f"{face_xy.shape[0]}, got {list(torso_xy.shape)}")
        bad = ~(np.isfinite(face_xy).all(axis=(1, 2)) & np.isfinite(torso_xy).all(axis=(1, 2)))
        if bad.any():
            frames = np.flatnonzero(bad)
            raise ValueError(f"warp renderer: target points contain NaN or infinite values in {len(frames)} frame(s) "
                             f"(first: batch index {int(frames[0])}); check R (a head-pose scale must be > 0 and "
                             "finite, no NaN in the motion curves)")
        return face_xy * self.scale, torso_xy * self.scale

    def target_points(self, face_xy: np.ndarray, torso_xy: np.ndarray) -> np.ndarray:
        """All mesh points ``[B, N, 2]`` in output px for targets given in 512-px crop coordinates, regularised so
        no triangle flips."""
        face, torso = self._check(face_xy, torso_xy)
        return self._regularise(*self._raw_targets(face, torso))

    def _raw_targets(self, face: np.ndarray, torso: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = face.shape[0]
        flat = face.transpose(1, 0, 2).reshape(NUM_FACE_POINTS, -1)
        face = face + (self._follow_matrix @ flat).reshape(NUM_FACE_POINTS, batch, 2).transpose(1, 0, 2)
        head = similarity_fit(self.source_face[self.stable_face], face[:, self.stable_face])
        body = similarity_fit(self.source_torso, torso)
        # the rings move with the head and carry part of the face oval's own (non-rigid) motion outward, so
        # hair and ears follow the cheek and jaw instead of shearing against them
        bend = face[:, self.ring_anchor] - _apply(head, self.source_face[self.ring_anchor])
        ring_head = _apply(head, self.ring_source) + self.ring_follow[None, :, None] * bend
        ring_body = _apply(body, self.ring_source)
        w = self.ring_head_weight[None, :, None]
        ring = w * ring_head + (1 - w) * ring_body
        border = np.broadcast_to(self.border, (batch, *self.border.shape))
        mid_up, mid_low = self.mouth_midline(face)
        used = self.mid_used
        mid = np.concatenate([mid_up[:, used], mid_low[:, used]], 1)
        target = np.concatenate([face, torso, mid, ring, border], 1)
        # fallback positions: the face and rings move rigidly with the head, the torso with its fit
        rigid_face = _apply(head, self.source_face)
        rigid_mid = np.concatenate([x[:, used] for x in self.mouth_midline(rigid_face)], 1)
        rigid = np.concatenate([rigid_face, _apply(body, self.source_torso), rigid_mid, ring, border], 1)
        return target, rigid

    def mouth_midline(self, face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the reference mouth's middle goes with the upper and with the lower lip, ``[B, 9, 2]`` each: the
        interior keeps its distance to its lip while the mouth opens, and shrinks evenly while it closes."""
        upper, lower = face[:, list(INNER_LIP_UPPER[1:-1])], face[:, list(INNER_LIP_LOWER[1:-1])]
        gap = np.linalg.norm(lower - upper, axis=-1)
        source_gap = 2 * np.linalg.norm(self.mouth_half_gap, axis=-1)
        keep = np.minimum(1.0, gap / np.maximum(source_gap, 1e-6))[..., None]
        split = 0.98 * keep * self.mouth_half_gap
        return upper + split, lower - split

    def _flipped(self, points: np.ndarray) -> np.ndarray:
        """Mask ``[..., F]`` of checked triangles (not holes or slivers) whose orientation at ``points [..., N, 2]``
        is flipped."""
        batch = points.shape[:-2]
        count = math.prod(batch)
        index = self._flip_index.get(count)
        if index is None:                      # flat positions of the corners' x, y in a batch of ``count`` frames
            offsets = np.arange(count)[:, None, None] * (2 * len(self.source))
            index = self._flip_index[count] = (offsets + self._checked_coords).swapaxes(0, 1)   # [6, count, M]
        x0, y0, x1, y1, x2, y2 = points.reshape(-1).take(index).reshape(6, *batch, -1)
        mask = np.zeros((*batch, len(self.triangles)), dtype=bool)
        mask[..., self._checked_ids] = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) <= self._fold_limit
        return mask

    def _regularise(self, target: np.ndarray, rigid: np.ndarray) -> np.ndarray:
        """Unfold the mesh: the motion of vertices of flipping triangles (e.g. the far cheek and nose of a turned
        head, where the 2-D projection folds over itself) is smoothed toward their neighbours' motion, the region
        growing until nothing flips; what still flips is pulled toward the rigid head motion, then toward its place
        in the reference (e.g. a ring point pushed past the fixed border). Only offenders and their rings move.
        Frames are independent; the smoothing steps run on all frames that still flip at once."""
        out = target.copy()
        steps = self.config.max_regularise_steps
        n, neighbours = len(self.source), self._neighbours
        movable = np.append(~self.fixed, False)                             # the pad entry never moves
        flipped = self._flipped(out)                                       # [B, F]
        for it in range(self.config.smoothing_steps):
            active = np.flatnonzero(flipped.any(1))
            if not active.size:
                break
            offenders = np.zeros((len(active), n + 1), dtype=bool)
            frame, triangle = np.nonzero(flipped[active])
            offenders[frame[:, None], self.triangles[triangle]] = True
            for _ in range(it // 10):                                     # stubborn folds: smooth a wider ring
                frame, vertex = np.nonzero(offenders[:, :n])
                offenders[frame[:, None], neighbours[vertex]] = True
            frame, ids = np.nonzero(offenders & movable)
            motion = np.zeros((len(active), n + 1, 2))                     # the pad's motion stays 0
            np.subtract(out[active], self.source, out=motion[:, :n])
            motion = motion.reshape(-1, 2)
            row = frame * (n + 1)
            average = motion[row[:, None] + neighbours[ids]].sum(1) / self.degree[ids]
            out[active[frame], ids] = self.source[ids] + 0.5 * (motion[row + ids] + average)
            flipped[active] = self._flipped(out[active])
        for b in np.flatnonzero(flipped.any(1)).tolist():
            points, folds = out[b], flipped[b]
            for goal in (rigid[b], self.source):
                step = 0
                while folds.any() and step < steps:
                    verts = np.unique(self.triangles[folds])
                    pull = 1.0 if step == steps - 1 else 0.5
                    points[verts] += pull * (goal[verts] - points[verts])
                    folds = self._flipped(points)
                    step += 1
            damp = 0
            while folds.any() and damp < 12:              # last resort: less motion, never a fold
                points[:] = self.source + 0.7 * (points - self.source)
                folds = self._flipped(points)
                damp += 1
        return out

    # ------------------------------------------------------------ rendering
    def _build_lookup(self) -> None:
        """Set-up for :meth:`_inverse_map`: which source triangle covers each pixel of the reference (holes drawn
        first so skin wins where they overlap), and the coarse grid's centres in output px."""
        lookup = np.full((self.size, self.size), -1, np.int32)
        fixed = np.round((self.source[self.triangles] + 0.5) * 16 - 8).astype(np.int32)     # pixel centres
        for f in np.concatenate([np.flatnonzero(self.hole), np.flatnonzero(~self.hole)]).tolist():
            cv2.fillConvexPoly(lookup, fixed[f], f, lineType=cv2.LINE_8, shift=4)
        missing = lookup < 0                                   # sliver-only pixels: the nearest drawn triangle
        if missing.any():
            _, (iy, ix) = ndimage.distance_transform_edt(missing, return_distances=True, return_indices=True)
            lookup = lookup[iy, ix]
        self._lookup = lookup.reshape(-1)
        self._thin = self._source_area < 3.0 * self.scale * self._longest_edge     # height < 3 px
        # triangles sharing a vertex with each triangle (itself included), padded by repeating itself
        faces = len(self.triangles)
        owner = np.repeat(np.arange(faces), 3)
        by_vertex = [[] for _ in range(len(self.source))]
        for f, v in zip(owner.tolist(), self.triangles.reshape(-1).tolist()):
            by_vertex[v].append(f)
        rings = [sorted(set().union(*(by_vertex[v] for v in tri))) for tri in self.triangles.tolist()]
        self._ring = np.array([ring + [f] * (max(map(len, rings)) - len(ring)) for f, ring in enumerate(rings)])
        g = min(self.config.map_size, self.size)
        centres = (np.arange(g, dtype=np.float64) + 0.5) * self.size / g - 0.5
        gx, gy = np.meshgrid(centres, centres)
        self._grid_targets = np.stack([gx.reshape(-1), gy.reshape(-1)]).astype(np.float32)   # [2, g*g]
        self._grid_size = g
        self._grid_pixels = (np.rint(gy) * self.size + np.rint(gx)).astype(np.int64).reshape(-1)
        self._walk_start: np.ndarray | None = None

    def _triangle_maps(self, points: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per frame of ``points [B, N, 2]``, the target->source maps of the triangles: ``inverse [B, F, 9]`` (rows
        ``[x, y, 1] @ inverse = barycentrics``, flattened), ``affine [B, 6, F]`` (rows x0 x1 y0 y1 c0 c1: source
        ``x = x0 tx + y0 ty + c0``, ``y = x1 tx + y1 ty + c1``), its float32 copy, ``valid [B, F]`` (non-degenerate)
        and ``penalty [B, F]`` (0; -inf for a degenerate triangle; a little below 0 for a hole: skin wins)."""
        x0, x1, x2 = (points[:, self.triangles[:, k], 0] for k in range(3))   # [B, F] target corners
        y0, y1, y2 = (points[:, self.triangles[:, k], 1] for k in range(3))
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        valid = np.abs(det) > 1e-6
        scale = 1.0 / np.where(valid, det, 1.0)
        # closed-form inverse of the rows [x, y, 1]: barycentric k = a_k x + b_k y + c_k; then -> source position
        a = ((y1 - y2) * scale, (y2 - y0) * scale, (y0 - y1) * scale)
        b = ((x2 - x1) * scale, (x0 - x2) * scale, (x1 - x0) * scale)
        c = ((x1 * y2 - x2 * y1) * scale, (x2 * y0 - x0 * y2) * scale, (x0 * y1 - x1 * y0) * scale)
        inverse = np.stack(a + b + c, -1)                                  # [B, F, 9]
        sx, sy = self._source_xy                                           # [3, F] each
        affine = np.stack([w[0] * s[0] + w[1] * s[1] + w[2] * s[2] for w in (a, b, c) for s in (sx, sy)], 1)
        penalty = np.where(valid, 0.0, -np.inf) - 1e-4 * self.hole
        return inverse, affine, affine.astype(np.float32), valid, penalty, points

    def _inverse_map(self, points: np.ndarray, maps: tuple[np.ndarray, ...] | None = None) -> tuple[np.ndarray, None]:
        """``cv2.remap``'s ``map1, map2`` (target pixel -> source pixel) for the mesh at ``points [N, 2]``: one
        float32 ``[size, size, 2]`` map of source ``x, y`` and ``None`` (``maps``: this frame's
        :meth:`_triangle_maps`, computed here when not given).

        On a coarse grid of target positions, each position walks through the fixed source triangulation: take the
        source triangle under the current guess (a per-pixel lookup table built once), map the target position
        back with that triangle's target->source affine map, repeat until the triangle no longer changes (two or
        three steps for smooth motion). The displacement is upsampled (it is continuous) and added to the pixel
        grid."""
        if maps is None:
            maps = tuple(m[0] for m in self._triangle_maps(points[None]))
        inverse, _, table, valid = maps[:4]
        tx, ty = self._grid_targets
        size, lookup = self.size, self._lookup
        # start from the triangles of the previous frame (motion is smooth), else the ones under each position
        triangle = self._walk_start if self._walk_start is not None else lookup.take(self._grid_pixels)
        # first step on every position at once
        sx = tx * table[0].take(triangle) + ty * table[2].take(triangle) + table[4].take(triangle)
        sy = tx * table[1].take(triangle) + ty * table[3].take(triangle) + table[5].take(triangle)
        ix = np.clip(sx + 0.5, 0, size - 1).astype(np.int32)
        iy = np.clip(sy + 0.5, 0, size - 1).astype(np.int32)
        iy *= size
        iy += ix
        under = lookup.take(iy)
        active = np.flatnonzero(under != triangle)
        now = under[active]
        for step in range(8):
            if not active.size:
                break
            previous = triangle[active]
            triangle[active] = now
            if step == 7:
                break
            px, py = tx[active], ty[active]
            sx[active] = px * table[0].take(now) + py * table[2].take(now) + table[4].take(now)
            sy[active] = px * table[1].take(now) + py * table[3].take(now) + table[5].take(now)
            ix = np.minimum(np.maximum(sx[active] + 0.5, 0), size - 1).astype(np.int32)
            iy = np.minimum(np.maximum(sy[active] + 0.5, 0), size - 1).astype(np.int32)
            under = lookup.take(iy * size + ix)
            moving = under != now
            active, now = active[moving], under[moving]
        self._walk_start = triangle
        if active.size:                    # oscillating or folded: test the triangles around the last two visited
            candidates = np.concatenate([self._ring[triangle[active]], self._ring[previous]], 1)
            self._locate(active, candidates, maps, sx, sy)
        # the lookup rounds to whole pixels: a thin source triangle (closed lips, lids) stretched wide in the
        # target may be accepted for positions well outside it; test those exactly
        thin = np.flatnonzero(self._thin.take(triangle))
        if thin.size:
            f = triangle[thin]
            c = inverse[f]                                                 # [n, 9]
            bary = tx[thin, None] * c[:, 0:3] + ty[thin, None] * c[:, 3:6] + c[:, 6:9]
            outside = thin[(bary.min(1) < -1e-3) | ~valid[f]]
            if outside.size:
                candidates = self._ring[triangle[outside]]
                self._locate(outside, candidates, maps, sx, sy)
        g = self._grid_size
        self._coarse_source = (sx.reshape(g, g), sy.reshape(g, g))
        disp = np.stack([sx - tx, sy - ty], -1).reshape(g, g, 2)             # float32
        if g != self.size:
            disp = cv2.resize(disp, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        disp += self._grid
        return disp, None

    def _locate(self, cells: np.ndarray, candidates: np.ndarray, maps: tuple[np.ndarray, ...], sx: np.ndarray,
                sy: np.ndarray) -> None:
        """Source positions of grid ``cells`` from the candidate triangle ``[n, K]`` that contains them in the
        target (skin before holes); cells in none of them (a fold left over) search every triangle (those whose
        bounding box holds them)."""
        chosen, inside = self._best_triangle(cells, candidates, maps)
        lost = cells[~inside]
        if lost.size:
            # target bounding boxes, grown by what the inside test tolerates (1e-3 of an altitude)
            x, y = np.moveaxis(maps[5][self.triangles], -1, 0)                  # [F, 3] each
            x0, y0 = (np.minimum(np.minimum(c[:, 0], c[:, 1]), c[:, 2]) for c in (x, y))
            x1, y1 = (np.maximum(np.maximum(c[:, 0], c[:, 1]), c[:, 2]) for c in (x, y))
            margin = 1e-3 * (x1 - x0 + y1 - y0) + 1e-6
            x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
        tx, ty = self._grid_targets
        for cell in lost.tolist():
            x, y = tx[cell], ty[cell]
            near = np.flatnonzero((x0 <= x) & (y0 <= y) & (x1 >= x) & (y1 >= y))
            if near.size:
                found, ok = self._best_triangle(np.array([cell]), near[None], maps)
                if ok[0]:
                    self._assign(np.array([cell]), found, maps, sx, sy)
        self._assign(cells[inside], chosen[inside], maps, sx, sy)

    def _best_triangle(self, cells: np.ndarray, candidates: np.ndarray, maps: tuple[np.ndarray, ...]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """For grid ``cells`` the first candidate ``[n, K]`` triangle that contains them best (skin before holes),
        and whether it contains them (barycentrics above -1e-3)."""
        inverse, penalty = maps[0], maps[4]
        tx, ty = self._grid_targets
        c = inverse[candidates]                                           # [n, K, 9]
        bary = tx[cells, None, None] * c[..., 0:3] + ty[cells, None, None] * c[..., 3:6] + c[..., 6:9]
        score = bary.min(-1) + penalty[candidates]
        rows = np.arange(len(cells))
        best = score.argmax(1)
        return candidates[rows, best], score[rows, best] > -1e-3

    def _assign(self, cells: np.ndarray, chosen: np.ndarray, maps: tuple[np.ndarray, ...], sx: np.ndarray,
                sy: np.ndarray) -> None:
        affine = maps[1]
        tx, ty = self._grid_targets
        sx[cells] = tx[cells] * affine[0].take(chosen) + ty[cells] * affine[2].take(chosen) + affine[4].take(chosen)
        sy[cells] = tx[cells] * affine[1].take(chosen) + ty[cells] * affine[3].take(chosen) + affine[5].take(chosen)

    def render_points(self, face_xy: np.ndarray, torso_xy: np.ndarray) -> np.ndarray:
        """face_xy ``[B, 478, 2]``, torso_xy ``[B, 18, 2]`` float image-space px of the 512-px crop (what
        :func:`moda_core.projection.project_repr` returns, x, y) -> frames float32 ``[B, size, size, 3]`` in 0..1."""
        face_xy = np.asarray(face_xy.numpy() if hasattr(face_xy, "numpy") else face_xy, dtype=np.float64)
        torso_xy = np.asarray(torso_xy.numpy() if hasattr(torso_xy, "numpy") else torso_xy, dtype=np.float64)
        face, torso = self._check(face_xy, torso_xy)
        points = self._regularise(*self._raw_targets(face, torso))
        mouth_open = self._mouth_opening(face)
        mid_up, mid_low = self.mouth_midline(face)
        eye_open = {side: self._eye_opening(face, side) for side in EYES}
        frames = np.empty((face.shape[0], self.size, self.size, 3), np.float32)
        maps = self._triangle_maps(points)
        for b in range(face.shape[0]):
            map1, map2 = self._inverse_map(points[b], tuple(m[b] for m in maps))
            frame = frames[b]
            if self._plate is None:
                cv2.remap(self.reference, map1, map2, dst=frame, interpolation=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)
                _clip_unit(frame)                                        # bicubic overshoots a little
            else:
                self._composite(frame, map1)
            self._paint_mouth(frame, face[b], float(mouth_open[b]), (mid_up[b], mid_low[b]))
            for side in EYES:
                self._paint_eye(frame, face[b], side, float(eye_open[side][b]))
        return frames

    def _composite(self, frame: np.ndarray, source_map: np.ndarray) -> None:
        """The warped person over the still background into ``frame``: the plate, then, strip by strip of rows,
        the bicubic remap over the columns the person (its alpha) reaches, blended with the plate where the alpha
        is below 1 (the remap costs most: the background and the plate-only columns are never remapped)."""
        alpha = cv2.remap(self._alpha, *self._coarse_source, interpolation=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)                # on the coarse grid: a soft edge
        if alpha.shape[0] != self.size:
            alpha = cv2.resize(alpha, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        np.copyto(frame, self._plate)
        height, width = self._strip_height, self.size
        starts = np.arange(0, self.size, height)
        whole = self.size // height * height                           # rows in whole strips, then the rest
        seen = alpha[:whole].reshape(-1, height, width).max(1) > 0     # [strips, W]: some person in the column
        opaque = alpha[:whole].reshape(-1, height, width).min(1) >= 1  # only person in the column
        if whole < self.size:
            seen = np.concatenate([seen, alpha[whole:].max(0, keepdims=True) > 0])
            opaque = np.concatenate([opaque, alpha[whole:].min(0, keepdims=True) >= 1])
        has, has_opaque = seen.any(1), opaque.any(1)
        first, last = seen.argmax(1), width - seen[:, ::-1].argmax(1)
        opaque_first, opaque_last = opaque.argmax(1), width - opaque[:, ::-1].argmax(1)
        # blend only left and right of the opaque columns when they form one run, else the whole span
        split = has_opaque & (opaque.sum(1) == opaque_last - opaque_first)
        stops = np.append(starts[1:], self.size)
        transparent = None
        for top, bottom, c0, c1, o0, o1, cut in zip(*(v[has].tolist() for v in (
                starts, stops, first, last, opaque_first, opaque_last, split))):
            region = frame[top:bottom, c0:c1]
            cv2.remap(self.reference, source_map[top:bottom, c0:c1], None, dst=region, interpolation=cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_REPLICATE)
            _clip_unit(region)                                         # bicubic overshoots a little
            if transparent is None:
                transparent = 1.0 - alpha
            for x0, x1 in ((c0, o0), (o1, c1)) if cut else ((c0, c1),):
                if x1 > x0:
                    part = frame[top:bottom, x0:x1]
                    cv2.blendLinear(part, self._plate[top:bottom, x0:x1], alpha[top:bottom, x0:x1],
                                    transparent[top:bottom, x0:x1], dst=part)

    # ------------------------------------------------------------ painting
    def _roi(self, polygon: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        x0, y0 = np.floor(polygon.min(0) - pad).astype(int)
        x1, y1 = np.ceil(polygon.max(0) + pad).astype(int) + 1
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size), min(y1, self.size)
        return (x0, y0, x1, y1) if x1 > x0 + 1 and y1 > y0 + 1 else None

    def _mask(self, polygon: np.ndarray, roi: tuple[int, int, int, int], feather: float,
              grow: float = 0.0) -> np.ndarray:
        x0, y0, x1, y1 = roi
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        cv2.fillPoly(mask, [np.round((polygon - [x0, y0]) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        if grow > 0:
            k = max(1, int(round(grow)))
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        if feather > 0:
            mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=feather)
        return mask

    def mouth_fill_strength(self, opening: float) -> float:
        """0..1: how much synthetic mouth interior is shown for a lip gap / mouth width of ``opening``."""
        extra = opening - self.mouth_open_src - self.config.mouth_open_threshold
        return min(max(float(extra / self.config.mouth_fill_ramp), 0.0), 1.0)

    def _paint_mouth(self, frame: np.ndarray, face: np.ndarray, opening: float,
                     midline: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """``midline``: :meth:`mouth_midline` of ``face`` (computed here when not given)."""
        strength = self.mouth_fill_strength(opening)
        if strength <= 0:
            return
        mid_up, mid_low = midline if midline is not None else (x[0] for x in self.mouth_midline(face[None]))
        corners = face[list(MOUTH_CORNERS)]
        upper_line = np.concatenate([corners[:1], mid_up, corners[1:]])
        lower_line = np.concatenate([corners[:1], mid_low, corners[1:]])
        polygon = np.concatenate([upper_line, lower_line[-2:0:-1]])
        feather = self.config.mouth_feather * self.scale
        roi = self._roi(polygon, 3 * feather + 2)
        if roi is None:
            return
        x0, y0, x1, y1 = roi
        mask = self._mask(polygon, roi, feather) * strength
        region = frame[y0:y1, x0:x1]
        if self._mouth_image is not None:                # the subject's own open mouth, moved onto these lips
            region += mask[..., None] * (self._own_interior(face, roi) - region)
            return
        left, right = face[MOUTH_CORNERS[0]], face[MOUTH_CORNERS[1]]
        axis = right - left
        width = max(float(np.linalg.norm(axis)), 1e-6)
        e_u = axis / width
        e_v = np.array([-e_u[1], e_u[0]])                                  # points down for an upright face
        rel_x = np.arange(x0, x1, dtype=np.float64)[None] - left[0]         # [1, w], broadcast with [h, 1]
        rel_y = np.arange(y0, y1, dtype=np.float64)[:, None] - left[1]
        u = (rel_x * e_u[0] + rel_y * e_u[1]) / width                      # 0 at one corner, 1 at the other
        w = rel_x * e_v[0] + rel_y * e_v[1]

        def curve(points):
            p = points - left
            cu, cw = p @ e_u / width, p @ e_v
            order = np.argsort(cu)
            return np.interp(u, cu[order], cw[order])

        upper, lower = curve(upper_line), curve(lower_line)
        gap = np.maximum(lower - upper, 1e-3)
        v = np.clip((w - upper) / gap, 0.0, 1.0)                           # 0 at the upper edge, 1 at the lower
        gap_px = float(np.linalg.norm(mid_up[4] - mid_low[4]))
        throat = self._throat_colour
        # darker deep inside, a little lighter toward the lips
        depth = 1.0 - 4.0 * v * (1.0 - v)
        colour = throat[None, None] * (0.7 + 0.6 * depth[..., None])
        # tongue: a rounded bump on the lower lip, visible once the mouth is open
        tongue_h = np.clip(0.45 * gap_px / np.maximum(gap, 1e-3), 0.0, 0.45)
        tongue = ((u - 0.5) / 0.32) ** 2 + ((1.0 - v) / np.maximum(tongue_h, 1e-3)) ** 2
        tongue_alpha = np.clip((1.0 - tongue) * 3.0, 0.0, 1.0)[..., None]
        tongue_colour = self._tongue_colour
        tongue_shade = np.clip(0.45 + 0.55 * (1.0 - tongue), 0.45, 1.0)[..., None]     # darker toward the back
        colour = colour * (1 - tongue_alpha) + tongue_colour * tongue_alpha * tongue_shade
        teeth_weight = self._teeth_weight
        if self.config.teeth and teeth_weight > 0:
            teeth_px = min(0.35 * gap_px, 0.11 * width)
            teeth_v = teeth_px / gap
            corner = np.clip(np.abs(2.0 * u - 1.0), 0.0, 1.0)
            shade = (1.0 - 0.8 * corner ** 2)[..., None]                         # into the dark toward the corners
            teeth_v = teeth_v * (1.0 - 0.5 * corner ** 2)                           # and shorter there
            tooth_lines = 1.0 - 0.06 * (np.cos(2 * np.pi * (u - 0.5) * 7.0) > 0.9)
            teeth_colour = self.teeth_colour
            edge = np.clip((teeth_v - v * 1.0) * gap / max(0.8 * self.scale, 0.5), 0.0, 1.0)[..., None]
            teeth = teeth_colour * shade * tooth_lines[..., None]
            edge = edge * teeth_weight
            colour = colour * (1 - edge) + teeth * edge
        region += mask[..., None] * (colour.astype(np.float32) - region)

    def _own_interior(self, face: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
        """The stored open-mouth frame over ``roi``, moved by the least-squares affine map that takes this
        frame's inner lips (``face`` in output px) onto the stored frame's."""
        x0, y0, x1, y1 = roi
        loop = inner_lip_loop()
        target = np.concatenate([face[loop], np.ones((len(loop), 1))], 1)
        to_source = np.linalg.lstsq(target, self._mouth_points[loop], rcond=None)[0].T      # [2, 3]
        to_source[:, 2] += to_source[:, :2] @ [x0, y0]
        return cv2.warpAffine(self._mouth_image, to_source, (x1 - x0, y1 - y0),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    def eye_lid_strength(self, side: str, opening: float) -> float:
        """0..1: how much eyelid skin covers the ``side`` eye at a lid gap / eye width of ``opening``."""
        reference = self.eye_open_src[side]
        if reference <= 1e-3:
            return 0.0
        closure = 1.0 - opening / reference
        cfg = self.config
        return min(max(float((closure - cfg.eye_close_start) / (cfg.eye_close_full - cfg.eye_close_start)), 0.0), 1.0)

    def _paint_eye(self, frame: np.ndarray, face: np.ndarray, side: str, opening: float) -> None:
        strength = self.eye_lid_strength(side, opening)
        if strength <= 0:
            return
        polygon = face[eye_loop(side)]
        feather = self.config.eye_feather * self.scale
        roi = self._roi(polygon, 3 * feather + 3)
        if roi is None:
            return
        x0, y0, x1, y1 = roi
        mask = self._mask(polygon, roi, feather, grow=1.0 * self.scale) * strength
        lid = self.lid_colour[side]
        region = frame[y0:y1, x0:x1]
        region += mask[..., None] * (lid.astype(np.float32) - region)
        # lash line where the lids meet: the lower lid's contour
        a, b, upper, lower = EYES[side][:4]
        loop = eye_loop(side).tolist()
        ia, ib = loop.index(a), loop.index(b)
        lower_path = [i for i in (loop[ia:ib + 1] if ia < ib else loop[ib:] + loop[:ia + 1])]
        if lower not in lower_path:
            lower_path = [i for i in loop if i not in lower_path] + [a, b]
        line = face[lower_path] - [x0, y0]
        lash = np.zeros(mask.shape, np.float32)
        cv2.polylines(lash, [np.round(line * 16).astype(np.int32)], False, 1.0,
                      max(1, int(round(1.2 * self.scale))), cv2.LINE_AA, shift=4)
        lash = cv2.GaussianBlur(lash, (0, 0), sigmaX=max(0.6 * self.scale, 0.5)) * strength
        region += lash[..., None] * (lid.astype(np.float32) * 0.45 - region)


def _clip_unit(image: np.ndarray) -> None:
    """Clip float32 ``image`` (a view may do) to 0..1 in place; as ``np.clip``, a few times faster."""
    cv2.threshold(image, 1.0, 1.0, cv2.THRESH_TRUNC, dst=image)
    cv2.threshold(image, 0.0, 0.0, cv2.THRESH_TOZERO, dst=image)


def mouth_opening(face: np.ndarray) -> np.ndarray:
    """Lip gap / mouth width ``[B]`` of faces ``[B, 478, 2]``."""
    gap = np.linalg.norm(face[:, LIP_GAP[0]] - face[:, LIP_GAP[1]], axis=-1)
    width = np.linalg.norm(face[:, MOUTH_CORNERS[0]] - face[:, MOUTH_CORNERS[1]], axis=-1)
    return gap / np.maximum(width, 1e-6)


def most_open_mouth(faces: np.ndarray) -> int:
    """Index of the frame whose lips are furthest apart (lip gap / mouth width) among faces ``[T, 478, 2]``:
    the frame a video subject's mouth interior is taken from."""
    faces = np.asarray(faces, dtype=np.float64)
    if faces.ndim != 3 or faces.shape[0] < 1 or faces.shape[1:] != (NUM_FACE_POINTS, 2):
        raise ValueError(f"most_open_mouth: faces must be [T >= 1, {NUM_FACE_POINTS}, 2], got {list(faces.shape)}")
    return int(np.argmax(np.nan_to_num(mouth_opening(faces), nan=-1.0)))


def reference_person_mask(subject: Subject, models_dir=None) -> np.ndarray:
    """Person probability ``[H, W]`` of ``subject``'s reference crop from the selfie segmenter (the model the
    preprocessing uses), for :class:`WarpRenderer`'s ``person_mask``."""
    from moda_core.preprocess.segmentation import PersonSegmenter

    image = subject.reference_image.numpy() if hasattr(subject.reference_image, "numpy") else subject.reference_image
    with PersonSegmenter(models_dir) as segmenter:
        return segmenter.person_probability(np.ascontiguousarray(image[..., :3], dtype=np.uint8))


def source_points(subject: Subject, face_center: Sequence[float] | str = AUTHORS_INFERENCE_FACE_CENTER
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The subject's own face ``[478, 2]`` and torso ``[18, 2]`` in its reference crop (512 px), placed as if
    projected with ``face_center``.

    Uses the detected points stored on the subject when it has them (video subjects), else its template and
    torso projected with its mean pose (exact for photo subjects).
    """
    import torch

    from moda_core.geometry import canonical_to_image
    from moda_core.projection import resolve_face_center

    face_center = resolve_face_center(face_center)
    pose = subject.mean_head_pose.to(torch.float64)
    template = subject.template.to(torch.float64)
    projected = canonical_to_image(template, pose, face_center=face_center)[:, :2]
    stored = getattr(subject, "reference_points", None)
    if stored is None:
        torso = canonical_to_image(subject.mean_torso.to(torch.float64), pose, face_center=face_center)[:, :2]
        return projected.numpy(), torso.numpy()
    # the stored points are where the canonicalisation put them; shift like the projection's centre does
    consistent = canonical_to_image(template, pose, face_center=CANONICALISATION_FACE_CENTER)[:, :2]
    shift = (projected - consistent).mean(0).numpy()
    points = stored.to(torch.float64).numpy()
    return points[:NUM_FACE_POINTS] + shift, points[NUM_FACE_POINTS:] + shift
