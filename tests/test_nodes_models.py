"""Weights nodes: the models/moda folder, the four loaders (kinds, cache, precision, devices) and the Hub download
node with a stand-in ``hf_hub_download`` (nothing is downloaded); plus the exact sockets of every pipeline node."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import ValidationFailed, fingerprint, object_info, run_node
from pipeline_fixtures import *  # noqa: F401,F403  (fixtures: tiny_weights, moda_dir)
from test_download import authors_payloads, drive  # noqa: F401  (fixtures: the authors' files, Drive)
from safetensors.torch import save_file

from moda_core.checkpoints import load_model

LOADERS = {"MODA_LoadMODAModel": ("moda", "MODA_MODEL"), "MODA_LoadFaCo": ("faco", "MODA_FACO"),
           "MODA_LoadRenderer": ("renderer", "MODA_RENDERER"),
           "MODA_LoadAudioEncoder": ("audio_encoder", "MODA_AUDIO_ENCODER")}


def util_module(moda_pack):
    return sys.modules[f"{moda_pack.__name__}.nodes.util"]


def sockets(info: dict) -> tuple:
    return ([(n, t) for n, (t, _) in info["input"]["required"].items()],
            [(n, t) for n, (t, _) in info["input"].get("optional", {}).items()], info["output"])


def options(node, name: str) -> list:
    return object_info(node)["input"]["required"][name][1]["options"]


# ---------------------------------------------------------------- schemas
def test_pipeline_node_sockets(moda_nodes):
    """The sockets saved workflows depend on."""
    infos = {node_id: object_info(cls) for node_id, cls in moda_nodes.items()}
    for node_id, (_, out) in LOADERS.items():
        assert sockets(infos[node_id]) == ([("weights", "COMBO"), ("precision", "COMBO")], [], [out])
        precision = infos[node_id]["input"]["required"]["precision"][1]
        assert precision["options"] == ["auto", "fp32", "bf16", "fp16"] and precision["default"] == "auto"
    assert sockets(infos["MODA_DownloadWeights"]) == (
        [("source", "COMBO"), ("repo_id", "STRING"), ("filenames", "STRING"), ("revision", "STRING")], [],
        ["STRING"])
    assert infos["MODA_DownloadWeights"]["output_node"]
    assert infos["MODA_DownloadWeights"]["input"]["required"]["filenames"][1]["default"] == (
        "moda.safetensors\nfaco.safetensors\nrenderer.safetensors")
    assert sockets(infos["MODA_SubjectFromImage"]) == (
        [("image", "IMAGE"), ("face_index", "INT"), ("name", "STRING")], [], ["MODA_SUBJECT", "IMAGE"])
    assert sockets(infos["MODA_SubjectFromVideo"]) == (
        [("images", "IMAGE"), ("fps", "FLOAT"), ("name", "STRING")], [], ["MODA_SUBJECT", "MODA_REPR", "IMAGE"])
    assert sockets(infos["MODA_AudioToMotion"]) == (
        [("audio", "AUDIO"), ("subject", "MODA_SUBJECT"), ("model", "MODA_MODEL"), ("seed", "INT"),
         ("samples", "INT"), ("fps", "FLOAT"), ("smoothing", "BOOLEAN"), ("window_blend", "COMBO")],
        [("audio_encoder", "MODA_AUDIO_ENCODER")], ["MODA_REPR"])
    seed = infos["MODA_AudioToMotion"]["input"]["required"]["seed"][1]
    assert seed["control_after_generate"] is True and seed["default"] == 0
    assert infos["MODA_AudioToMotion"]["input"]["required"]["fps"][1]["default"] == 30.0
    assert sockets(infos["MODA_ComposeFace"]) == (
        [("repr", "MODA_REPR"), ("subject", "MODA_SUBJECT"), ("faco", "MODA_FACO"), ("smoothing", "BOOLEAN")], [],
        ["MODA_REPR"])
    assert sockets(infos["MODA_Render"]) == (
        [("conditions", "IMAGE"), ("subject", "MODA_SUBJECT"), ("renderer", "MODA_RENDERER"), ("start_frame", "INT"),
         ("batch_size", "INT")], [("backend", "COMBO"), ("warped_frames", "IMAGE")], ["IMAGE"])
    assert sockets(infos["MODA_PasteBack"]) == (
        [("images", "IMAGE"), ("subject", "MODA_SUBJECT"), ("feather", "INT")], [], ["IMAGE"])
    assert sockets(infos["MODA_SaveSubject"]) == (
        [("subject", "MODA_SUBJECT"), ("filename_prefix", "STRING")], [], ["STRING"])
    assert sockets(infos["MODA_LoadSubject"]) == ([("subject_file", "COMBO")], [], ["MODA_SUBJECT", "IMAGE"])


def test_model_folder_registered_with_safetensors_only(moda_nodes, moda_dir, comfy_doubles):
    fp = comfy_doubles.folder_paths
    assert options(moda_nodes["MODA_LoadMODAModel"], "weights") == ["moda.safetensors"]
    assert fp.get_folder_paths("moda")[0] == str(moda_dir)
    assert fp.get_filename_list("moda") == ["faco.safetensors", "moda.safetensors", "renderer.safetensors"]
    assert options(moda_nodes["MODA_LoadFaCo"], "weights") == ["faco.safetensors"]
    info = object_info(moda_nodes["MODA_LoadRenderer"])["input"]["required"]["weights"][1]
    assert info["options"] == ["renderer.safetensors"] and info["default"] == "renderer.safetensors"


# ---------------------------------------------------------------- loaders
@pytest.mark.parametrize("node_id", LOADERS)
def test_loader_returns_cached_net(moda_nodes, moda_dir, node_id):
    kind = LOADERS[node_id][0]
    weights = "moda.safetensors" if kind in ("moda", "audio_encoder") else f"{kind}.safetensors"
    net = run_node(moda_nodes[node_id], weights=weights, precision="auto").args[0]
    assert net.kind == kind and net.dtype == torch.float32 and net.precision == "fp32"
    assert net.device.type == net.offload_device.type == "cpu" and not net.module.training
    assert net.path == os.path.realpath(moda_dir / weights)
    assert run_node(moda_nodes[node_id], weights=weights, precision="auto").args[0] is net


def test_loader_cache_follows_file_and_precision(moda_nodes, moda_dir, tiny_weights, moda_pack):
    node = moda_nodes["MODA_LoadFaCo"]
    first = run_node(node, weights="faco.safetensors", precision="fp32").args[0]
    stamp = fingerprint(node, weights="faco.safetensors", precision="fp32")
    half = run_node(node, weights="faco.safetensors", precision="bf16").args[0]
    assert half.dtype == torch.bfloat16 and next(half.module.parameters()).dtype == torch.bfloat16
    assert run_node(node, weights="faco.safetensors", precision="fp32").args[0] is not first, \
        "another precision replaced the cache entry"
    (moda_dir / "faco.safetensors").unlink()
    (moda_dir / "faco.safetensors").write_bytes((tiny_weights / "faco.safetensors").read_bytes())
    os.utime(moda_dir / "faco.safetensors", ns=(1, 1))
    assert fingerprint(node, weights="faco.safetensors", precision="fp32") != stamp
    again = run_node(node, weights="faco.safetensors", precision="fp32").args[0]
    assert again is run_node(node, weights="faco.safetensors", precision="fp32").args[0]
    cache = util_module(moda_pack)._CACHE
    assert sum(1 for key in cache if key[0] == again.path) == 1, "older entries of a file are dropped"


def test_auto_precision_asks_comfyui(moda_pack, comfy_doubles, monkeypatch):
    util, mm = util_module(moda_pack), comfy_doubles.model_management
    cpu = torch.device("cpu")
    assert util.resolve_precision("auto", cpu) == torch.float32
    monkeypatch.setattr(mm, "should_use_fp16", lambda device=None, **_: True)
    assert util.resolve_precision("auto", cpu) == torch.float16
    monkeypatch.setattr(mm, "should_use_bf16", lambda device=None, **_: True)
    assert util.resolve_precision("auto", cpu) == torch.bfloat16
    assert util.resolve_precision("fp32", cpu) == torch.float32
    # the renderer on a CPU: the library's rule (bf16 with AVX512-BF16 or AMX), whatever ComfyUI says
    monkeypatch.setattr("moda_core.render_backends.cpu_flags", lambda: {"avx2", "avx512f"})
    assert util.resolve_precision("auto", cpu, "renderer") == torch.float32
    monkeypatch.setattr("moda_core.render_backends.cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert util.resolve_precision("auto", cpu, "renderer") == torch.bfloat16
    monkeypatch.setattr("moda_core.render_backends.cpu_flags", lambda: {"amx_tile", "amx_bf16"})
    assert util.resolve_precision("auto", cpu, "renderer") == torch.bfloat16


def test_loaded_net_is_loaded_by_comfyui_model_management(moda_pack, comfy_doubles, monkeypatch):
    """active() asks ComfyUI to load the net's ModelPatcher on the compute device (and leaves it there for the next
    run, as core models); half precision runs under autocast."""
    util, mm, moves = util_module(moda_pack), comfy_doubles.model_management, []

    class Recorder(torch.nn.Linear):
        def to(self, *args, **kwargs):
            moves.append(args[0])
            return self

    monkeypatch.setattr(mm, "current_loaded_models", [])
    module = Recorder(2, 2)
    net = util.LoadedNet(module, "x", "/x", torch.device("xpu"), torch.device("cpu"), torch.float32)
    assert net.patcher.model is module and net.patcher.load_device == torch.device("xpu")
    with net.active() as active:
        assert active is module and set(moves) == {torch.device("xpu")} and mm.current_loaded_models == [net.patcher]
        loaded = list(moves)
    assert moves == loaded, "stays loaded until ComfyUI needs the memory"
    on_cpu = util.LoadedNet(torch.nn.Linear(2, 2), "x", "/x", torch.device("cpu"), torch.device("cpu"),
                            torch.bfloat16)
    with on_cpu.active():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")
    mm.unload_all_models()
    assert moves[-1] == torch.device("cpu") and mm.current_loaded_models == []


def test_loaded_net_runs_fully_on_the_compute_device(moda_pack, comfy_doubles, monkeypatch):
    """Asked for a full load (plain modules cannot run partly offloaded); where ComfyUI leaves the weights where
    they are (--novram), the net is still moved to the compute device."""
    util, calls = util_module(moda_pack), []
    monkeypatch.setattr(comfy_doubles.model_management, "load_models_gpu",
                        lambda models, **kwargs: calls.append((models, kwargs)))
    net = util.LoadedNet(torch.nn.Linear(2, 2), "x", "/x", torch.device("meta"), torch.device("cpu"), torch.float32)
    with net.active() as active:
        assert calls == [([net.patcher], {"force_full_load": True})]
        assert active.weight.device.type == "meta"
    assert util._same_device(torch.device("cuda", 0), torch.device("cuda"))
    assert not util._same_device(torch.device("cuda", 1), torch.device("cuda", 0))


def test_unload_models_releases_the_pack_cache(moda_nodes, moda_dir, moda_pack, comfy_doubles, monkeypatch):
    """ComfyUI's unload_all_models (/free, "Unload models") unloads the nets and the pack's cache lets go of them,
    so their memory is freed once ComfyUI's output cache does too; the next run loads the file again."""
    import gc
    import weakref

    mm, cache = comfy_doubles.model_management, util_module(moda_pack)._CACHE
    monkeypatch.setattr(mm, "current_loaded_models", [])
    cache.clear()
    net = run_node(moda_nodes["MODA_LoadFaCo"], weights="faco.safetensors", precision="auto").args[0]
    other = run_node(moda_nodes["MODA_LoadRenderer"], weights="renderer.safetensors", precision="auto").args[0]
    with net.active():
        pass
    assert mm.current_loaded_models == [net.patcher] and len(cache) == 2
    mm.unload_all_models()
    assert list(cache.values()) == [other], "only the net ComfyUI had loaded is dropped"
    module = weakref.ref(net.module)
    del net
    gc.collect()
    assert module() is None, "nothing else holds the unloaded network"
    again = run_node(moda_nodes["MODA_LoadFaCo"], weights="faco.safetensors", precision="auto").args[0]
    assert again.module is not None and len(cache) == 2
    cache.clear()


