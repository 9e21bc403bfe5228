"""The evaluation mini-protocol (``moda protocol``): a clip's first 80 % makes the model, its last 20 % scores it.

Neural renderer (:func:`run_protocol`): per-subject training on the first 80 %, then the last 20 % generated
from the clip's own audio and compared with the real frames and the tracked motion.

1. the quickstart stages on the clip (prepare, train MODA / FaCo-Net / renderer on the first 80 %, with the
   last 20 % held out for validation);
2. MODA -> FaCo-Net -> renderer on the held-out audio (a fresh sample of motion, seed ``seed``);
3. every metric of :func:`moda_core.metrics.evaluate`: landmark metrics against the tracked R of those frames,
   image metrics (PSNR, SSIM, TCM, sharpness ratio) against the real frames, the landmark-follow error of the
   renders, motion statistics, and SyncNet scores when its weights are given.

Warp renderer (:func:`run_warp_protocol`): no training. One real frame of the first 80 % is the reference
(:func:`neutral_frame`: eyes open, head near its usual pose, mouth most closed); the tracked (ground-truth) R of
the last 20 %, projected with the canonicalisation's face centre so the points are exactly the tracked
landmarks, drives :class:`~moda_core.warp_renderer.WarpRenderer`; the renders are compared with the real frames:
PSNR, SSIM, TCM, sharpness ratio, landmark-follow error (and Sync with SyncNet weights).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from moda_core.train.datasets import neutral_frame
from moda_core.train.quickstart import HELD_OUT_FRACTION, QuickstartConfig, run_quickstart


@dataclass
class ProtocolResult:
    report: object              # moda_core.metrics.MetricsReport
    video: Path                 # the generated held-out part
    frames: int
    details: dict = field(default_factory=dict)     # warp: reference frame, start, MediaPipe floor; frames if kept


def run_protocol(config: QuickstartConfig, *, seed: int = 0, size: int = 256,
                 syncnet_weights: str | Path | None = None, log: Callable[[str], None] = print) -> ProtocolResult:
    """Train on ``config.video`` (its own audio drives the demo animation) and evaluate its held-out part
    (Sync / Sync-D too when ``syncnet_weights`` are given)."""
    if syncnet_weights is not None and not Path(syncnet_weights).is_file():     # before minutes of training
        raise FileNotFoundError(f"SyncNet weights not found at {syncnet_weights}")
    from moda_core.metrics import evaluate
    from moda_core.models.audio_encoder import SAMPLE_RATE
    from moda_core.pipeline import AnimateOptions, MODAModels, motion_pipeline, render_stream
    from moda_core.preprocess import load_audio
    from moda_core.projection import project_repr
    from moda_core.train.datasets import load_sample, read_frame, split_range
    from moda_core.video import VideoWriter

    trained = run_quickstart(replace(config, audio=config.video), log)
    sample = load_sample(trained.weights_dir / "sample", fps=config.fps)
    start = split_range(sample.num_frames, "val", HELD_OUT_FRACTION).start
    wave, _ = load_audio(trained.weights_dir / "sample" / "audio.wav")
    held_out_audio = wave[int(round(start / sample.fps * SAMPLE_RATE)):]
    models = MODAModels.load(trained.weights_dir)
    options = AnimateOptions(fps=sample.fps, seed=seed, output_size=size)
    generated = motion_pipeline(models, held_out_audio, sample.subject, options)
    count = min(generated.num_frames, sample.num_frames - start)
    generated = generated.slice_time(0, count)
    video = trained.weights_dir / "protocol-held-out.mp4"
    frames = []
    with VideoWriter(video, sample.fps, audio=(held_out_audio, SAMPLE_RATE)) as writer:
        for batch in render_stream(models, generated, sample.subject, options):
            writer.write(batch)
            frames.append(batch)
    generated_frames = torch.cat(frames)
    real_frames = torch.stack([read_frame(sample, start + i, size) for i in range(count)])
    reference = sample.repr.slice_time(start, start + count)
    report = evaluate(generated, reference, subject=sample.subject, generated_frames=generated_frames,
                      reference_frames=real_frames, audio=held_out_audio, sample_rate=SAMPLE_RATE, fps=sample.fps,
                      syncnet_weights=syncnet_weights, models_dir=config.models_dir,
                      reference_points=project_repr(reference, sample.subject, face_center="canonical")[0][..., :2],
                      face_center=options.face_center or models.render_settings.face_center)
    log(f"protocol: {count} held-out frames (from frame {start}) generated from the clip's own audio; "
        f"video {video}")
    return ProtocolResult(report, video, count)


# ----------------------------------------------------------------------------------------- warp renderer
WARP_ROWS = ("PSNR", "SSIM", "TCM", "sharpness ratio", "landmark follow")
SYNC_ROWS = ("Sync", "Sync-D", "Sync offset")


def frame_subject(sample, index: int):
    """The sample's subject as if frame ``index`` were its photo: that frame is the reference image and its
    tracked face, pose and torso are the subject's template, mean pose and mean torso, and its tracked points
    (canonicalisation's face centre) the reference points, so the warp renderer's source points are exactly
    the frame's tracked points."""
    from moda_core.projection import project_repr
    from moda_core.train.datasets import read_frame

    r = sample.repr
    face, torso = project_repr(r.slice_time(index, index + 1), sample.subject, face_center="canonical")
    return sample.subject.replace(reference_image=read_frame(sample, index, 512), template=r.face[0, index],
                                  mean_head_pose=r.head_pose[0, index], mean_torso=r.torso[0, index],
                                  reference_points=torch.cat([face[0], torso[0]])[:, :2],
                                  name=f"{sample.subject.name or sample.path.name} frame {index}")


def run_warp_protocol(video: str | Path, out_dir: str | Path, *, models_dir: str | Path | None = None,
                      size: int = 512, fps: float = 30.0, max_seconds: float | None = None, batch_size: int = 8,
                      syncnet_weights: str | Path | None = None,
                      progress: Callable[[str, int, int], None] | None = None, keep_frames: bool = False,
                      log: Callable[[str], None] = print) -> ProtocolResult:
    """Score the warp renderer on ``video`` (module docstring): prepare it into ``out_dir/sample`` (reused when
    there), render its last 20 % from the ground-truth R at ``size`` px, write ``out_dir/protocol-warp.mp4`` and
    return the report. ``max_seconds`` prepares only the start of the clip (quick checks). ``keep_frames`` adds
    the rendered and real frames and the target points to the result's details (for analysis)."""
    if syncnet_weights is not None and not Path(syncnet_weights).is_file():
        raise FileNotFoundError(f"SyncNet weights not found at {syncnet_weights}")
    from moda_core.metrics import MetricsReport, evaluate
    from moda_core.metrics.follow import landmark_follow
    from moda_core.models.audio_encoder import SAMPLE_RATE
    from moda_core.preprocess import load_audio, prepare_video_sample
    from moda_core.projection import project_repr
    from moda_core.train.datasets import load_sample, read_frame, split_range
    from moda_core.video import VideoWriter
    from moda_core.warp_renderer import WarpRenderer, most_open_mouth, reference_person_mask

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample_dir = out / "sample"
    if (sample_dir / "sample.json").is_file():
        log(f"prepare: reusing {sample_dir}")
    else:
        summary = prepare_video_sample(video, sample_dir, fps=fps, models_dir=models_dir, max_seconds=max_seconds,
                                       progress=progress)
        log(f"prepare: {summary.num_frames} frames at {summary.fps:g} fps from {video}")
    sample = load_sample(sample_dir)
    held_out = split_range(sample.num_frames, "val", HELD_OUT_FRACTION)
    start, count = held_out.start, len(held_out)
    if count < 2:
        raise ValueError(f"{video} gives only {sample.num_frames} frames; the protocol needs at least 2 held-out "
                         f"frames (the last {HELD_OUT_FRACTION:.0%}), i.e. a clip of 10 frames or more")
    train = split_range(sample.num_frames, "train", HELD_OUT_FRACTION)
    reference_index = neutral_frame(sample.repr, train)
    subject = frame_subject(sample, reference_index)
    truth = sample.repr.slice_time(start, start + count)
    face, torso = (p[..., :2].numpy() for p in project_repr(truth, subject, face_center="canonical"))

    train_faces = project_repr(sample.repr.slice_time(train.start, train.stop), sample.subject,
                               face_center="canonical")[0][..., :2].numpy()
    open_index = most_open_mouth(train_faces)              # the mouth interior comes from the subject's own frames
    renderer = WarpRenderer(subject, size=size, face_center="canonical",
                            person_mask=reference_person_mask(subject, models_dir),     # still background
                            open_mouth_frame=(read_frame(sample, train.start + open_index, size).numpy(),
                                              train_faces[open_index]))
    wave, _ = load_audio(sample_dir / "audio.wav")
    audio = wave[int(round(start / sample.fps * SAMPLE_RATE)):int(round((start + count) / sample.fps * SAMPLE_RATE))]
    path = out / "protocol-warp.mp4"
    frames = []
    with VideoWriter(path, sample.fps, audio=(audio, SAMPLE_RATE)) as writer:
        for first in range(0, count, batch_size):
            batch = renderer.render_points(face[first:first + batch_size], torso[first:first + batch_size])
            writer.write(batch)
            frames.append(torch.from_numpy(batch))
            if progress is not None:
                progress("warp", first + len(batch), count)
    generated = torch.cat(frames)
    real = torch.stack([read_frame(sample, start + i, size) for i in range(count)])
    full = evaluate(generated_frames=generated, reference_frames=real, target_points=face, reference_points=face,
                    audio=audio, sample_rate=SAMPLE_RATE, fps=sample.fps, syncnet_weights=syncnet_weights,
                    models_dir=models_dir)
    kept = WARP_ROWS + (SYNC_ROWS if syncnet_weights is not None else ())
    report = MetricsReport(row for row in full if row.name in kept)
    floor = landmark_follow(real, face, models_dir, fps=sample.fps)
    log(f"protocol (warp renderer): reference = frame {reference_index} (the most neutral of the first "
        f"{1 - HELD_OUT_FRACTION:.0%} of the frames), {count} held-out frames from frame {start} rendered at {size} "
        f"px from the tracked R; landmark follow of the real frames (MediaPipe's floor): {floor.value:.2f} px; "
        f"video {path}")
    details = dict(reference_frame=reference_index, start=start, real_frames_follow=floor.value)
    if keep_frames:
        details.update(generated_frames=generated, real_frames=real, target_points=face)
    return ProtocolResult(report, path, count, details)
