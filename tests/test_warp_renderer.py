"""The warp renderer on real shared portraits: identity, shifts, mouth interior, eyelids, no flipped triangles,
bad targets, and the pipeline / CLI paths with tiny MODA and FaCo networks (no renderer weights)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from moda_core.pipeline import AnimateOptions, MODAModels, render_stream
from moda_core.preprocess import subject_from_photo
from moda_core.projection import project_repr
from moda_core.repr import TalkingRepr
from moda_core.warp_renderer import (INNER_LIP_LOWER, LIP_GAP, WarpConfig, WarpRenderer, eye_loop,
                                     inner_lip_loop, most_open_mouth, reference_person_mask, signed_areas,
                                     source_points)

PORTRAITS = ("macron.png", "obama.jpg", "hallo_woman.jpg", "sadtalker_woman.png")


@pytest.fixture(scope="module")
def subjects(data_dir) -> dict:
    return {name: subject_from_photo(data_dir / "portraits" / name, models_dir=data_dir / "models", name=name)
            for name in PORTRAITS}


@pytest.fixture(scope="module")
def macron(subjects):
    return subjects["macron.png"][0]


def still_repr(frames: int = 2, **pose_offsets: float) -> TalkingRepr:
    """R offsets: the subject's own face and torso, head pose offset by ``pose_offsets`` (e.g. yaw=25)."""
    head = torch.zeros(1, frames, 7)
    for axis, value in pose_offsets.items():
        head[..., ("yaw", "pitch", "roll", "tx", "ty", "tz", "scale").index(axis)] = value
    return TalkingRepr(mouth=torch.zeros(1, frames, 40, 3), eyes=torch.zeros(1, frames, 60, 3), head_pose=head,
                       torso=torch.zeros(1, frames, 18, 3), fps=30.0, is_offset=True)


def targets(r: TalkingRepr, subject, face_center="authors"):
    face, torso = project_repr(r, subject, face_center=face_center)
    return face[..., :2].numpy(), torso[..., :2].numpy()


def to_levels(frames: np.ndarray) -> np.ndarray:
    return np.round(frames * 255).astype(np.int64)


def mouth_box(face: np.ndarray, pad: float = 12) -> tuple[slice, slice]:
    lips = face[inner_lip_loop()]
    x0, y0 = np.floor(lips.min(0) - pad).astype(int)
    x1, y1 = np.ceil(lips.max(0) + pad).astype(int)
    return slice(y0, y1), slice(x0, x1)


def test_photo_template_reprojects_to_detected_landmarks(subjects):
    for subject, diagnostics in subjects.values():
        face, _ = source_points(subject, face_center="canonical")
        assert np.abs(face - diagnostics.landmarks[:, :2]).max() < 0.01


@pytest.mark.parametrize("face_center", ["authors", "canonical"])
def test_identity_reproduces_the_reference(macron, face_center):
    renderer = WarpRenderer(macron, face_center=face_center)
    face, torso = targets(still_repr(), macron, face_center)
    frames = renderer.render_points(face, torso)
    assert frames.shape == (2, 512, 512, 3) and frames.dtype == np.float32
    diff = np.abs(to_levels(frames[0]) - macron.reference_image.numpy().astype(np.int64))
    rows, cols = mouth_box(face[0])
    diff[rows, cols] = 0
    assert diff.max() <= 1


def test_known_shift_moves_the_face_by_that_amount(macron):
    renderer = WarpRenderer(macron)
    face, torso = targets(still_repr(1), macron)
    dx, dy = 6, -4
    shifted = renderer.render_points(face + [dx, dy], torso + [dx, dy])[0]
    reference = renderer.reference
    # the inner face (eyes to chin) moves as one piece: compare with the reference moved by (dx, dy)
    x0, y0 = np.floor(face[0, [33, 263, 152]].min(0)).astype(int)
    x1, y1 = np.ceil(face[0, [33, 263, 152]].max(0)).astype(int)
    moved = to_levels(shifted[y0 + dy:y1 + dy, x0 + dx:x1 + dx])
    assert np.abs(moved - to_levels(reference[y0:y1, x0:x1])).max() <= 1
    assert np.abs(to_levels(shifted[y0:y1, x0:x1]) - to_levels(reference[y0:y1, x0:x1])).mean() > 3
    # far corners (fixed border) stay still
    assert np.abs(to_levels(shifted[:8, :8]) - to_levels(reference[:8, :8])).max() <= 1


