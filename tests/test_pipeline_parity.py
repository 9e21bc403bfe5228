"""End-to-end parity with the authors' inference flow (issue 14 item 4).

The golden capture (``$MODA_PIPELINE_GOLDEN``, default ``parity/pipeline/pipeline_cathy.safetensors``; layout and
tolerances in that folder's README) holds every stage of the authors' flow run on one subject, one audio file
and recorded VAE noise, with the small parity weights one folder up. Our pipeline is fed the same audio file,
weights, subject (imported from a repr.npz + reference.pth rebuilt from the capture) and noise, with the
authors' behaviour selected where our defaults differ (frame count, plain renderer layout, truncating 8-bit
output). Each stage is checked twice: fed the capture's own inputs (per-stage thresholds) and end to end from
the audio file (looser thresholds: float32 differences cascade). Everything about the clip (frame count,
windows, stored frame indices) is read from the capture, so other captures with the same layout are checked by
the same test.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from parity_helpers import with_prefix
from safetensors import safe_open

from moda_core.authors_subject import import_subject
from moda_core.drawing import draw_condition_images
from moda_core.frame_files import to_uint8
from moda_core.geometry import truncate_to_pixels
from moda_core.models.audio_encoder import AudioEncoderConfig, normalise_waveform
from moda_core.models.faco import FaCoConfig, FaCoNet
from moda_core.models.moda import MODAConfig, MODANet, motion_windows
from moda_core.models.renderer import RenderGenerator, RendererConfig, prepare_for_inference
from moda_core.pipeline import AnimateOptions, compose_face, predict_motion, reference_at, render_batch
from moda_core.preprocess.audio import load_audio
from moda_core.projection import project_repr
from moda_core.repr import TalkingRepr
from moda_core.smoothing import smooth_motion
from moda_core.subject import Subject
from moda_core.tpe import TPEConfig, temporal_positional_encoding

GOLDEN_ENV = "MODA_PIPELINE_GOLDEN"
TAILS = {"mouth": "lip", "eyes": "eye", "head_pose": "head", "torso": "torso"}

# Per stage, each fed the capture's own inputs (pipeline README §9).
NORMALISE_TOL = 5e-6
WAV2VEC_TOL = 1e-3
MODA_TOL = 5e-4
SMOOTHING_TOL = 1e-6
FACO_TOL = 1e-5
MEANS_TOL = 1e-8                 # px, float64
RENDER_MAX_LEVELS = 5
RENDER_MAX_DIFFERING = 0.005     # fraction of uint8 values
# End to end from the audio file (errors cascade).
E2E_TAILS_TOL = 1e-3
E2E_POINTS_TOL = 5e-2            # px
E2E_POINTS_OFF_BY_ONE = 1e-3     # fraction of 2-D coordinates allowed to move by 1
E2E_CONDITION_DIFFERING = 1e-5   # fraction of condition-frame values allowed to differ ...
E2E_CONDITION_DIFFERING_MIN = 500  # ... but at least "a few hundred" values (README §9)


# ------------------------------------------------------------------------------------------- the capture
@dataclass
class Capture:
    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, str]

    @property
    def fps(self) -> float:
        return float(self.tensors["meta.fps"].item())

    @property
    def frame_count(self) -> int:
        return int(self.tensors["meta.frame_count"].item())

    @property
    def num_windows(self) -> int:
        return sum(1 for key in self.tensors if key.startswith("noise."))

    def noise(self) -> list[torch.Tensor]:
        return [self.tensors[f"noise.{k}"] for k in range(self.num_windows)]

    def frame_png(self, kind: str, index: int) -> np.ndarray:
        """A stored frame as read by cv2 (``kind``: "cond" -> BGR canvas, "render" -> BGR of the RGB output)."""
        path = self.path.with_suffix(f".{kind}") / f"{index:06d}.png"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            pytest.fail(f"cannot read {path}; the capture's {kind} frames must sit beside it")
        return image

    def offsets(self, prefix: str, face: torch.Tensor | None = None) -> TalkingRepr:
        """R offsets (one sample) from the capture's ``<prefix>.lip/eye/head/torso``."""
        t = self.frame_count
        tracks = {ours: self.tensors[f"{prefix}.{theirs}"].reshape(1, t, *shape)
                  for (ours, theirs), shape in zip(TAILS.items(), [(40, 3), (60, 3), (7,), (18, 3)])}
        return TalkingRepr(**tracks, face=face, fps=self.fps, is_offset=True)


