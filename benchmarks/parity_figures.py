"""Per-stage differences from the authors' end-to-end capture (the figures of README "Faithfulness to the authors'
code"). tests/test_pipeline_parity.py asserts the thresholds; this prints the measured values.

    python benchmarks/parity_figures.py [CAPTURE.safetensors]     (default: $MODA_PIPELINE_GOLDEN or the shared one)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open

from moda_core.authors_subject import import_subject
from moda_core.drawing import draw_condition_images
from moda_core.frame_files import to_uint8
from moda_core.geometry import truncate_to_pixels
from moda_core.models.audio_encoder import AudioEncoderConfig, normalise_waveform
from moda_core.models.faco import FaCoNet
from moda_core.models.moda import MODAConfig, MODANet, motion_windows
from moda_core.models.renderer import RenderGenerator, RendererConfig, prepare_for_inference
from moda_core.pipeline import compose_face, predict_motion, reference_at, render_batch
from moda_core.preprocess.audio import load_audio
from moda_core.projection import project_repr
from moda_core.repr import TalkingRepr
from moda_core.smoothing import smooth_motion

# the shared reference data, as the tests find it (tests/conftest.py): $MODA_SHARED_DIR or ../shared
SHARED = Path(os.environ.get("MODA_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared").resolve()
TAILS = {"mouth": "lip", "eyes": "eye", "head_pose": "head", "torso": "torso"}


def _load(path: Path, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return ({k.removeprefix(prefix): handle.get_tensor(k).clone() for k in handle.keys() if k.startswith(prefix)},
                handle.metadata() or {})


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MODA_PIPELINE_GOLDEN") or
                SHARED / "reference/parity/pipeline/pipeline_cathy.safetensors")
    g, meta = _load(path)
    parity = path.parent.parent
    fps, t = float(g["meta.fps"]), int(g["meta.frame_count"])
    png = lambda kind, i: cv2.imread(str(path.with_suffix(f".{kind}") / f"{i:06d}.png"))[..., ::-1]  # noqa: E731
    windows = sum(k.startswith("noise.") for k in g)

    fields = AudioEncoderConfig.__dataclass_fields__
    encoder = {k: v for k, v in json.loads(meta["wav2vec2_config"]).items() if k in fields}
    moda = MODANet(MODAConfig(audio_encoder=AudioEncoderConfig(**encoder, attn_implementation="eager"))).eval()
    moda.load_state_dict(_load(parity / "moda_net.safetensors", "weights.")[0] | _load(path, "weights.")[0])
    faco = FaCoNet().eval()
    faco.load_state_dict(_load(parity / "faco_net.safetensors", "weights.")[0])
    with tempfile.TemporaryDirectory() as folder:
        np.savez(Path(folder) / "repr.npz", **{k: g[f"subject.{k}"].numpy()
                                               for k in ("templete", "eye", "lip", "shoulder", "headmotion")})
        images = [np.ascontiguousarray(cv2.imread(str(p))[..., ::-1]) for p in sorted(path.parent.glob("*.png"))]
        image = next(i for i in images if hashlib.sha256(i.tobytes()).hexdigest() == meta["reference_rgb_sha256"])
        torch.save({"example_files": ["reference.png"], "examples": [image]}, Path(folder) / "reference.pth")
        subject = import_subject(folder)

    def offsets(prefix: str, face=None) -> TalkingRepr:
        shapes = [(40, 3), (60, 3), (7,), (18, 3)]
        return TalkingRepr(**{o: g[f"{prefix}.{a}"].reshape(1, t, *s) for (o, a), s in zip(TAILS.items(), shapes)},
                           face=face, fps=fps, is_offset=True)

    rows: list[tuple[str, str, str]] = []
    recorded = Path(meta["audio_file"])
    audio = next((c for c in (SHARED.parent / recorded, SHARED / "data" / "audio" / recorded.name) if c.is_file()),
                 None)
    if audio is None:
        sys.exit(f"audio {recorded} of {path.name} not found under {SHARED.parent} or {SHARED / 'data' / 'audio'} "
                 "(set MODA_SHARED_DIR)")
    wave, _ = load_audio(audio)
    rows.append(("audio (load)", f"{_diff(torch.from_numpy(wave), g['audio.waveform']):.2g}", ""))
    normalised = g["audio.input_values"]
    rows.append(("normalisation", f"{_diff(normalise_waveform(g['audio.waveform'])[None], normalised):.2g}",
                 f"{_diff(normalise_waveform(torch.from_numpy(wave))[None], normalised):.2g}"))
    plan, total = motion_windows(len(wave), fps, frame_count="authors")
    rows.append(("frame count / windows", f"{total} / {len(plan)} (theirs {t} / {windows})", ""))
    inputs = normalise_waveform(torch.from_numpy(wave))
    style = subject.style_vector()[None]
    with torch.no_grad():
        w2v, post = [], []
        for k, w in enumerate(plan):
            w2v.append(_diff(moda.encode_audio(inputs[w.start_sample:w.stop_sample][None], w.frames),
                             g[f"window{k}.wav2vec_features"]))
            out = moda(g[f"window{k}.wav2vec_features"], style, noise=g[f"noise.{k}"])
            post.append(max(_diff(out.mu, g[f"window{k}.mu"]), _diff(out.logvar, g[f"window{k}.logvar"])))
    rows.append(("wav2vec2 features", "", f"{max(w2v):.2g}"))
    rows.append(("MODA mu / logvar", f"{max(post):.2g}", ""))
    run = predict_motion(moda, wave, subject, fps=fps, noise=[g[f"noise.{k}"] for k in range(windows)],
                         frame_count="authors")
    def tails(r: TalkingRepr, prefix: str) -> str:
        return f"{max(_diff(getattr(r, o)[0].flatten(1), g[f'{prefix}.{a}'].flatten(1)) for o, a in TAILS.items()):.2g}"

    rows.append(("MODA tails", "", tails(run, "moda")))
    smoothed = smooth_motion(run)
    rows.append(("smoothing", tails(smooth_motion(offsets("moda")), "smoothed"), tails(smoothed, "smoothed")))
    composed = compose_face(faco, smoothed, subject)
    stage_face = compose_face(faco, offsets("smoothed"), subject).face[0]
    rows.append(("FaCo (+ sigma 5)", f"{_diff(stage_face, g['faco.output_smoothed']):.2g}",
                 f"{_diff(composed.face[0], g['faco.output_smoothed']):.2g}"))
    stored = offsets("smoothed", face=g["faco.output_smoothed"][None])
    absolute = stored.to(dtype=torch.float64).to_absolute(subject)
    means = max(_diff(getattr(absolute, o)[0], g[f"denorm_in.{n}"])
                for o, n in (("face", "mesh"), ("head_pose", "head"), ("torso", "torso")))
    rows.append(("means (float64)", f"{means:.2g}", ""))
    face_s, torso_s = project_repr(stored, subject, face_center="authors")
    face_e, torso_e = project_repr(composed, subject, face_center="authors")
    rows.append(("points3d (px)", f"{max(_diff(face_s, g['points3d.mesh']), _diff(torso_s, g['points3d.torso'])):.2g}",
                 f"{max(_diff(face_e, g['points3d.mesh']), _diff(torso_e, g['points3d.torso'])):.2g}"))
    moved = [(truncate_to_pixels(p[..., :2]) != g[f"points2d.{n}"]).sum().item()
             for p, n in ((face_e, "mesh"), (torso_e, "torso"))]
    rows.append(("points2d moved by 1", "0", f"{moved[0]} of {g['points2d.mesh'].numel()} mesh, "
                                             f"{moved[1]} of {g['points2d.torso'].numel()} torso"))
    idx = g["cond.frame_indices"].tolist()
    stored_cond = np.stack([png("cond", i) for i in idx])                    # RGB, as the renderer reads it
    from_points = draw_condition_images(g["points2d.mesh"][idx], g["points2d.torso"][idx], as_uint8=True).numpy()
    end_to_end = draw_condition_images(face_e[idx, :, :2], torso_e[idx, :, :2], as_uint8=True).numpy()
    rows.append(("condition frames (values differing)", f"{int((from_points != stored_cond).sum())}",
                 f"{int((end_to_end != stored_cond).sum())} of {stored_cond.size}"))
    options = json.loads(meta["render_options"])
    weights = _load(parity / "renderer.safetensors", "weights.")[0]
    reference = reference_at(subject, stored_cond.shape[1])
    for layout in ("plain", "channels_last"):
        net = RenderGenerator(RendererConfig(ngf=options["ngf"], num_levels=options["n_downsample_G"],
                                             image_size=stored_cond.shape[1]))
        net.load_state_dict(weights)
        prepare_for_inference(net, channels_last=layout == "channels_last")
        levels, rounded = [], []
        for i in g["render.frame_indices"].tolist():
            cond = torch.from_numpy(np.ascontiguousarray(png("cond", i)))[None].float() / 255
            frame = render_batch(net, cond, reference, i)
            theirs = png("render", i).astype(np.int16)
            levels.append(np.abs(to_uint8(frame, "truncate")[0].astype(np.int16) - theirs))
            rounded.append(np.abs(to_uint8(frame, "round")[0].astype(np.int16) - theirs))
        levels, rounded = np.stack(levels), np.stack(rounded)
        rows.append((f"renderer uint8, {layout}, truncate", f"max {levels.max()} levels, "
                     f"{(levels > 0).mean() * 100:.2f} % differ", ""))
        if layout == "plain":
            rows.append(("renderer uint8, plain, round (our default)", f"max {rounded.max()} levels, "
                         f"{(rounded > 0).mean() * 100:.1f} % differ", ""))
    print(f"{path.name}: {t} frames, {windows} window(s)")
    print(f"{'stage':42s} {'fed their inputs':32s} end to end from the audio file")
    for name, stage, e2e in rows:
        print(f"{name:42s} {stage:32s} {e2e}")


if __name__ == "__main__":
    main()