def test_loader_errors(moda_nodes, moda_dir, comfy_dirs):
    node = moda_nodes["MODA_LoadRenderer"]
    folder = comfy_dirs.models / "moda"
    with pytest.raises(ValidationFailed) as missing:
        run_node(node, weights="gone.safetensors", precision="auto")
    assert str(missing.value).startswith(f"MODA Load Renderer: input 'weights': 'gone.safetensors' is not in {folder} "
                                         "(found: renderer.safetensors), pick one from the list, or put the file "
                                         "there: make them with `moda quickstart --out DIR`")
    with pytest.raises(ValidationFailed, match=r"^MODA Load Renderer: input 'weights': 'faco.safetensors' holds a "
                                               r"faco network, not a renderer file, pick a file of this kind"):
        run_node(node, weights="faco.safetensors", precision="auto")
    with pytest.raises(ValueError, match=r"^MODA Load Renderer: input 'weights': cannot load 'faco.safetensors': .*"
                                         "holds a faco network, expected renderer"):
        node.execute(weights="faco.safetensors", precision="auto")       # replaced between validation and run
    with pytest.raises(ValueError, match="input 'precision': unknown option 'fp8'"):
        run_node(node, weights="renderer.safetensors", precision="fp8")
    assert fingerprint(node, weights="gone.safetensors", precision="auto") != \
        fingerprint(node, weights="gone.safetensors", precision="auto"), "missing file: NaN, always re-run"


