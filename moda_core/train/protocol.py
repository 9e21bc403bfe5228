"""The evaluation mini-protocol (``moda protocol``): per-subject training on a clip's first 80 %, then the last
20 % generated from the clip's own audio and compared with the real frames and the tracked motion.

1. the quickstart stages on the clip (prepare, train MODA / FaCo-Net / renderer on the first 80 %, with the
   last 20 % held out for validation);
2. MODA -> FaCo-Net -> renderer on the held-out audio (a fresh sample of motion, seed ``seed``);
3. every metric of :func:`moda_core.metrics.evaluate`: landmark metrics against the tracked R of those frames,
   image metrics against the real frames, motion statistics, and SyncNet scores when its weights are given.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from moda_core.train.quickstart import HELD_OUT_FRACTION, QuickstartConfig, run_quickstart


@dataclass
class ProtocolResult:
    report: object              # moda_core.metrics.MetricsReport
    video: Path                 # the generated held-out part
    frames: int


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
                      syncnet_weights=syncnet_weights, models_dir=config.models_dir)
    log(f"protocol: {count} held-out frames (from frame {start}) generated from the clip's own audio; "
        f"video {video}")
    return ProtocolResult(report, video, count)
