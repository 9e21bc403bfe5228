"""Subject, motion, face, render and paste-back nodes on tiny random-weight networks and the shared portraits,
audio and video, run through the ComfyUI doubles; and every shipped API workflow executed end to end."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import REPO_ROOT, ValidationFailed, fingerprint, run_node
from PIL import Image
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)
from scipy.io import wavfile

from moda_core.checkpoints import load_model
from moda_core.pipeline import compose_face, predict_motion, reference_at, render_batch
from moda_core.preprocess import read_frames, resample_audio, subject_from_frames, subject_from_photo
from moda_core.repr import TalkingRepr
from moda_core.smoothing import smooth_motion
from moda_core.subject import Subject

MOTION = {"seed": 0, "samples": 1, "fps": 30.0, "smoothing": True, "window_blend": "average"}
PROJECT = {"sample": 0, "face_center": "authors (y 235)", "style": "authors"}


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def nets(moda_nodes, moda_dir) -> dict:
    load = {"model": "MODA_LoadMODAModel", "faco": "MODA_LoadFaCo", "renderer": "MODA_LoadRenderer"}
    files = {"model": "moda.safetensors", "faco": "faco.safetensors", "renderer": "renderer.safetensors"}
    return {key: run_node(moda_nodes[node], weights=files[key], precision="auto").args[0]
            for key, node in load.items()}


@pytest.fixture(scope="session")
def portrait(data_dir) -> torch.Tensor:
    """A LoadImage-style IMAGE [1, H, W, 3] float 0..1."""
    with Image.open(data_dir / "portraits" / "obama.jpg") as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), np.float32) / 255.0)[None]


@pytest.fixture(scope="session")
def photo_subject(data_dir, portrait) -> Subject:
    """The portrait's subject, made once with the library (test_subject_from_image checks the node gives it)."""
    return subject_from_photo(portrait[0], models_dir=data_dir / "models", name="obama")[0]


def speech(data_dir, seconds: float, channels: int = 2, batch: int = 1) -> dict:
    """A LoadAudio-style AUDIO at the file's own rate (48 kHz here), made stereo."""
    rate, pcm = wavfile.read(data_dir / "audio" / "en_hdtf_radio31.wav")
    mono = pcm.astype(np.float32).reshape(len(pcm), -1).mean(1) / 32768.0
    clip = torch.from_numpy(mono[:int(seconds * rate)])
    waveform = torch.stack([clip * (1.0 - 0.25 * c) for c in range(channels)])
    return {"waveform": waveform[None].repeat(batch, 1, 1), "sample_rate": int(rate)}


def snapshot(r: TalkingRepr) -> dict:
    return {k: v.clone() for k, v in r.tracks().items()}


def assert_same_repr(a: TalkingRepr, b: TalkingRepr, atol: float = 0.0):
    assert a.tracks().keys() == b.tracks().keys()
    for name, value in a.tracks().items():
        assert torch.allclose(value, getattr(b, name), atol=atol), name


# ---------------------------------------------------------------- subject from image
def test_subject_from_image(moda_nodes, moda_dir, portrait, photo_subject):
    subject, preview = run_node(moda_nodes["MODA_SubjectFromImage"], image=portrait.repeat(2, 1, 1, 1),
                                face_index=-1, name="obama").args
    assert isinstance(subject, Subject) and subject.name == "obama"
    assert subject.source_size == (portrait.shape[2], portrait.shape[1])
    assert torch.equal(subject.template, photo_subject.template)
    assert torch.equal(subject.source_image, (portrait[0] * 255).round().to(torch.uint8))
    assert preview.shape == (1, 512, 512, 3) and preview.dtype == torch.float32 and 0 <= preview.min()
    reference = subject.reference_image.float() / 255
    changed = (preview[0] - reference).abs().amax(-1) > 0.05
    assert 0.01 < changed.float().mean() < 0.5, "the landmarks are drawn over the crop"