@pytest.mark.parametrize("node_id", LOADERS)
def test_loader_without_weights_names_what_is_missing(moda_nodes, comfy_dirs, node_id):
    """No file of the kind: one placeholder option (not an empty list, which the frontend shows as 'undefined'), and
    the workflow's stored name gets the pack's message instead of ComfyUI's 'Value not in list'."""
    node = moda_nodes[node_id]
    what = node.WHAT
    info = object_info(node)["input"]["required"]["weights"][1]
    assert info["options"] == [f"(no {what} in models/moda)"] and info["default"] == info["options"][0]
    for stored in ("moda.safetensors", info["options"][0]):
        with pytest.raises(ValidationFailed) as failed:
            run_node(node, weights=stored, precision="auto")
        assert str(failed.value) == (
            f"{node.DISPLAY_NAME}: input 'weights': no {what} in {comfy_dirs.models / 'moda'}, put one there: make "
            "them with `moda quickstart --out DIR` (small networks trained on the bundled clip) or `moda train`, "
            "convert the authors' checkpoints with `moda convert`, or fetch converted files with MODA Download "
            "Weights; then press R (refresh) in ComfyUI")


def test_audio_encoder_from_hugging_face_file(moda_nodes, moda_dir, tiny_weights):
    """A Wav2Vec2ForCTC-style file (``wav2vec2.`` prefix, lm_head, no masked_spec_embed) with its config.json."""
    moda = load_model(tiny_weights / "moda.safetensors")
    state = {f"wav2vec2.{k}": v.clone() for k, v in moda.audio_encoder.state_dict().items()
             if k != "masked_spec_embed"}
    state["lm_head.weight"] = torch.zeros(4, 32)
    hf = moda_dir / "wav2vec2"
    hf.mkdir()
    save_file(state, hf / "model.safetensors")
    (hf / "config.json").write_text(json.dumps({**moda.config.audio_encoder.to_dict(), "vocab_size": 4,
                                                "architectures": ["Wav2Vec2ForCTC"]}))
    node = moda_nodes["MODA_LoadAudioEncoder"]
    assert options(node, "weights") == ["moda.safetensors", "wav2vec2/model.safetensors"]
    encoder = run_node(node, weights="wav2vec2/model.safetensors", precision="auto").args[0]
    for key, value in moda.audio_encoder.state_dict().items():
        if key != "masked_spec_embed":
            assert torch.equal(encoder.module.state_dict()[key], value), key
    other = moda_dir / "wav2vec2-large"
    other.mkdir()
    (other / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes())
    (other / "config.json").write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 2}))
    with pytest.raises(ValueError, match=r"input 'weights': cannot load 'wav2vec2-large/model.safetensors': .*does "
                                         "not fit the wav2vec2 architecture of config.json"):
        run_node(node, weights="wav2vec2-large/model.safetensors", precision="fp32")