def _golden_path(parity_dir: Path) -> Path:
    path = Path(os.environ.get(GOLDEN_ENV) or parity_dir / "pipeline" / "pipeline_cathy.safetensors")
    if not path.is_file():
        pytest.fail(f"golden pipeline capture not found: {path} (set {GOLDEN_ENV} to a capture with the layout of "
                    f"parity/pipeline/README.md)")
    return path


@pytest.fixture(scope="module")
def capture(parity_dir) -> Capture:
    path = _golden_path(parity_dir)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        # Clone: safetensors memory is arbitrarily aligned and CPU kernels are alignment sensitive (README §3).
        tensors = {key: handle.get_tensor(key).clone() for key in handle.keys()}
    return Capture(path, tensors, meta)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def audio_path(capture, shared_root, data_dir) -> Path:
    """The capture's audio file (metadata ``audio_file``, checked against ``audio_sha256``)."""
    recorded = Path(capture.meta["audio_file"])
    for candidate in (shared_root.parent / recorded, data_dir / "audio" / recorded.name):
        if candidate.is_file() and _sha256(candidate) == capture.meta["audio_sha256"]:
            return candidate
    pytest.fail(f"audio {recorded} of {capture.path.name} not found (or its sha256 differs) under "
                f"{shared_root.parent} or {data_dir / 'audio'}")


@pytest.fixture(scope="module")
def reference_png(capture) -> Path:
    """The subject's reference image beside the capture: the PNG whose RGB bytes hash to
    ``reference_rgb_sha256``."""
    wanted = capture.meta["reference_rgb_sha256"]
    for candidate in sorted(capture.path.parent.glob("*.png")):
        image = cv2.imread(str(candidate), cv2.IMREAD_COLOR)
        if image is not None and hashlib.sha256(np.ascontiguousarray(image[..., ::-1]).tobytes()).hexdigest() == wanted:
            return candidate
    pytest.fail(f"no PNG beside {capture.path} holds the reference image (RGB sha256 {wanted[:16]}...)")


# ------------------------------------------------------------------------------------------- inputs we are fed
@pytest.fixture(scope="module")
def subject(capture, reference_png, tmp_path_factory):
    """The authors' subject folder rebuilt from the capture (repr.npz + reference.pth) and imported."""
    folder = tmp_path_factory.mktemp("authors_subject")
    np.savez(folder / "repr.npz", **{key: capture.tensors[f"subject.{key}"].numpy()
                                     for key in ("templete", "eye", "lip", "shoulder", "headmotion")})
    image = np.ascontiguousarray(cv2.imread(str(reference_png), cv2.IMREAD_COLOR)[..., ::-1])
    torch.save({"example_files": [reference_png.name], "examples": [image]}, folder / "reference.pth")
    return import_subject(folder)


def _wav2vec2_config(meta: dict[str, str]) -> AudioEncoderConfig:
    fields = json.loads(meta["wav2vec2_config"])
    ours = {name: fields[name] for name in AudioEncoderConfig.__dataclass_fields__ if name in fields}
    return AudioEncoderConfig(**ours, attn_implementation="eager")     # eager: 0 difference (README §3)


def _weights(capture: Capture, name: str) -> dict[str, torch.Tensor]:
    path = capture.path.parent.parent / name                             # the per-network parity files
    with safe_open(str(path), framework="pt") as handle:
        return {key.removeprefix("weights."): handle.get_tensor(key).clone()
                for key in handle.keys() if key.startswith("weights.")}


@pytest.fixture(scope="module")
def moda(capture) -> MODANet:
    net = MODANet(MODAConfig(audio_encoder=_wav2vec2_config(capture.meta))).eval()
    weights = _weights(capture, "moda_net.safetensors") | with_prefix(capture.tensors, "weights.")
    net.load_state_dict(weights, strict=True)
    return net


