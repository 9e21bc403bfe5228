"""Speech -> motion: MODA sampling (audio -> R) and FaCo-Net face composition (R -> R with the dense face)."""
from __future__ import annotations

import contextlib

from comfy_api.latest import io

from moda_core.models.audio_encoder import SAMPLE_RATE, frames_for_samples
from moda_core.models.moda import WINDOW_SECONDS
from moda_core.pipeline import compose_face, predict_motion
from moda_core.repr import TalkingRepr
from moda_core.smoothing import smooth_motion
from moda_core.subject import Subject

from .models import with_audio_encoder
from .types import (CATEGORY, MODA_AUDIO_ENCODER, MODA_FACO, MODA_MODEL, MODA_REPR, MODA_SUBJECT, node_error,
                    searchable)
from .util import audio_to_16k, check_choice, expect, expect_net, progress_callback

BLEND_MODES = ("average", "crossfade")
MAX_SAMPLES = 64
SMOOTHING_TOOLTIP = ("Temporal Gaussian smoothing with the authors' sigmas (in frames, tuned at 30 fps), as their "
                     "inference does. Off: the raw network output.")


class MODAAudioToMotion(io.ComfyNode):
    DISPLAY_NAME = "MODA Audio to Motion"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_AudioToMotion", category=CATEGORY,
            **searchable(cls.DISPLAY_NAME, "talking head", "lip sync"),
            description="Predicts motion (R: mouth, eyes, head pose, shoulders as offsets from the subject) from "
                        "speech with MODA. Any length (overlapping 20 s windows), any sample rate and channel count "
                        "(mixed to mono, resampled to 16 kHz). Several samples give different motion for the same "
                        "audio: seeds seed, seed+1, ...",
            inputs=[
                io.Audio.Input("audio", tooltip="The speech. A batch of several clips uses the first one."),
                MODA_SUBJECT.Input("subject", tooltip="The person: their template face styles the motion."),
                MODA_MODEL.Input("model", tooltip="The MODA network from MODA Load MODA Model."),
                io.Int.Input("seed", default=0, min=0, max=2 ** 63 - 1, control_after_generate=True,
                             tooltip="Random seed of the first sample; sample k uses seed + k. Same seed, same "
                                     "motion."),
                io.Int.Input("samples", default=1, min=1, max=MAX_SAMPLES, step=1,
                             tooltip="How many different motions to draw (R gets that many samples; pick one with "
                                     "the projection node's 'sample')."),
                io.Float.Input("fps", default=30.0, min=1.0, max=60.0, step=1.0,
                               tooltip="Frame rate of R and of the video. The released MODA model runs at up to "
                                       "30 fps (20 s windows of at most 600 frames)."),
                io.Boolean.Input("smoothing", default=True, tooltip=SMOOTHING_TOOLTIP),
                io.Combo.Input("window_blend", options=list(BLEND_MODES), default="average",
                               tooltip="How overlapping 20 s windows of long audio are merged: 'average' (the "
                                       "authors') or 'crossfade' (a linear fade, smoother at window edges)."),
                MODA_AUDIO_ENCODER.Input("audio_encoder", optional=True,
                                         tooltip="Optional: a wav2vec2 from MODA Load Audio Encoder, used instead "
                                                 "of the one inside the MODA model."),
            ],
            outputs=[MODA_REPR.Output("repr", display_name="repr",
                                      tooltip="The motion: R offsets with 'samples' samples at fps, no face track "
                                              "yet (run MODA Compose Face).")],
        )

    @classmethod
    def execute(cls, audio: dict, subject: Subject, model, seed: int, samples: int, fps: float, smoothing: bool,
                window_blend: str, audio_encoder=None) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        expect(name, "subject", subject, Subject, "a Subject", "MODA_SUBJECT")
        model = expect_net(name, "model", model, "moda", "MODA Load MODA Model")
        encoder = None if audio_encoder is None else expect_net(name, "audio_encoder", audio_encoder,
                                                                 "audio_encoder", "MODA Load Audio Encoder")
        check_choice(name, "window_blend", window_blend, BLEND_MODES)
        config = model.module.config
        if frames_for_samples(round(WINDOW_SECONDS * SAMPLE_RATE), fps) > config.max_seq_len:
            raise node_error(name, "fps", f"{fps:g} fps gives more than {config.max_seq_len} frames per "
                             f"{WINDOW_SECONDS:g} s window, the most this MODA model takes",
                             f"use at most {config.max_seq_len / WINDOW_SECONDS:g} fps")
        if encoder is None and model.module.audio_encoder is None:
            raise node_error(name, "audio_encoder", "this MODA model has no audio encoder of its own",
                             "connect MODA Load Audio Encoder")
        if encoder is not None and encoder.module.audio_config.hidden_size != config.audio_feat_dim:
            raise node_error(name, "audio_encoder", f"its features are {encoder.module.audio_config.hidden_size} "
                             f"wide, the MODA model takes {config.audio_feat_dim}",
                             "load a wav2vec2 of the same size as the one MODA was trained with")
        wave = audio_to_16k(name, "audio", audio)
        report = progress_callback(samples)
        with contextlib.ExitStack() as stack:
            moda = stack.enter_context(model.active())
            if encoder is not None:
                moda = with_audio_encoder(moda, stack.enter_context(encoder.active()))
            try:
                r = predict_motion(moda, wave, subject, fps=fps, seed=seed, num_samples=samples,
                                   window_blend=window_blend, progress=report)
            except ValueError as err:
                raise node_error(name, "audio", f"cannot predict motion: {err}",
                                 "use a longer clip (at least one frame of audio)") from err
        return io.NodeOutput(smooth_motion(r) if smoothing else r)


class MODAComposeFace(io.ComfyNode):
    DISPLAY_NAME = "MODA Compose Face"

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MODA_ComposeFace", display_name=cls.DISPLAY_NAME, category=CATEGORY,
            description="FaCo-Net composes the dense 478-point face from R's mouth and eye points and the "
                        "subject's template, for every sample and frame, so cheeks, chin and nose follow the "
                        "mouth. Adds (or replaces) R's face track; R stays offsets or absolute as it came.",
            inputs=[
                MODA_REPR.Input("repr", tooltip="The motion (R), e.g. from MODA Audio to Motion or an edit node."),
                MODA_SUBJECT.Input("subject", tooltip="The person R belongs to (their template face)."),
                MODA_FACO.Input("faco", tooltip="FaCo-Net from MODA Load FaCo."),
                io.Boolean.Input("smoothing", default=True,
                                 tooltip="Smooth the composed face's non-mouth, non-eye points over time (the "
                                         "authors' sigma of 5 frames). Mouth and eyes are kept as composed."),
            ],
            outputs=[MODA_REPR.Output("repr", display_name="repr",
                                      tooltip="R with the face track [samples, frames, 478, 3].")],
        )

    @classmethod
    def execute(cls, repr: TalkingRepr, subject: Subject, faco, smoothing: bool) -> io.NodeOutput:
        name = cls.DISPLAY_NAME
        expect(name, "repr", repr, TalkingRepr, "R (TalkingRepr)", "MODA_REPR")
        expect(name, "subject", subject, Subject, "a Subject", "MODA_SUBJECT")
        faco = expect_net(name, "faco", faco, "faco", "MODA Load FaCo")
        with faco.active() as net:
            composed = compose_face(net, repr.to("cpu"), subject, smoothing=smoothing)
        return io.NodeOutput(composed)


NODES = [MODAAudioToMotion, MODAComposeFace]