def test_subject_name_comes_from_the_source_file(moda_nodes, moda_dir, portrait, moda_pack):
    """An empty name takes the stem of the file upstream in the queued prompt (Load Image, or Load Video through
    Get Video Components); a typed name wins; no file upstream leaves it empty."""
    stem = sys.modules[f"{moda_pack.__name__}.nodes.subject_nodes"].source_file_stem
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "people/Anna K.png [input]"}},
              "2": {"class_type": "MODA_SubjectFromImage", "inputs": {"image": ["1", 0], "face_index": -1,
                                                                       "name": ""}},
              "3": {"class_type": "LoadVideo", "inputs": {"file": "talking.mp4"}},
              "4": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 0]}},
              "5": {"class_type": "MODA_SubjectFromVideo", "inputs": {"images": ["4", 0], "fps": ["4", 2]}},
              "6": {"class_type": "MODA_SubjectFromImage", "inputs": {"image": ["5", 2]}}}
    assert stem(prompt, "2", "image") == "Anna K" and stem(prompt, 5, "images") == "talking"
    assert stem(prompt, "6", "image") == "talking", "through two nodes"
    assert stem(None, "2", "image") == stem(prompt, "9", "image") == stem(prompt, "1", "image") == ""
    node = moda_nodes["MODA_SubjectFromImage"]
    prompt["1"]["inputs"]["image"] = "portrait.jpg"
    named = run_node(node, unique_id="2", prompt=prompt, image=portrait, face_index=-1, name=" ").args[0]
    assert named.name == "portrait"
    assert run_node(node, unique_id="2", prompt=prompt, image=portrait, face_index=-1, name="Ann").args[0].name == "Ann"


def test_subject_from_image_errors(moda_nodes, moda_dir, comfy_dirs, portrait):
    node = moda_nodes["MODA_SubjectFromImage"]
    with pytest.raises(ValueError) as no_face:
        run_node(node, image=torch.zeros(1, 256, 256, 3), face_index=-1, name="")
    assert str(no_face.value) == ("MODA Subject from Image: input 'image': no face found in the image: use a photo "
                                  "where one face is clearly visible, frontal or slightly turned, not covered")
    with pytest.raises(ValueError) as bad_index:
        run_node(node, image=portrait, face_index=3, name="")
    assert str(bad_index.value) == ("MODA Subject from Image: input 'face_index': face_index 3 is out of range: 1 "
                                    "face(s) found in the image (numbered left to right from 0); use 0..0")
    with pytest.raises(ValueError, match=r"input 'image': expected IMAGE \[batch, height, width, 3\]"):
        run_node(node, image=torch.zeros(256, 256, 3), face_index=-1, name="")
    (moda_dir / "selfie_segmenter.tflite").unlink()
    folder = comfy_dirs.models / "moda"
    with pytest.raises(ValueError, match=f"MediaPipe model file selfie_segmenter.tflite is missing from {folder}, "
                                         "copy it there"):
        run_node(node, image=portrait, face_index=-1, name="")


# ---------------------------------------------------------------- subject from video frames
def test_subject_from_video(moda_nodes, moda_dir, data_dir, progress_events):
    frames = np.stack([rgb for _, _, rgb in read_frames(data_dir / "video" / "may_5s.mp4", 25.0, 0.4)])
    images = torch.from_numpy(frames).float() / 255.0
    subject, r, preview = run_node(moda_nodes["MODA_SubjectFromVideo"], images=images, fps=25.0, name="may").args
    expected_subject, expected_r, _ = subject_from_frames(frames, 25.0, models_dir=moda_dir, name="may")
    assert torch.equal(subject.template, expected_subject.template) and subject.name == "may"
    assert subject.source_image.shape == frames.shape[1:]
    assert r.num_frames == 10 and r.num_samples == 1 and r.fps == 25.0 and not r.is_offset and r.face is not None
    assert_same_repr(r, expected_r)
    assert preview.shape == (1, 512, 512, 3)
    assert progress_events[-1][:2] == (20, 20) and len(progress_events) == 20      # two passes over 10 frames
    with pytest.raises(ValueError, match=r"^MODA Subject from Video: input 'images': a face was found in only 0"):
        run_node(moda_nodes["MODA_SubjectFromVideo"], images=torch.zeros(3, 64, 64, 3), fps=25.0, name="")


