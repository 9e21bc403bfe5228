"""MODA Train Avatar through the ComfyUI doubles: files in models/moda/avatars/<name>/, progress with previews,
cancel -> resumable state -> the rerun resumes, the loaders list the avatar, bad inputs give one error naming the
input."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import REPO_ROOT, ValidationFailed, fingerprint, run_node
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)
from test_train_common import sample_dir  # noqa: F401  (fixture: a prepared 3 s sample of may_5s.mp4)

from moda_core.subject import Subject
from moda_core.train.loop import saved_step

NODE = "MODA_TrainAvatar"
TINY = {"steps": 4, "init_renderer": "(none: from scratch)", "preset": "tiny", "seed": 0, "minutes": 0.0,
        "preview_every": 2}


@pytest.fixture
def hook_events(comfy_doubles):
    """Every ProgressBar update as (value, total, preview); ``hook_events.cancel_at`` cancels like the server:
    the flag is set (the user pressed Cancel) and the hook raises InterruptProcessingException (main.py's hook)."""
    utils, mm = comfy_doubles.utils, comfy_doubles.model_management
    events = []

    def hook(value, total, preview, node_id=None):
        events.append((value, total, preview))
        if getattr(events, "cancel_at", None) == (value, total):
            mm.interrupt_current_processing(True)
        mm.throw_exception_if_processing_interrupted()

    events = type("Events", (list,), {})()
    previous = utils.PROGRESS_BAR_HOOK
    utils.set_progress_bar_global_hook(hook)
    yield events
    utils.set_progress_bar_global_hook(previous)
    mm.interrupt_current_processing(False)


def _train(moda_nodes, sample_dir, name, **changes):
    with torch.inference_mode():             # as ComfyUI's executor runs every node
        return run_node(moda_nodes[NODE], unique_id="7", source=str(sample_dir), name=name, **{**TINY, **changes})


def test_trains_into_models_avatars(moda_nodes, moda_dir, sample_dir, hook_events):
    node = moda_nodes[NODE]
    before = fingerprint(node, source=str(sample_dir), name="may", **TINY)
    assert before != before, "NaN: always runs while the avatar is not trained"
    renderer, subject, preview, report = _train(moda_nodes, sample_dir, "may").args
    after = fingerprint(node, source=str(sample_dir), name="may", **TINY)
    assert after == fingerprint(node, source=str(sample_dir), name="may", **TINY), "a finished avatar is reused"
    assert fingerprint(node, source=str(sample_dir), name="may", **{**TINY, "steps": 6}) != after
    folder = moda_dir / "avatars" / "may"
    for name in ("renderer.safetensors", "subject.safetensors", "preview.png", "report.json", "report.md"):
        assert (folder / name).is_file(), name
    data = json.loads((folder / "report.json").read_text())
    assert (data["steps"], data["preset"], data["image_size"], data["stopped_by"]) == (4, "tiny", 64, "steps")
    assert "4 steps" in report and f"PSNR {data['psnr']:.2f} dB" in report and str(folder) in report

    assert renderer.kind == "renderer" and renderer.module.config.image_size == 64
    assert renderer.path == str((folder / "renderer.safetensors").resolve())
    assert isinstance(subject, Subject) and torch.equal(subject.template,
                                                        Subject.load(sample_dir / "subject.safetensors").template)
    assert preview.shape == (1, 64, 128, 3) and preview.dtype == torch.float32 and 0 <= preview.min() <= preview.max() <= 1

    steps = [(v, t) for v, t, _ in hook_events if t == 4]
    assert steps[-1] == (4, 4) and {1, 2, 3, 4} <= {v for v, _ in steps}
    previews = [p for _, t, p in hook_events if p is not None]
    assert len(previews) >= 2 and all(p[0] == "JPEG" and p[1].size == (128, 64) for p in previews)

    renderers = moda_nodes["MODA_LoadRenderer"].GET_NODE_INFO_V1()["input"]["required"]["weights"][1]["options"]
    assert "avatars/may/renderer.safetensors" in renderers
    assert not [r for r in renderers if r.startswith("avatars/may/train/")], "training states are not listed"
    load_subject = moda_nodes["MODA_LoadSubject"]
    options = load_subject.GET_NODE_INFO_V1()["input"]["required"]["subject_file"][1]["options"]
    assert options == ["avatars/may/subject.safetensors [models]"]
    loaded = run_node(load_subject, subject_file=options[0]).args[0]
    assert torch.equal(loaded.template, subject.template)
    init = moda_nodes[NODE].GET_NODE_INFO_V1()["input"]["required"]["init_renderer"][1]["options"]
    assert init[0] == "(none: from scratch)" and "avatars/may/renderer.safetensors" in init


def test_cancel_keeps_a_resumable_state_and_the_rerun_resumes(moda_nodes, moda_dir, sample_dir, hook_events,
                                                              comfy_doubles):
    mm = comfy_doubles.model_management
    hook_events.cancel_at = (2, 4)
    with pytest.raises(mm.InterruptProcessingException):
        _train(moda_nodes, sample_dir, "stopped")
    folder = moda_dir / "avatars" / "stopped"
    assert saved_step(folder / "train" / "runs" / "renderer") == 2
    assert not (folder / "renderer.safetensors").exists() and not mm.processing_interrupted()

    hook_events.cancel_at = None
    hook_events.clear()
    report = _train(moda_nodes, sample_dir, "stopped").args[3]
    assert "4 steps" in report
    assert min(v for v, t, _ in hook_events if t == 4) == 3, "resumed after step 2, not from the start"
    assert json.loads((folder / "report.json").read_text())["steps"] == 4
    # (cancel + resume == one uninterrupted run, bit for bit: tests/test_train_avatar.py, on the same library call)


def test_a_video_input_is_used_as_a_file(moda_nodes, tmp_path, data_dir):
    """A VIDEO with a file behind it is read in place; one without (made from frames) is written once into the
    avatar's folder under a name from its content."""
    video_source = sys.modules[moda_nodes[NODE].__module__]._video_source

    class FromFile:
        def get_stream_source(self):
            return str(data_dir / "video" / "may_5s.mp4")

    class FromComponents:
        def save_to(self, path):
            shutil.copyfile(data_dir / "video" / "may_5s.mp4", path)

    assert video_source("X", FromFile(), str(tmp_path / "a")) == str(data_dir / "video" / "may_5s.mp4")
    written = video_source("X", FromComponents(), str(tmp_path / "a"))
    assert written.startswith(str(tmp_path / "a" / "video_")) and written.endswith(".mp4")
    assert video_source("X", FromComponents(), str(tmp_path / "a")) == written
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [written.rsplit("/", 1)[1]]
    with pytest.raises(ValueError, match="^X: input 'video': expected a VIDEO, got int"):
        video_source("X", 3, str(tmp_path / "a"))


def test_bad_inputs_name_the_input(moda_nodes, moda_dir, sample_dir, tmp_path, comfy_dirs):
    node = moda_nodes[NODE]
    with pytest.raises(ValueError, match="^MODA Train Avatar: input 'video': no video given, connect Load Video"):
        run_node(node, source="  ", name="x", **TINY)
    with pytest.raises(ValidationFailed, match="^MODA Train Avatar: input 'name': '../up' cannot be a folder name"):
        run_node(node, source=str(sample_dir), name="../up", **TINY)
    with pytest.raises(ValueError, match="^MODA Train Avatar: input 'source': 'missing.mp4' not found"):
        run_node(node, source="missing.mp4", name="x", **TINY)
    (comfy_dirs.input / "empty").mkdir()
    with pytest.raises(ValueError, match="^MODA Train Avatar: input 'source': folder 'empty' holds no sample.json"):
        run_node(node, source="empty", name="x", **TINY)
    with pytest.raises(ValidationFailed, match="^MODA Train Avatar: input 'init_renderer': 'nope.safetensors' is not"):
        run_node(node, source=str(sample_dir), name="x", **{**TINY, "init_renderer": "nope.safetensors"})
    # the pack's tiny renderer is 64 px; the small preset trains 256 px
    with pytest.raises(ValueError, match=r"^MODA Train Avatar: input 'init_renderer': the starting renderer .* is "
                                         r"64 px .* preset 'small' trains 256 px"):
        run_node(node, source=str(sample_dir), name="x", **{**TINY, "init_renderer": "renderer.safetensors",
                                                            "preset": "small"})
    assert not (moda_dir / "avatars" / "x" / "renderer.safetensors").exists()


def _run_on_demand(prompt: dict, moda_nodes: dict, stand_ins: dict) -> dict:
    """Run an API prompt as ComfyUI's executor does: from the output nodes back, a lazy input's node only when the
    node's check_lazy_status asks for it (None until then). Returns {node_id: outputs} of the nodes that ran."""
    results = {}

    def lazy_inputs(kind: str) -> set[str]:
        if kind not in moda_nodes:
            return set()
        info = moda_nodes[kind].GET_NODE_INFO_V1()["input"]
        return {name for group in info.values() for name, spec in group.items() if spec[1:] and
                spec[1].get("lazy")}

    def run(node_id: str) -> None:
        if node_id in results:
            return
        node = prompt[node_id]
        kind, links = node["class_type"], {k: v for k, v in node["inputs"].items() if isinstance(v, list)}
        lazy = lazy_inputs(kind) & links.keys()
        for name, (source, _) in links.items():
            if name not in lazy:
                run(source)

        def inputs() -> dict:
            return {k: (results[v[0]][v[1]] if v[0] in results else None) if isinstance(v, list) else v
                    for k, v in node["inputs"].items()}

        if lazy:
            for name in moda_nodes[kind].check_lazy_status(**inputs()):
                run(links[name][0])
        if kind in moda_nodes:
            results[node_id] = run_node(moda_nodes[kind], unique_id=node_id, prompt=prompt, **inputs()).args
        elif kind in stand_ins:
            results[node_id] = stand_ins[kind](**inputs())
        else:
            assert kind in ("SaveVideo", "PreviewImage"), kind
            results[node_id] = (inputs(),)

    for node_id, node in prompt.items():
        if node["class_type"] in ("SaveVideo", "PreviewImage", "PreviewAny"):
            run(node_id)
    return results


# a warp-refine renderer (the 'fast' preset's kind) at the tiny size
TINY_WARP_REFINE = dict(ngf=4, num_levels=3, image_size=64, width_cap=2, space_to_depth=2, reference_residual=True,
                        tpe_bias=True, warped_reference=True)


@pytest.mark.parametrize("renderer", ["still reference", "warp-refine"])
def test_make_avatar_workflow_runs(moda_nodes, moda_dir, sample_dir, data_dir, monkeypatch, renderer):
    """workflows/api/make_avatar_api.json end to end, with the tiny preset for 2 steps and the prepared sample in
    'source' instead of the Load Video link (the graph after the trainer is the shipped one). MODA Warp Render
    runs only for a warp-refine renderer (MODA Render's lazy warped_frames), which then refines its frames."""
    from test_nodes_pipeline import _core_stand_ins, _saved_videos

    from moda_core.models.renderer import RendererConfig
    from moda_core.train import presets

    prompt = json.loads((REPO_ROOT / "workflows" / "api" / "make_avatar_api.json").read_text())
    train = prompt["2"]["inputs"]
    assert (train["preset"], train["steps"], train["video"]) == ("full", 3000, ["1", 0])
    (warp_id,) = [k for k, n in prompt.items() if n["class_type"] == "MODA_WarpRender"]
    warp = prompt[warp_id]["inputs"]
    assert (warp["points"], warp["subject"], warp["size"]) == (["10", 1], ["2", 1], 512)
    assert prompt["11"]["inputs"]["warped_frames"] == [warp_id, 0]
    del prompt["1"], train["video"]
    train.update(source=str(sample_dir), preset="tiny", steps=2, preview_every=1)
    if renderer == "warp-refine":
        monkeypatch.setitem(presets._CONFIGS["renderer"], "tiny", lambda: RendererConfig(**TINY_WARP_REFINE))
        warp["size"] = 64                                    # the renderer's size, as 512 is for fast avatars
    stand_ins = {**_core_stand_ins(data_dir, seconds=0.4, frames=0), "PreviewAny": lambda source: (source,)}
    with torch.inference_mode():
        results = _run_on_demand(prompt, moda_nodes, stand_ins)
    (video,) = _saved_videos(prompt, results)
    assert "2 steps" in results["4"][0] and results["3"][0]["images"].shape == (1, 64, 128, 3)
    assert video["images"].shape == (12, 64, 64, 3) and video["fps"] == 30.0
    assert (moda_dir / "avatars" / train["name"] / "renderer.safetensors").is_file()
    assert results["2"][0].module.config.warped_reference == (renderer == "warp-refine")
    if renderer == "still reference":
        assert warp_id not in results, "MODA Warp Render ran for a renderer that does not use its frames"
        return
    warped = results[warp_id][0]
    assert warped.shape == (12, 64, 64, 3)
    # two steps from a start that returns its reference: the render is the warped frame, slightly refined
    change = (video["images"] - warped).abs().mean().item()
    assert 0 < change < 0.01, change


def test_teacher_renderer_distils(moda_nodes, moda_dir, sample_dir, hook_events):
    node = moda_nodes[NODE]
    options = node.GET_NODE_INFO_V1()["input"]["optional"]["teacher_renderer"][1]["options"]
    assert options[0] == "(none: no distillation)" and "renderer.safetensors" in options
    report = _train(moda_nodes, sample_dir, "taught", steps=1, preview_every=1,
                    teacher_renderer="renderer.safetensors").args[3]
    data = json.loads((moda_dir / "avatars" / "taught" / "report.json").read_text())
    assert data["teacher"] == str(moda_dir / "renderer.safetensors") and data["distill_weight"] == 50.0
    assert "distilled from" in report and "distill" in data["losses"]
    with pytest.raises(ValidationFailed, match="^MODA Train Avatar: input 'teacher_renderer': 'nope.safetensors' is"):
        _train(moda_nodes, sample_dir, "x", teacher_renderer="nope.safetensors")
    # the pack's tiny renderer is 64 px; the small preset trains 256 px
    with pytest.raises(ValueError, match=r"^MODA Train Avatar: input 'teacher_renderer': the teacher renderer .* is "
                                         r"64 px .* preset 'small' trains 256 px"):
        _train(moda_nodes, sample_dir, "x", preset="small", teacher_renderer="renderer.safetensors")
    assert not (moda_dir / "avatars" / "x" / "renderer.safetensors").exists()