@pytest.fixture(scope="module")
def faco(capture) -> FaCoNet:
    net = FaCoNet(FaCoConfig()).eval()
    net.load_state_dict(_weights(capture, "faco_net.safetensors"), strict=True)
    return net


@pytest.fixture(scope="module")
def renderer(capture) -> RenderGenerator:
    options = json.loads(capture.meta["render_options"])
    size = capture.frame_png("render", int(capture.tensors["render.frame_indices"][0])).shape[0]
    net = RenderGenerator(RendererConfig(ngf=options["ngf"], num_levels=options["n_downsample_G"], image_size=size))
    net.load_state_dict(_weights(capture, "renderer.safetensors"), strict=True)
    return prepare_for_inference(net, channels_last=False)               # the authors' plain layout


# ------------------------------------------------------------------------------------------- our run, end to end
@dataclass
class Run:
    waveform: np.ndarray
    motion: TalkingRepr          # raw MODA offsets
    smoothed: TalkingRepr
    composed: TalkingRepr        # + FaCo face, non-semantic points smoothed
    face_xyz: torch.Tensor       # [T, 478, 3] image space
    torso_xyz: torch.Tensor


@pytest.fixture(scope="module")
def run(capture, audio_path, subject, moda, faco) -> Run:
    waveform, _ = load_audio(audio_path)
    motion = predict_motion(moda, waveform, subject, fps=capture.fps, noise=capture.noise(), frame_count="authors")
    smoothed = smooth_motion(motion)
    composed = compose_face(faco, smoothed, subject)
    face, torso = project_repr(composed, subject, face_center="authors")
    return Run(waveform, motion, smoothed, composed, face, torso)


def _max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.double() - theirs.double()).abs().max().item()


# ------------------------------------------------------------------------------------------- 1. audio
def test_audio_load_and_normalisation(capture, run):
    stored = capture.tensors["audio.waveform"]
    assert run.waveform.shape == tuple(stored.shape)
    assert _max_diff(torch.from_numpy(run.waveform), stored) == 0.0          # as librosa.load (soxr HQ if resampled)
    assert _max_diff(normalise_waveform(stored)[None], capture.tensors["audio.input_values"]) <= NORMALISE_TOL
    ours = normalise_waveform(torch.from_numpy(run.waveform))[None]
    assert _max_diff(ours, capture.tensors["audio.input_values"]) <= NORMALISE_TOL


# ------------------------------------------------------------------------------------------- 2. windows + MODA
def test_windows_and_frame_count(capture, run):
    windows, total = motion_windows(run.waveform.shape[0], capture.fps, frame_count="authors")
    recorded = json.loads(capture.meta["windows"])
    assert [(w.start_sample, w.stop_sample, w.frames) for w in windows] == \
        [(r["sample_range"][0], r["sample_range"][1], r["frame_num"]) for r in recorded]
    assert len(windows) == capture.num_windows
    for k, window in enumerate(windows):
        assert capture.tensors[f"window{k}.sample_range"].tolist() == [window.start_sample, window.stop_sample]
        assert capture.tensors[f"window{k}.frame_num"].item() == window.frames
        assert capture.tensors[f"noise.{k}"].shape[1] == window.frames
    assert total == capture.frame_count == run.motion.num_frames


@torch.no_grad()
def test_wav2vec2_features_and_moda_posterior_per_window(capture, run, subject, moda):
    input_values = normalise_waveform(torch.from_numpy(run.waveform))
    style = subject.style_vector()[None]
    assert torch.equal(style, capture.tensors["subject.sub_info"])
    windows, _ = motion_windows(run.waveform.shape[0], capture.fps, frame_count="authors")
    for k, window in enumerate(windows):
        chunk = input_values[window.start_sample:window.stop_sample][None]
        features = moda.encode_audio(chunk, window.frames)
        assert _max_diff(features, capture.tensors[f"window{k}.wav2vec_features"]) <= WAV2VEC_TOL, k
        # MODA fed the stored features and noise.
        output = moda(capture.tensors[f"window{k}.wav2vec_features"], style, noise=capture.tensors[f"noise.{k}"])
        assert _max_diff(output.mu, capture.tensors[f"window{k}.mu"]) <= MODA_TOL, k
        assert _max_diff(output.logvar, capture.tensors[f"window{k}.logvar"]) <= MODA_TOL, k
        if capture.num_windows == 1:
            for ours, theirs in TAILS.items():
                tail = getattr(output, theirs)[0]
                assert _max_diff(tail, capture.tensors[f"moda.{theirs}"]) <= MODA_TOL, ours