def test_still_background_behind_a_moving_person(macron, data_dir):
    mask = reference_person_mask(macron, data_dir / "models")
    assert mask.shape == (512, 512) and 0.1 < (mask > 0.5).mean() < 0.9
    renderer = WarpRenderer(macron, person_mask=mask)
    plain = WarpRenderer(macron)
    face, torso = targets(still_repr(1), macron)
    still = renderer.render_points(face, torso)[0]
    diff = np.abs(to_levels(still) - macron.reference_image.numpy().astype(np.int64))
    rows, cols = mouth_box(face[0])
    diff[rows, cols] = 0
    assert diff.max() <= 1, "an unmoved frame is the reference"
    dx = 30
    moved = renderer.render_points(face + [dx, 0], torso + [dx, 0])[0]
    moved_plain = plain.render_points(face + [dx, 0], torso + [dx, 0])[0]
    # the person, its soft edge and the rim of background that moves with it
    person = cv2.dilate((mask > 0.1).astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    shifted = np.zeros_like(person)
    shifted[:, dx:] = person[:, :-dx]
    background = ~(person | shifted)
    assert background.mean() > 0.1
    # background pixels stay exactly where they are (the plain warp drags those near the head along)
    assert np.abs(moved - renderer.reference)[background].max() < 1e-4
    assert np.abs(moved_plain - plain.reference)[background].max() > 0.05
    # the strip the person left (left edge of the head) shows background, not a stretched head
    left = (mask > 0.1) & ~shifted
    left[int(face[0, :, 1].max()):] = False                          # head height only (the torso meets the border)
    assert left.sum() > 100
    assert np.abs(moved - renderer._plate)[left].mean() < 0.02
    with pytest.raises(ValueError, match="person_mask must be a finite"):
        WarpRenderer(macron, person_mask=np.full((4, 4, 3), 0.5))


def open_mouth(face: np.ndarray, amount: float) -> np.ndarray:
    """Move the lower inner lip, lower lip and chin down by up to ``amount`` px (more near the mouth centre)."""
    out = face.copy()
    lip_y = face[:, LIP_GAP[1], 1][:, None]
    below = face[..., 1] > lip_y + 1.0
    centre_x = face[:, LIP_GAP[1], 0][:, None]
    width = np.abs(face[:, 78, 0] - face[:, 308, 0])[:, None]
    falloff = np.clip(1.0 - np.abs(face[..., 0] - centre_x) / width, 0.3, 1.0)
    out[..., 1] += np.where(below, amount * falloff, 0.0)
    out[:, list(INNER_LIP_LOWER[1:-1]), 1] = face[:, list(INNER_LIP_LOWER[1:-1]), 1] + amount * 0.9
    return out


def test_mouth_interior_appears_only_when_the_lips_open(subjects):
    subject = subjects["hallo_woman.jpg"][0]
    renderer = WarpRenderer(subject)
    face, torso = targets(still_repr(1), subject)
    assert renderer.mouth_open_src < 0.05, "this reference mouth is closed"
    slightly = open_mouth(face, 0.5)
    assert renderer.mouth_fill_strength(float(renderer._mouth_opening(slightly)[0])) == 0.0
    wide = open_mouth(face, 18.0)
    assert renderer.mouth_fill_strength(float(renderer._mouth_opening(wide)[0])) == 1.0
    frame = renderer.render_points(wide, torso)[0]
    plain = WarpRenderer(subject, config=WarpConfig(mouth_open_threshold=10.0)).render_points(wide, torso)[0]
    cavity = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(cavity, [np.round(wide[0, inner_lip_loop()]).astype(np.int32)], 1)
    inside = cv2.erode(cavity, np.ones((5, 5), np.uint8)).astype(bool)
    assert inside.sum() > 200
    luma = frame.mean(-1)
    # the painted interior is dark in the middle (throat) and differs from the stretched lips of the plain warp
    assert np.percentile(luma[inside], 25) < 0.2
    assert np.abs(frame - plain)[inside].mean() > 0.1
    outside = ~cv2.dilate(cavity, np.ones((15, 15), np.uint8)).astype(bool)
    assert np.abs(frame - plain)[outside].max() < 1e-6, "only the cavity is painted"


def test_video_subject_takes_its_mouth_interior_from_its_own_frame(subjects):
    subject = subjects["hallo_woman.jpg"][0]
    face, torso = targets(still_repr(1), subject)
    frames = np.concatenate([face, open_mouth(face, 3.0), open_mouth(face, 16.0), open_mouth(face, 8.0)])
    assert most_open_mouth(frames) == 2
    texture = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 2.0)                 # the "video frame" with its mouth open
    own = WarpRenderer(subject, open_mouth_frame=(texture, frames[2]))
    painted = WarpRenderer(subject)
    wide = open_mouth(face, 14.0)
    frame, synthetic = own.render_points(wide, torso)[0], painted.render_points(wide, torso)[0]
    cavity = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(cavity, [np.round(wide[0, inner_lip_loop()]).astype(np.int32)], 1)
    inside = cv2.erode(cavity, np.ones((5, 5), np.uint8)).astype(bool)
    assert inside.sum() > 150
    # the cavity shows the stored frame moved onto these lips (the lips differ a little: a close affine fit)
    loop = inner_lip_loop()
    to_source = np.linalg.lstsq(np.concatenate([wide[0, loop], np.ones((len(loop), 1))], 1), frames[2, loop],
                                rcond=None)[0].T
    expected = cv2.warpAffine(texture.astype(np.float32) / 255, to_source, (512, 512),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(frame - expected)[inside].mean() < 0.02
    assert np.abs(frame - synthetic)[inside].mean() > 0.1
    outside = ~cv2.dilate(cavity, np.ones((15, 15), np.uint8)).astype(bool)
    assert np.abs(frame - synthetic)[outside].max() < 1e-6, "only the cavity differs"
    closed = own.render_points(face, torso)[0]
    assert np.abs(closed - painted.render_points(face, torso)[0]).max() < 1e-6, "a closed mouth shows no interior"
    with pytest.raises(ValueError, match="open_mouth_frame must be"):
        WarpRenderer(subject, open_mouth_frame=(texture, frames[2, :100]))


def test_closed_eyes_are_covered_with_eyelid_skin(macron):
    renderer = WarpRenderer(macron)
    face, torso = targets(still_repr(1), macron)
    closed = face.copy()
    for side in ("left", "right"):
        loop = eye_loop(side)
        middle_y = face[0, loop, 1].mean()
        closed[0, loop, 1] = middle_y + 0.1 * (face[0, loop, 1] - middle_y)
        assert renderer.eye_lid_strength(side, float(renderer._eye_opening(closed, side)[0])) == 1.0
        assert renderer.eye_lid_strength(side, float(renderer._eye_opening(face, side)[0])) == 0.0
    frame = renderer.render_points(closed, torso)[0]
    for side in ("left", "right"):
        x0, y0 = np.floor(closed[0, eye_loop(side)].min(0)).astype(int)
        x1, y1 = np.ceil(closed[0, eye_loop(side)].max(0)).astype(int)
        patch = frame[y0 - 1:y1 + 2, x0 + 3:x1 - 3]
        # skin-coloured (lid colour sampled above the eye), no dark iris line left except the thin lash line
        assert np.median(np.abs(patch - renderer.lid_colour[side]).max(-1)) < 0.08


@pytest.mark.parametrize("yaw", [-25.0, 25.0])
def test_no_flipped_triangles_with_turned_heads(subjects, yaw):
    for subject, _ in subjects.values():
        renderer = WarpRenderer(subject)
        r = still_repr(2, yaw=yaw)
        face, torso = targets(r, subject)
        points = renderer.target_points(face, torso)
        areas = signed_areas(points, renderer.triangles)[:, renderer.checked]
        assert (areas > -renderer.fold_allowance).all(), f"{subject.name}: flipped triangles at yaw {yaw}"
        assert (areas[:, renderer.fold_allowance == 0] > 0).all(), "only slivers may fold, by under a pixel"
        # the head really turned: only folds are smoothed, most points follow their targets
        error = np.linalg.norm(points[:, :478] - face * renderer.scale, axis=-1)
        assert np.median(error) < 2.0
        assert np.abs(points[:, :478].mean(1) - face.mean(1) * renderer.scale).max() < 3.0
        frames = renderer.render_points(face, torso)
        assert np.isfinite(frames).all() and 0 <= frames.min() and frames.max() <= 1


def test_inverse_map_inverts_the_mesh(subjects):
    """Points inside the mesh's triangles, moved with their triangle, are mapped back to where they came from
    (turned head, open mouth, second frame started from the first frame's walk)."""
    subject = subjects["hallo_woman.jpg"][0]
    renderer = WarpRenderer(subject)
    face, torso = targets(still_repr(2, yaw=12.0, pitch=-6.0), subject)
    face = open_mouth(face, 10.0)
    points = renderer.target_points(face, torso)
    rng = np.random.default_rng(0)
    for b in range(2):
        map_xy, _ = renderer._inverse_map(points[b])
        area = signed_areas(points[b], renderer.triangles)
        keep = np.flatnonzero(renderer.checked & (area > 40.0))
        faces = rng.choice(keep, 300, replace=False)
        weights = rng.dirichlet((4.0, 4.0, 4.0), len(faces))
        source = np.einsum("fk,fkd->fd", weights, renderer.source[renderer.triangles[faces]])
        target = np.einsum("fk,fkd->fd", weights, points[b][renderer.triangles[faces]])
        inside = ((target > 2) & (target < 509)).all(1)
        back = cv2.remap(map_xy, target[inside, None].astype(np.float32), None, cv2.INTER_LINEAR)[:, 0]
        error = np.linalg.norm(back - source[inside], axis=-1)
        assert np.median(error) < 0.3 and np.percentile(error, 95) < 1.5, (b, np.percentile(error, [50, 95, 100]))


def test_frames_do_not_depend_on_the_previous_frame(subjects):
    """The inverse map starts each frame from the previous frame's triangles; the result must be the same as
    from scratch (a mouth opening and closing while the head turns: thin lip triangles stretch wide)."""
    subject = subjects["hallo_woman.jpg"][0]
    face, torso = targets(still_repr(6, yaw=6.0), subject)
    face = np.concatenate([open_mouth(face[k:k + 1], amount) for k, amount in enumerate((0, 6, 14, 18, 9, 2))])
    sequence = WarpRenderer(subject).render_points(face, torso)
    for k in (2, 3, 4):
        alone = WarpRenderer(subject).render_points(face[k:k + 1], torso[k:k + 1])[0]
        differs = np.abs(sequence[k] - alone).max(-1) > 0.02
        assert differs.sum() < 100, (k, differs.sum())        # a few pixels where hole triangles overlap skin


def test_unfolding_a_batch_equals_unfolding_frame_by_frame(subjects):
    """The unfolding steps run on all frames of a batch at once; each frame must come out exactly as alone (frames
    that need different numbers of steps: the head turning from 0 to 25 deg)."""
    subject = subjects["obama.jpg"][0]
    renderer = WarpRenderer(subject)
    faces, torsos = zip(*(targets(still_repr(1, yaw=yaw, pitch=-yaw / 3), subject) for yaw in (0, 8, 16, 25)))
    face, torso = np.concatenate(faces), np.concatenate(torsos)
    face = open_mouth(face, 6.0)
    raw, rigid = renderer._raw_targets(*renderer._check(face, torso))
    flips = renderer._flipped(raw).sum(1)
    assert flips[0] < flips[-1] and flips[-1] > 0                     # some frames need (more) unfolding
    batch = renderer._regularise(raw, rigid)
    assert not renderer._flipped(batch).any()
    for k in range(len(face)):
        assert np.array_equal(batch[k], renderer._regularise(raw[k:k + 1], rigid[k:k + 1])[0]), k


@pytest.mark.parametrize("size", [512, 200])
def test_still_background_strips_equal_the_whole_frame_blend(macron, data_dir, size):
    """Over the still background only row strips the person reaches are remapped and only their soft edge is
    blended; the frame must equal remapping and blending the whole frame (a person of two separate parts, so a
    strip has gaps between opaque columns; a size whose rows do not split into whole strips)."""
    mask = reference_person_mask(macron, data_dir / "models")
    mask[300:360, 440:500] = 1.0                                       # a second, separate part at the right
    renderer = WarpRenderer(macron, size, person_mask=mask)
    face, torso = targets(still_repr(1, yaw=10.0, roll=4.0), macron)
    points = renderer.target_points(face + [9, -5], torso + [9, -5])
    source_map, _ = renderer._inverse_map(points[0])
    frame = np.empty((size, size, 3), np.float32)
    renderer._composite(frame, source_map)
    alpha = cv2.resize(cv2.remap(renderer._alpha, *renderer._coarse_source, interpolation=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE), (size, size), interpolation=cv2.INTER_LINEAR)
    warped = np.clip(cv2.remap(renderer.reference, source_map, None, interpolation=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE), 0.0, 1.0)
    expected = alpha[..., None] * warped + (1 - alpha[..., None]) * renderer._plate
    assert np.abs(frame - expected).max() < 1e-4
    # the cases the strips are for: parts of rows never remapped, strips with gaps between opaque columns
    assert (alpha == 0).any(1).mean() > 0.3
    height = renderer._strip_height
    opaque_runs = [np.count_nonzero(np.diff(np.concatenate([[0], alpha[top:top + height].min(0) >= 1, [0]])) == 1)
                   for top in range(0, size, height)]
    assert max(opaque_runs) >= 2
    assert size == 512 or size % height, "the last strip is a partial one"
    assert 0 <= frame.min() and frame.max() <= 1


def test_bad_targets_give_clear_errors(macron):
    renderer = WarpRenderer(macron)
    face, torso = targets(still_repr(3), macron)
    face[1, 10, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 frame\(s\) \(first: batch index 1\)"):
        renderer.render_points(face, torso)
    with pytest.raises(ValueError, match=r"face_xy must be \[B, 478, 2\]"):
        renderer.render_points(face[:, :100], torso)
    with pytest.raises(ValueError, match=r"torso_xy must be \[B, 18, 2\]"):
        renderer.render_points(np.nan_to_num(face), torso[:2])
    with pytest.raises(ValueError, match="map_size"):
        WarpConfig(map_size=4)


def test_every_accepted_photo_at_other_sizes(data_dir, tmp_path):
    with Image.open(data_dir / "portraits" / "hallo_woman.jpg") as image:
        image.convert("L").save(tmp_path / "gray.png")
        image.convert("RGBA").resize((300, 300)).save(tmp_path / "small_rgba.png")
    for name, size in (("gray.png", 256), ("small_rgba.png", 384)):
        subject, _ = subject_from_photo(tmp_path / name, models_dir=data_dir / "models")
        renderer = WarpRenderer(subject, size=size)
        face, torso = targets(still_repr(1, yaw=10.0), subject)
        frame = renderer.render_points(face, torso)
        assert frame.shape == (1, size, size, 3) and np.isfinite(frame).all()
        still = renderer.render_points(*targets(still_repr(1), subject))[0]
        assert np.abs(still - renderer.reference).max() <= 1 / 255 + 1e-6


# ---------------------------------------------------------------- pipeline and CLI
@pytest.fixture(scope="module")
def weights_without_renderer(tmp_path_factory):
    from moda_core.checkpoints import save_model
    from moda_core.models.faco import FaCoConfig, FaCoNet
    from moda_core.models.moda import MODAConfig, MODANet

    folder = tmp_path_factory.mktemp("no_renderer")
    torch.manual_seed(3)
    save_model(MODANet(MODAConfig.tiny()).eval(), folder / "moda.safetensors")
    save_model(FaCoNet(FaCoConfig.tiny()).eval(), folder / "faco.safetensors")
    return folder


def test_pipeline_renders_with_warp_without_renderer_weights(weights_without_renderer, macron):
    models = MODAModels.load(weights_without_renderer, renderer=None)
    assert models.renderer is None and models.render_size == 512
    r = still_repr(5, yaw=8.0)
    with pytest.raises(ValueError, match="no neural renderer is loaded.*renderer='warp'"):
        next(render_stream(models, r, macron, AnimateOptions()))
    frames = torch.cat(list(render_stream(models, r, macron, AnimateOptions(renderer="warp", batch_size=2))))
    direct = WarpRenderer(macron).render_points(*targets(r, macron))
    assert frames.shape == (5, 512, 512, 3) and np.allclose(frames.numpy(), direct, atol=1e-6)
    debug = next(render_stream(models, r, macron, AnimateOptions(renderer="warp", layout="debug", batch_size=2)))
    assert debug.shape == (2, 512, 3 * 512, 3)
    assert torch.allclose(debug[:, :, 512:1024], macron.reference_float().expand(2, -1, -1, -1), atol=1e-6)
    small = next(render_stream(models, r, macron, AnimateOptions(renderer="warp", output_size=128, batch_size=2)))
    assert small.shape == (2, 128, 128, 3)
    pasted = next(render_stream(models, r, macron, AnimateOptions(renderer="warp", paste_back=True, batch_size=2)))
    assert pasted.shape == (2, macron.source_size[1], macron.source_size[0], 3)
    with pytest.raises(ValueError, match="renderer must be 'neural' or 'warp'"):
        AnimateOptions(renderer="gan")


def test_pipeline_warp_keeps_the_background_still_with_models_dir(weights_without_renderer, macron, data_dir):
    models = MODAModels.load(weights_without_renderer, renderer=None)
    r = still_repr(2, yaw=10.0)
    options = AnimateOptions(renderer="warp", batch_size=2, models_dir=data_dir / "models")
    frames = next(render_stream(models, r, macron, options)).numpy()
    still = WarpRenderer(macron, person_mask=reference_person_mask(macron, data_dir / "models"))
    assert np.allclose(frames, still.render_points(*targets(r, macron)), atol=1e-6)
    plain = WarpRenderer(macron).render_points(*targets(r, macron))
    assert np.abs(frames - plain).max() > 0.05


def test_cli_animate_uses_warp_when_no_renderer_file(weights_without_renderer, data_dir, tmp_path, capsys):
    from moda_core.cli import main

    rate, pcm = wavfile.read(data_dir / "audio" / "en_hdtf_radio31.wav")
    wavfile.write(tmp_path / "short.wav", rate, pcm[:int(0.5 * rate)])
    out = tmp_path / "talk.mp4"
    assert main(["animate", "--image", str(data_dir / "portraits" / "macron.png"), "--audio",
                 str(tmp_path / "short.wav"), "--weights", str(weights_without_renderer), "--models",
                 str(data_dir / "models"), "--out", str(out), "--save-frames", str(tmp_path / "frames")]) == 0
    assert "using the warp renderer" in capsys.readouterr().err
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 15 and out.is_file()
    first = cv2.cvtColor(cv2.imread(str(pngs[0])), cv2.COLOR_BGR2RGB).astype(np.int64)
    subject, _ = subject_from_photo(data_dir / "portraits" / "macron.png", models_dir=data_dir / "models")
    # the fixed border: the photo's corners stay where they are
    assert np.abs(first[:4, :4] - subject.reference_image.numpy()[:4, :4]).max() <= 2
    assert main(["animate", "--image", str(data_dir / "portraits" / "macron.png"), "--audio",
                 str(tmp_path / "short.wav"), "--weights", str(weights_without_renderer), "--models",
                 str(data_dir / "models"), "--out", str(out), "--renderer", "neural"]) != 0
    assert "renderer" in capsys.readouterr().err


def test_quickstart_animates_another_photo_with_warp(weights_without_renderer, data_dir, tmp_path):
    from moda_core.preprocess import load_audio
    from moda_core.train.quickstart import animate_photo_with_warp
    from moda_core.video import read_video_info

    models = MODAModels.load(weights_without_renderer, renderer=False)
    wave, _ = load_audio(data_dir / "audio" / "en_hdtf_radio31.wav")
    video = animate_photo_with_warp(models, data_dir / "portraits" / "hallo_woman.jpg", wave[:8000], tmp_path,
                                    "speech", models_dir=data_dir / "models")
    assert video == tmp_path / "hallo_woman-speech-warp.mp4"
    info = read_video_info(video)
    assert (info["width"], info["height"]) == (512, 512)


def test_video_subject_keeps_its_reference_frame_points(data_dir, tmp_path):
    from moda_core.preprocess import read_frames, subject_from_frames
    from moda_core.subject import Subject

    frames = np.stack([rgb for _, _, rgb in read_frames(data_dir / "video" / "may_5s.mp4", 25.0, 0.3)])
    subject, r, summary = subject_from_frames(frames, 25.0, models_dir=data_dir / "models")
    assert subject.reference_points is not None and subject.reference_points.shape == (496, 2)
    loaded = Subject.load(subject.save(tmp_path / "may.safetensors"))
    assert torch.equal(loaded.reference_points, subject.reference_points)
    assert subject.replace(name="x").reference_points is not None
    assert subject.replace(reference_image=frames[0][:512, :512]).reference_points is None, "points of the old image"
    index = summary.reference_frame
    own = r.slice_time(index, index + 1)                 # the reference frame's own tracked motion
    face, torso = targets(own, subject, "canonical")
    assert np.abs(face[0] - subject.reference_points[:478].numpy()).max() < 0.01
    frame = WarpRenderer(subject, face_center="canonical").render_points(face, torso)[0]
    diff = np.abs(to_levels(frame) - subject.reference_image.numpy().astype(np.int64))
    assert np.percentile(diff, 99) <= 1