# ---------------------------------------------------------------- audio -> motion
def test_audio_to_motion_is_predict_motion(moda_nodes, nets, photo_subject, data_dir, tiny_weights, caplog):
    audio = speech(data_dir, 1.2, channels=2, batch=2)
    before = audio["waveform"].clone()
    with caplog.at_level(logging.WARNING):
        r = run_node(moda_nodes["MODA_AudioToMotion"], audio=audio, subject=photo_subject, model=nets["model"],
                     **{**MOTION, "samples": 2, "seed": 5, "smoothing": False}).args[0]
    assert "input 'audio' holds 2 clips; using the first one" in caplog.text
    assert torch.equal(audio["waveform"], before)
    assert r.num_samples == 2 and r.num_frames == 36 and r.fps == 30.0 and r.is_offset and r.face is None
    assert r.meta["seeds"] == "5,6" and r.subject == "obama"
    wave = resample_audio(audio["waveform"][0], audio["sample_rate"])
    expected = predict_motion(load_model(tiny_weights / "moda.safetensors"), wave, photo_subject, fps=30.0, seed=5,
                              num_samples=2)
    assert_same_repr(r, expected)
    smoothed = run_node(moda_nodes["MODA_AudioToMotion"], audio=audio, subject=photo_subject, model=nets["model"],
                        **{**MOTION, "samples": 2, "seed": 5}).args[0]
    assert_same_repr(smoothed, smooth_motion(expected))


def test_audio_to_motion_seeds_and_mono(moda_nodes, nets, photo_subject, data_dir, progress_events):
    node, mono = moda_nodes["MODA_AudioToMotion"], speech(data_dir, 1.0, channels=1)
    three = run_node(node, audio=mono, subject=photo_subject, model=nets["model"], **{**MOTION, "samples": 3}).args[0]
    assert [e[:2] for e in progress_events] == [(1, 3), (2, 3), (3, 3)]
    second = run_node(node, audio=mono, subject=photo_subject, model=nets["model"], **{**MOTION, "seed": 1}).args[0]
    assert torch.equal(second.mouth[0], three.mouth[1]), "sample k of seed s is seed s + k"
    assert not torch.equal(three.mouth[0], three.mouth[1])
    crossfade = run_node(node, audio=mono, subject=photo_subject, model=nets["model"],
                         **{**MOTION, "window_blend": "crossfade"}).args[0]
    assert torch.equal(crossfade.mouth, three.mouth[:1]), "one window: nothing to blend"