def test_moda_tails_end_to_end(capture, run):
    for ours, theirs in TAILS.items():
        stored = capture.tensors[f"moda.{theirs}"]
        assert _max_diff(getattr(run.motion, ours)[0].reshape(stored.shape), stored) <= E2E_TAILS_TOL, ours


# ------------------------------------------------------------------------------------------- 3. smoothing
def test_smoothing(capture, run):
    per_stage = smooth_motion(capture.offsets("moda"))
    for ours, theirs in TAILS.items():
        stored = capture.tensors[f"smoothed.{theirs}"]
        assert _max_diff(getattr(per_stage, ours)[0].reshape(stored.shape), stored) <= SMOOTHING_TOL, ours
        assert _max_diff(getattr(run.smoothed, ours)[0].reshape(stored.shape), stored) <= E2E_TAILS_TOL, ours


# ------------------------------------------------------------------------------------------- 4. FaCo
def test_faco(capture, run, subject, faco):
    smoothed = capture.offsets("smoothed")
    assert torch.equal(smoothed.mouth, capture.tensors["faco.input_lip"])
    assert torch.equal(smoothed.eyes, capture.tensors["faco.input_eye"])
    raw = compose_face(faco, smoothed, subject, smoothing=False).face[0]
    assert _max_diff(raw.reshape(capture.frame_count, -1), capture.tensors["faco.output"]) <= FACO_TOL
    composed = compose_face(faco, smoothed, subject).face[0]
    assert _max_diff(composed, capture.tensors["faco.output_smoothed"]) <= FACO_TOL
    assert _max_diff(run.composed.face[0], capture.tensors["faco.output_smoothed"]) <= E2E_TAILS_TOL


# ------------------------------------------------------------------------------------------- 5-6. means, projection
def _stored_composed(capture: Capture) -> TalkingRepr:
    return capture.offsets("smoothed", face=capture.tensors["faco.output_smoothed"][None])


def test_means_are_added_in_float64(capture, subject):
    absolute = _stored_composed(capture).to(dtype=torch.float64).to_absolute(subject)
    assert _max_diff(absolute.face[0], capture.tensors["denorm_in.mesh"]) <= MEANS_TOL
    assert _max_diff(absolute.head_pose[0], capture.tensors["denorm_in.head"]) <= MEANS_TOL
    assert _max_diff(absolute.torso[0], capture.tensors["denorm_in.torso"]) <= MEANS_TOL


def test_projection_per_stage(capture, subject):
    face, torso = project_repr(_stored_composed(capture), subject, face_center="authors")
    assert face.dtype == torch.float64
    assert _max_diff(face, capture.tensors["points3d.mesh"]) <= MEANS_TOL
    assert _max_diff(torso, capture.tensors["points3d.torso"]) <= MEANS_TOL
    # Truncation toward zero of the stored points gives exactly the coordinates the authors drew.
    assert torch.equal(truncate_to_pixels(capture.tensors["points3d.mesh"][..., :2]), capture.tensors["points2d.mesh"])
    assert torch.equal(truncate_to_pixels(capture.tensors["points3d.torso"][..., :2]),
                       capture.tensors["points2d.torso"])


def test_projection_end_to_end(capture, run):
    for ours, name in ((run.face_xyz, "mesh"), (run.torso_xyz, "torso")):
        assert _max_diff(ours, capture.tensors[f"points3d.{name}"]) <= E2E_POINTS_TOL, name
        moved = (truncate_to_pixels(ours[..., :2]) - capture.tensors[f"points2d.{name}"]).abs()
        assert moved.max() <= 1, name
        assert (moved > 0).double().mean() <= E2E_POINTS_OFF_BY_ONE, name