# ---------------------------------------------------------------- download (huggingface_hub / gdown stood in)
class FakeHub:
    """Stands in for huggingface_hub's ``get_hf_file_metadata`` and ``hf_hub_download`` (writes the file in two
    halves through the given ``tqdm_class``); ``error`` is raised by the metadata check (the Hub's answer)."""

    def __init__(self, size: int = 1000, error: Exception | None = None):
        self.calls, self.size, self.error = [], size, error

    def metadata(self, url, **_):
        if self.error is not None:
            raise self.error
        return object()

    def __call__(self, repo_id, filename, *, revision, local_dir, tqdm_class, **_):
        self.calls.append({"repo_id": repo_id, "filename": filename, "revision": revision, "local_dir": local_dir})
        bar = tqdm_class(total=self.size, initial=0)
        bar.update(self.size // 2)
        bar.update(self.size - self.size // 2)
        path = os.path.join(local_dir, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"x" * self.size)
        return path


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", fake.metadata)
    return fake


@pytest.fixture
def node_texts(comfy_doubles):
    """What the node sent to show under it in the frontend (PromptServer.send_progress_text), as (id, text)."""
    from server import PromptServer

    PromptServer.instance.texts.clear()
    return PromptServer.instance.texts


DOWNLOAD = {"source": "Hugging Face repo", "repo_id": "someone/moda-weights",
            "filenames": "moda.safetensors\nrenderer/cathy.safetensors", "revision": "main"}


def test_download_writes_files_with_progress_and_shows_the_outcome(moda_nodes, comfy_dirs, hub, progress_events,
                                                                   node_texts):
    out = run_node(moda_nodes["MODA_DownloadWeights"], unique_id="12", **DOWNLOAD)
    folder = comfy_dirs.models / "moda"
    assert out.args[0].splitlines() == [str(folder / "moda.safetensors"), str(folder / "renderer/cathy.safetensors")]
    assert (folder / "renderer" / "cathy.safetensors").stat().st_size == 1000
    assert [(c["repo_id"], c["filename"], c["revision"], c["local_dir"]) for c in hub.calls] == [
        ("someone/moda-weights", name, "main", folder) for name in ("moda.safetensors", "renderer/cathy.safetensors")]
    values = [(v, t) for v, t, _ in progress_events]
    assert (500, 2000) in values and (1500, 2000) in values, "each half-downloaded file was shown"
    assert values[-1] == (2000, 2000)
    text = (f"2 file(s) in {folder}:\ndownloaded: {folder / 'moda.safetensors'} (0.0 MB, someone/moda-weights@main)"
            f"\ndownloaded: {folder / 'renderer' / 'cathy.safetensors'} (0.0 MB, someone/moda-weights@main)")
    assert node_texts == [("12", text)], "the outcome shows on the node"
    assert out.ui.as_dict()["text"][0] == text
    before = fingerprint(moda_nodes["MODA_DownloadWeights"], **DOWNLOAD)
    assert len(before) == 2 and None not in before and before == fingerprint(moda_nodes["MODA_DownloadWeights"],
                                                                             **DOWNLOAD)
    (folder / "moda.safetensors").unlink()
    assert fingerprint(moda_nodes["MODA_DownloadWeights"], **DOWNLOAD) == (None, before[1]), "runs again"


def test_download_offline_with_local_copies_fails_and_says_so(moda_nodes, comfy_dirs, hub, node_texts):
    folder = comfy_dirs.models / "moda"
    (folder / "renderer").mkdir(parents=True)
    for name in ("moda.safetensors", "renderer/cathy.safetensors"):
        (folder / name).write_bytes(b"local copy")
    hub.error = ConnectionError("[Errno -3] Temporary failure in name resolution")
    with pytest.raises(ValueError) as raised:
        run_node(moda_nodes["MODA_DownloadWeights"], unique_id="3", **DOWNLOAD)
    message = str(raised.value)
    assert message.startswith("MODA Download Weights: input 'repo_id': 2 file(s) not downloaded from "
                              "https://huggingface.co/someone/moda-weights (revision main): the Hugging Face Hub "
                              "could not be reached")
    assert (f"renderer/cathy.safetensors: https://huggingface.co/someone/moda-weights/resolve/main/renderer/"
            f"cathy.safetensors -> {folder / 'renderer'}{os.sep}") in message
    assert "Same-name local copies exist but were NOT downloaded or checked now" in message
    assert hub.calls == []
    assert node_texts[0][0] == "3" and node_texts[0][1].startswith("FAILED\n2 file(s) not downloaded")


@pytest.mark.parametrize("error,message", [
    ("repo", r"input 'repo_id': 2 file\(s\) not downloaded .*: repo 'someone/moda-weights' not found, private or "
             "gated"),
    ("revision", r"input 'revision': 2 file\(s\) not downloaded .*: revision 'main' not found in "
                 "someone/moda-weights"),
    ("entry", r"input 'filenames': 2 file\(s\) not downloaded .*: not in someone/moda-weights at main"),
])
def test_download_hub_errors(moda_nodes, comfy_dirs, hub, error, message):
    from huggingface_hub import errors

    kind = {"repo": errors.RepositoryNotFoundError, "revision": errors.RevisionNotFoundError,
            "entry": errors.RemoteEntryNotFoundError}[error]
    hub.error = kind.__new__(kind)               # without the HTTP response their constructors want
    Exception.__init__(hub.error, "404 Client Error")
    with pytest.raises(ValueError, match="^MODA Download Weights: " + message):
        run_node(moda_nodes["MODA_DownloadWeights"], **DOWNLOAD)


@pytest.mark.parametrize("change,messages", [
    ({"repo_id": " "}, ["input 'repo_id': ' ' is not a Hugging Face repo id"]),
    ({"filenames": "\n ,", "revision": ""}, ["input 'filenames': no file named", "input 'revision': empty"]),
])
def test_download_input_errors_name_each_input_once(moda_nodes, comfy_dirs, hub, change, messages):
    with pytest.raises(ValueError) as raised:
        run_node(moda_nodes["MODA_DownloadWeights"], **{**DOWNLOAD, **change})
    lines = str(raised.value).splitlines()
    assert len(lines) == len(messages)
    for line, message in zip(lines, messages):
        assert line.startswith(f"MODA Download Weights: {message}")
    assert hub.calls == []


@pytest.mark.parametrize("name", ["../escape.safetensors", "/abs.safetensors"])
def test_download_validation_pins_only_filenames(moda_nodes, comfy_dirs, hub, name):
    import inspect

    node = moda_nodes["MODA_DownloadWeights"]
    assert list(inspect.signature(node.validate_inputs).parameters) == ["filenames"], "errors pin on filenames only"
    with pytest.raises(ValidationFailed, match=f"^MODA Download Weights: input 'filenames': '{name}' leaves "
                                               "models/moda"):
        run_node(node, **{**DOWNLOAD, "filenames": name})
    assert hub.calls == []


def test_download_authors_source_ignores_the_hub_inputs(moda_nodes, comfy_dirs, monkeypatch, node_texts):
    import gdown
    import requests

    calls = []

    def offline(**kwargs):
        calls.append(kwargs["id"])
        raise requests.exceptions.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(gdown, "download", offline)
    with pytest.raises(ValueError) as raised:
        run_node(moda_nodes["MODA_DownloadWeights"], **{**DOWNLOAD, "source": "authors' release (Google Drive)",
                                                        "repo_id": ""})
    folder = comfy_dirs.models / "moda"
    message = str(raised.value)
    assert message.startswith("MODA Download Weights: input 'source': 5 file(s) not downloaded from the authors' "
                              "Google Drive: Google Drive could not be reached")
    assert f"renderer/Cathy.pth: https://drive.google.com/uc?id=14TfL3Qq1TrT4FkFsQOmcBVwZ_Fj-_AjZ -> " \
           f"{folder / 'renderer'}{os.sep}" in message
    assert len(calls) == 1


def test_download_authors_release_into_models_moda(moda_nodes, comfy_dirs, monkeypatch, drive, progress_events,
                                                   node_texts):
    """The authors' release through the node (Drive stood in, tiny networks): converted files where the loaders
    list them, progress per Drive file, the outcome on the node."""
    from test_download import TINY

    from moda_core import download

    real = download.download_weights
    monkeypatch.setattr(download, "download_weights", lambda *a, **k: real(*a, **{**k, "configs": TINY}))
    out = run_node(moda_nodes["MODA_DownloadWeights"], unique_id="7", **{**DOWNLOAD, "source": "authors' release "
                                                                         "(Google Drive)"})
    folder = comfy_dirs.models / "moda"
    assert {os.path.relpath(p, folder) for p in out.args[0].splitlines()} == {
        "moda.safetensors", "faco.safetensors", os.path.join("renderer", "cathy.safetensors"),
        os.path.join("cathy", "repr.npz"), os.path.join("cathy", "reference.pth"),
        os.path.join("cathy", "subject.safetensors")}
    assert options(moda_nodes["MODA_LoadRenderer"], "weights") == ["renderer/cathy.safetensors"]
    assert options(moda_nodes["MODA_LoadMODAModel"], "weights") == ["moda.safetensors"]
    values = [(v, t) for v, t, _ in progress_events]
    assert values[-1] == (5000, 5000) and all(t == 5000 for _, t in values)
    assert any(1000 < v < 2000 for v, _ in values), "the second Drive file's progress sits in its own fifth"
    assert node_texts[-1][0] == "7" and node_texts[-1][1].startswith(f"6 file(s) in {folder}:\nwrote: ")


def test_download_cancel_stops_the_transfer(moda_nodes, comfy_dirs, comfy_doubles, hub, progress_events):
    mm = comfy_doubles.model_management
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        run_node(moda_nodes["MODA_DownloadWeights"], **DOWNLOAD)
    assert not (comfy_dirs.models / "moda" / "moda.safetensors").exists()
    assert len(hub.calls) == 1


# ---------------------------------------------------------------- the authors' checkpoints in models/moda
def test_loader_takes_an_authors_pkl_converted_once(moda_nodes, moda_pack, comfy_dirs, monkeypatch):
    from moda_core import checkpoints
    from moda_core.models.faco import FaCoConfig, FaCoNet

    folder = comfy_dirs.models / "moda"
    folder.mkdir()
    faco = FaCoNet(FaCoConfig())
    torch.save({f"module.{k}": v for k, v in faco.state_dict().items()}, folder / "FaCo.pkl")
    node = moda_nodes["MODA_LoadFaCo"]
    assert options(node, "weights") == ["FaCo.pkl"]
    assert options(moda_nodes["MODA_LoadMODAModel"], "weights") == ["(no MODA model file in models/moda)"]
    conversions = []
    real = checkpoints.convert_authors_checkpoint
    monkeypatch.setattr(checkpoints, "convert_authors_checkpoint",
                        lambda *a, **k: conversions.append(a[0]) or real(*a, **k))
    loaded = run_node(node, weights="FaCo.pkl", precision="fp32").args[0]
    key = "decoder.layers.0.weight"
    assert torch.equal(loaded.module.state_dict()[key], faco.state_dict()[key])
    cached = list((folder / ".moda-converted").iterdir())
    assert [p.name for p in cached] == [f"FaCo-{checkpoints.content_hash(folder / 'FaCo.pkl')[:16]}.safetensors"]
    util_module(moda_pack)._CACHE.clear()
    run_node(node, weights="FaCo.pkl", precision="fp32")
    assert len(conversions) == 1, "the second load reuses the cached conversion"
    assert options(node, "weights") == ["FaCo.pkl"], "the conversion cache is not listed"


# ---------------------------------------------------------------- doubles vs a real ComfyUI
@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="set COMFYUI_DIR to a ComfyUI checkout to compare")
def test_precision_doubles_match_real_comfyui_signatures():
    import inspect
    import subprocess

    code = ("import inspect, json, sys\nsys.argv = sys.argv[:1]\n{setup}import comfy.model_management as mm\n"
            "print(json.dumps({{f: [p.name for p in inspect.signature(getattr(mm, f)).parameters.values()] "
            "for f in ('should_use_fp16', 'should_use_bf16', 'get_torch_device', 'unet_offload_device')}}))")
    real = subprocess.run([sys.executable, "-c", code.format(setup="from comfy.cli_args import args\nargs.cpu = "
                                                                   "True\n")],
                          env={**os.environ, "PYTHONPATH": os.environ["COMFYUI_DIR"]}, capture_output=True,
                          text=True, timeout=300, cwd="/")
    assert real.returncode == 0, real.stderr[-2000:]
    from comfy_harness import _import_doubles

    mm = _import_doubles().model_management
    ours = {f: [p.name for p in inspect.signature(getattr(mm, f)).parameters.values()]
            for f in ("should_use_fp16", "should_use_bf16", "get_torch_device", "unet_offload_device")}
    assert json.loads(real.stdout.splitlines()[-1]) == ours


def test_download_into_an_unwritable_models_folder_is_one_message(moda_nodes, comfy_dirs, hub, node_texts):
    folder = comfy_dirs.models / "moda"
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the folder should be")
    with pytest.raises(ValueError, match=r"^MODA Download Weights: cannot write in .*moda \(.*File exists.*\); make "
                                         r"models/moda writable"):
        run_node(moda_nodes["MODA_DownloadWeights"], unique_id="5", **DOWNLOAD)
    assert hub.calls == [] and node_texts[-1][1].startswith("FAILED\ncannot write in ")