@pytest.mark.parametrize("change,message", [
    ({"fps": 45.0}, "input 'fps': 45 fps gives more than 600 frames per 20 s window, the most this MODA model "
                    "takes, use at most 30 fps"),
    ({"window_blend": "mix"}, "input 'window_blend': unknown option 'mix'"),
    ({"audio": {"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}}, "input 'audio': cannot predict motion"),
    ({"audio": {"waveform": torch.zeros(100), "sample_rate": 16000}}, "input 'audio': expected AUDIO"),
    ({"audio": {"waveform": torch.full((1, 1, 8000), float("nan")), "sample_rate": 16000}},
     "input 'audio': the waveform contains NaN"),
    ({"subject": "cathy"}, "input 'subject': expected a Subject, got str"),
    ({"model": None}, "input 'model': expected a loaded moda network, got NoneType"),
])
def test_audio_to_motion_errors(moda_nodes, nets, photo_subject, data_dir, change, message):
    inputs = {"audio": speech(data_dir, 0.5), "subject": photo_subject, "model": nets["model"], **MOTION, **change}
    with pytest.raises(ValueError, match="^MODA Audio to Motion: " + message.replace("(", r"\(").replace(")", r"\)")):
        run_node(moda_nodes["MODA_AudioToMotion"], **inputs)


def test_audio_to_motion_with_audio_encoder_override(moda_nodes, nets, photo_subject, data_dir, moda_dir):
    """The encoder taken from the same MODA file gives the same motion; the cached model keeps its own encoder."""
    encoder = run_node(moda_nodes["MODA_LoadAudioEncoder"], weights="moda.safetensors", precision="fp32").args[0]
    own_encoder = nets["model"].module.audio_encoder
    audio = speech(data_dir, 0.8)
    inputs = {"audio": audio, "subject": photo_subject, "model": nets["model"], **MOTION}
    plain = run_node(moda_nodes["MODA_AudioToMotion"], **inputs).args[0]
    swapped = run_node(moda_nodes["MODA_AudioToMotion"], **inputs, audio_encoder=encoder).args[0]
    assert_same_repr(plain, swapped)
    assert nets["model"].module.audio_encoder is own_encoder and encoder.module is not own_encoder
    with pytest.raises(ValueError, match="input 'audio_encoder': expected a loaded audio_encoder network, got moda"):
        run_node(moda_nodes["MODA_AudioToMotion"], **inputs, audio_encoder=nets["model"])


# ---------------------------------------------------------------- FaCo
def test_compose_face(moda_nodes, nets, photo_subject, data_dir, tiny_weights):
    r = run_node(moda_nodes["MODA_AudioToMotion"], audio=speech(data_dir, 0.8), subject=photo_subject,
                 model=nets["model"], **MOTION).args[0]
    before = snapshot(r)
    composed = run_node(moda_nodes["MODA_ComposeFace"], repr=r, subject=photo_subject, faco=nets["faco"],
                        smoothing=True).args[0]
    assert composed.face.shape == (1, r.num_frames, 478, 3) and composed.is_offset
    assert_same_repr(composed, compose_face(load_model(tiny_weights / "faco.safetensors"), r, photo_subject))
    assert all(torch.equal(getattr(r, k), v) for k, v in before.items()) and r.face is None
    absolute = run_node(moda_nodes["MODA_ComposeFace"], repr=r.to_absolute(photo_subject), subject=photo_subject,
                        faco=nets["faco"], smoothing=False).args[0]
    assert not absolute.is_offset and absolute.face is not None
    with pytest.raises(ValueError, match="^MODA Compose Face: input 'faco': expected a loaded faco network, got "
                                         "renderer"):
        run_node(moda_nodes["MODA_ComposeFace"], repr=r, subject=photo_subject, faco=nets["renderer"],
                 smoothing=True)


# ---------------------------------------------------------------- render and paste back
def _conditions(moda_nodes, nets, photo_subject, data_dir, seconds=0.4):
    r = run_node(moda_nodes["MODA_AudioToMotion"], audio=speech(data_dir, seconds), subject=photo_subject,
                 model=nets["model"], **MOTION).args[0]
    return run_node(moda_nodes["MODA_ProjectRepr"], repr=r, subject=photo_subject, **PROJECT).args[0]


def test_render(moda_nodes, nets, photo_subject, data_dir, tiny_weights, progress_events):
    conditions = _conditions(moda_nodes, nets, photo_subject, data_dir)
    progress_events.clear()
    node = moda_nodes["MODA_Render"]
    frames = run_node(node, conditions=conditions, subject=photo_subject, renderer=nets["renderer"], start_frame=0,
                      batch_size=5).args[0]
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == torch.float32 and frames.device.type == "cpu"
    assert 0 <= frames.min() and frames.max() <= 1
    assert [e[:2] for e in progress_events] == [(5, 12), (10, 12), (12, 12)]
    renderer, reference = load_model(tiny_weights / "renderer.safetensors"), reference_at(photo_subject, 64)
    small = torch.nn.functional.interpolate(conditions.permute(0, 3, 1, 2), size=64, mode="area").permute(0, 2, 3, 1)
    assert torch.allclose(frames[:4], render_batch(renderer, small[:4], reference, 0), atol=1e-6)
    other_batch = run_node(node, conditions=conditions, subject=photo_subject, renderer=nets["renderer"],
                           start_frame=0, batch_size=12).args[0]
    assert torch.allclose(other_batch, frames, atol=1e-6)
    later = run_node(node, conditions=conditions[:2], subject=photo_subject, renderer=nets["renderer"],
                     start_frame=500, batch_size=8).args[0]
    assert torch.allclose(later, render_batch(renderer, small[:2], reference, 500), atol=1e-6)
    assert not torch.allclose(later, frames[:2], atol=1e-4), "the TPE index changes the frame"


def test_render_stops_when_cancelled_and_writes_nothing(moda_nodes, nets, photo_subject, comfy_doubles, comfy_dirs,
                                                        progress_events):
    mm = comfy_doubles.model_management
    conditions = torch.zeros(20, 512, 512, 3)
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        run_node(moda_nodes["MODA_Render"], conditions=conditions, subject=photo_subject,
                 renderer=nets["renderer"], start_frame=0, batch_size=4)
    assert [e[:2] for e in progress_events] == [(4, 20)], "stopped after the first batch"
    assert not mm.processing_interrupted()
    assert not [p for p in comfy_dirs.base.rglob("*") if p.is_file() and "models" not in p.parts]


def test_render_errors(moda_nodes, nets, photo_subject):
    node = moda_nodes["MODA_Render"]
    with pytest.raises(ValueError, match=r"^MODA Render: input 'conditions': images are 64x32, the renderer needs "
                                         "square ones"):
        run_node(node, conditions=torch.zeros(2, 32, 64, 3), subject=photo_subject, renderer=nets["renderer"],
                 start_frame=0, batch_size=8)
    with pytest.raises(ValueError, match="^MODA Render: input 'renderer': expected a loaded renderer network"):
        run_node(node, conditions=torch.zeros(2, 64, 64, 3), subject=photo_subject, renderer=nets["faco"],
                 start_frame=0, batch_size=8)


def test_paste_back(moda_nodes, photo_subject, progress_events):
    frames = torch.rand(20, 64, 64, 3)
    pasted = run_node(moda_nodes["MODA_PasteBack"], images=frames, subject=photo_subject, feather=24).args[0]
    width, height = photo_subject.source_size
    assert pasted.shape == (20, height, width, 3) and pasted.dtype == torch.float32
    source = photo_subject.source_image.float() / 255
    assert torch.allclose(pasted[:, 0, 0], source[0, 0].expand(20, 3), atol=1e-6), "far from the face: the photo"
    assert [e[:2] for e in progress_events] == [(16, 20), (20, 20)]
    with pytest.raises(ValueError, match="^MODA Paste Back: input 'subject': it keeps no source photo"):
        run_node(moda_nodes["MODA_PasteBack"], images=frames, subject=photo_subject.replace(source_image=None),
                 feather=24)


# ---------------------------------------------------------------- save / load subject
def test_save_and_load_subject(moda_nodes, comfy_dirs, photo_subject):
    saved = run_node(moda_nodes["MODA_SaveSubject"], subject=photo_subject, filename_prefix="people/obama").args[0]
    assert saved == str(comfy_dirs.output / "moda" / "people" / "obama_00001_.safetensors")
    photo_subject.save(comfy_dirs.input / "mine.safetensors")
    TalkingRepr(mouth=torch.zeros(1, 40, 3), eyes=torch.zeros(1, 60, 3), head_pose=torch.ones(1, 7),
                torso=torch.zeros(1, 18, 3), fps=25).save(comfy_dirs.input / "motion.safetensors")
    load = moda_nodes["MODA_LoadSubject"]
    options = load.GET_NODE_INFO_V1()["input"]["required"]["subject_file"][1]["options"]
    assert options == ["mine.safetensors", "moda/people/obama_00001_.safetensors [output]"]
    subject, preview = run_node(load, subject_file=options[1]).args
    assert torch.equal(subject.template, photo_subject.template) and subject.source_size == photo_subject.source_size
    assert preview.shape == (1, 512, 512, 3)
    assert fingerprint(load, subject_file="mine.safetensors") == fingerprint(load, subject_file="mine.safetensors")
    with pytest.raises(ValueError, match="^MODA Load Subject: input 'subject_file': cannot load 'motion.safetensors'"):
        run_node(load, subject_file="motion.safetensors")
    with pytest.raises(ValidationFailed, match="^MODA Load Subject: input 'subject_file': '../x.safetensors' points "
                                               "outside the input and output folders"):
        run_node(load, subject_file="../x.safetensors")
    with pytest.raises(ValidationFailed, match="^MODA Load Subject: input 'subject_file': file 'gone.safetensors' "
                                               "not found, put it in the input folder"):
        run_node(load, subject_file="gone.safetensors")
    with pytest.raises(ValueError, match="^MODA Save Subject: input 'filename_prefix'"):
        run_node(moda_nodes["MODA_SaveSubject"], subject=photo_subject, filename_prefix="../up")


# ---------------------------------------------------------------- shipped workflows, end to end
def _core_stand_ins(data_dir: Path, seconds: float, frames: int) -> dict:
    """What the core nodes of the workflows give, from the bundled samples (short, to keep the test fast)."""
    samples = REPO_ROOT / "samples"

    def load_image(image):
        with Image.open(samples / image) as opened:
            return (torch.from_numpy(np.asarray(opened.convert("RGB"), np.float32) / 255.0)[None],
                    torch.zeros(1, 64, 64))

    def load_audio(audio):
        rate, pcm = wavfile.read(samples / audio)
        wave = torch.from_numpy(pcm[:int(seconds * rate)].T.astype(np.float32) / 32768.0)
        return ({"waveform": wave[None], "sample_rate": int(rate)},)

    def get_video_components(video):
        with av.open(str(video)) as container:
            rate = float(container.streams.video[0].average_rate)
            images = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), container.decode(video=0))]
        return torch.from_numpy(np.stack(images)).float() / 255.0, None, rate

    def stitch(image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
        assert (direction, match_image_size, spacing_width) == ("right", False, 0)
        return (torch.cat([image1, image2], dim=2),)

    return {"LoadImage": load_image, "LoadAudio": load_audio, "LoadVideo": lambda file: (samples / file,),
            "GetVideoComponents": get_video_components, "ImageStitch": stitch,
            "CreateVideo": lambda images, fps, audio=None: ({"images": images, "fps": fps, "audio": audio},)}


def _execute(prompt: dict, moda_nodes: dict, stand_ins: dict) -> dict:
    results, pending = {}, dict(prompt)
    while pending:
        ready = sorted(k for k, n in pending.items()
                       if all(not isinstance(v, list) or v[0] in results for v in n["inputs"].values()))
        assert ready, f"cycle among {sorted(pending)}"
        for node_id in ready:
            node = pending.pop(node_id)
            inputs = {k: results[v[0]][v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            kind = node["class_type"]
            if kind in moda_nodes:
                results[node_id] = run_node(moda_nodes[kind], unique_id=node_id, prompt=prompt, **inputs).args
            elif kind in stand_ins:
                results[node_id] = stand_ins[kind](**inputs)
            else:
                assert kind in ("SaveVideo", "PreviewImage"), kind
                results[node_id] = (inputs,)
    return results


def _saved_videos(prompt: dict, results: dict) -> list[dict]:
    return [results[k][0]["video"] for k, n in prompt.items() if n["class_type"] == "SaveVideo"]


def test_photo_to_video_workflow_runs(moda_nodes, moda_dir, data_dir):
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "photo_to_video_api.json").read_text())
    results = _execute(prompt, moda_nodes, _core_stand_ins(data_dir, seconds=0.5, frames=0))
    (video,) = _saved_videos(prompt, results)
    with Image.open(REPO_ROOT / "samples" / "portrait.jpg") as photo:
        assert video["images"].shape == (15, photo.height, photo.width, 3), "0.5 s at 30 fps: exactly 15 frames"
    assert video["fps"] == 30.0 and video["audio"]["sample_rate"] == 16000


def test_three_seeds_workflow_runs(moda_nodes, moda_dir, data_dir):
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "three_seeds_api.json").read_text())
    results = _execute(prompt, moda_nodes, _core_stand_ins(data_dir, seconds=0.4, frames=0))
    (video,) = _saved_videos(prompt, results)
    assert video["images"].shape == (12, 64, 192, 3) and video["fps"] == 30.0
    thirds = video["images"].split(64, dim=2)
    assert not torch.equal(thirds[0], thirds[1]) and not torch.equal(thirds[1], thirds[2]), "three different seeds"