# ------------------------------------------------------------------------------------------- 7. condition images
def _stored_conditions(capture: Capture) -> tuple[list[int], np.ndarray]:
    indices = capture.tensors["cond.frame_indices"].tolist()
    return indices, np.stack([capture.frame_png("cond", i)[..., ::-1] for i in indices])   # BGR canvas -> RGB


def test_condition_images_pixel_exact(capture):
    indices, stored = _stored_conditions(capture)
    drawn = draw_condition_images(capture.tensors["points2d.mesh"][indices], capture.tensors["points2d.torso"][indices],
                                  as_uint8=True).numpy()
    differing = int((drawn != stored).sum())
    assert differing == 0, f"{differing} condition values differ from the authors' drawing"


def test_condition_images_end_to_end(capture, run):
    indices, stored = _stored_conditions(capture)
    drawn = draw_condition_images(run.face_xyz[indices, :, :2], run.torso_xyz[indices, :, :2], as_uint8=True).numpy()
    assert (drawn != stored).sum() <= max(E2E_CONDITION_DIFFERING * stored.size, E2E_CONDITION_DIFFERING_MIN)


# ------------------------------------------------------------------------------------------- 8. renderer
def test_renderer_frames(capture, subject, renderer):
    indices = capture.tensors["render.frame_indices"].tolist()
    size = renderer.config.image_size
    assert torch.equal(temporal_positional_encoding(torch.tensor(indices), 1, 1, TPEConfig())[:, :, 0, 0],
                       capture.tensors["render.tpe_values"])
    reference = reference_at(subject, size)
    levels = []
    for index in indices:
        condition = torch.from_numpy(np.ascontiguousarray(capture.frame_png("cond", index)[..., ::-1]))
        frame = render_batch(renderer, condition[None].float() / 255.0, reference, index)
        ours = to_uint8(frame, "truncate")[0].astype(np.int16)                # the authors' truncating cast
        levels.append(np.abs(ours - capture.frame_png("render", index)[..., ::-1].astype(np.int16)))
    levels = np.stack(levels)
    assert levels.max() <= RENDER_MAX_LEVELS
    assert (levels > 0).mean() <= RENDER_MAX_DIFFERING


# ------------------------------------------------------------------------------------------- the authors' options
def test_frame_count_options_for_eight_seconds():
    """Issue 17.14: 8.00 s gives the exact 240 frames by default (as preview/prepare), the authors' 239 on request."""
    torch.manual_seed(0)
    net = MODANet(MODAConfig.tiny()).eval()
    subject = Subject(reference_image=torch.zeros(512, 512, 3, dtype=torch.uint8), template=torch.randn(478, 3),
                      mean_head_pose=torch.tensor([0, 0, 0, 256, 256, 0, 1.0]), mean_torso=torch.randn(18, 3))
    wave = np.random.default_rng(0).standard_normal(8 * 16000).astype(np.float32) * 0.1
    assert predict_motion(net, wave, subject).num_frames == 240
    assert predict_motion(net, wave, subject, frame_count="authors").num_frames == 239
    with pytest.raises(ValueError, match="frame_count"):
        AnimateOptions(frame_count="nearest")


def test_eight_bit_output_rounds_or_truncates(tmp_path):
    from moda_core.video import VideoWriter, _to_uint8_frames

    frames = torch.tensor([0.0, 0.5, 0.999, 1.0, 100 / 255 + 0.7 / 255]).reshape(1, 1, 5, 1).expand(1, 1, 5, 3)
    assert _to_uint8_frames(frames)[0, 0, :, 0].tolist() == [0, 128, 255, 255, 101]
    assert _to_uint8_frames(frames, "truncate")[0, 0, :, 0].tolist() == [0, 127, 254, 255, 100]
    assert to_uint8(frames, "truncate")[0, 0, :, 0].tolist() == [0, 127, 254, 255, 100]
    with pytest.raises(ValueError, match="quantize"):
        VideoWriter(tmp_path / "x.mp4", 30, quantize="floor")
    with pytest.raises(ValueError, match="quantize"):
        AnimateOptions(quantize="floor")