def test_video_subject_rerender_workflow_runs(moda_nodes, moda_dir, comfy_dirs, data_dir):
    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "video_subject_rerender_api.json").read_text())
    results = _execute(prompt, moda_nodes, _core_stand_ins(data_dir, seconds=0.4, frames=6))
    (video,) = _saved_videos(prompt, results)
    assert video["images"].shape == (12, 64, 64, 3) and video["fps"] == 30.0
    (saved,) = (comfy_dirs.output / "moda").glob("talking_ground_truth_*.safetensors")
    ground_truth = TalkingRepr.load(saved)
    assert ground_truth.num_frames == 6 and ground_truth.fps == 25.0



@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_runs_every_network(moda_nodes, moda_dir, photo_subject, data_dir, precision):
    load = {"model": ("MODA_LoadMODAModel", "moda"), "faco": ("MODA_LoadFaCo", "faco"),
            "renderer": ("MODA_LoadRenderer", "renderer")}
    half = {key: run_node(moda_nodes[node], weights=f"{name}.safetensors", precision=precision).args[0]
            for key, (node, name) in load.items()}
    r = run_node(moda_nodes["MODA_AudioToMotion"], audio=speech(data_dir, 0.4), subject=photo_subject,
                 model=half["model"], **MOTION).args[0]
    r = run_node(moda_nodes["MODA_ComposeFace"], repr=r, subject=photo_subject, faco=half["faco"],
                 smoothing=True).args[0]
    assert r.mouth.dtype == r.face.dtype == torch.float32 and all(torch.isfinite(v).all() for v in r.tracks().values())
    conditions = run_node(moda_nodes["MODA_ProjectRepr"], repr=r, subject=photo_subject, **PROJECT).args[0]
    frames = run_node(moda_nodes["MODA_Render"], conditions=conditions[:4], subject=photo_subject,
                      renderer=half["renderer"], start_frame=0, batch_size=4).args[0]
    assert frames.dtype == torch.float32 and torch.isfinite(frames).all() and frames.shape == (4, 64, 64, 3)
