"""The pack as ComfyUI sees it: loading, schemas, types, import hygiene, and the test doubles themselves."""
from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import DOUBLES_DIR, REPO_ROOT, object_info

EXPECTED_NODES = {"MODA_SaveRepr", "MODA_LoadRepr", "MODA_ReprInfo", "MODA_ProjectRepr"}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd="/", env={**os.environ, **(env or {})}, timeout=120)


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd="/")


# Two clean interpreters, started at collection so that they run while the other tests do (they import torch,
# transformers and every moda_core module: several seconds each).
_PLAIN_IMPORT = f"""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("moda_pack_plain", {str(REPO_ROOT / "__init__.py")!r})
    module = importlib.util.module_from_spec(spec)
    sys.modules["moda_pack_plain"] = module
    spec.loader.exec_module(module)
    assert module.comfy_entrypoint is None, module.comfy_entrypoint
    assert not any(m.split(".")[0] in ("comfy", "comfy_api", "folder_paths") for m in sys.modules)
    print("ok")
"""
_CORE_IMPORT = f"""
    import importlib, pkgutil, sys
    sys.path.insert(0, {str(REPO_ROOT)!r})
    import moda_core
    names = [m.name for m in pkgutil.walk_packages(moda_core.__path__, "moda_core.")
             if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.startswith("comfy") or m in ("folder_paths", "server"))
    assert not leaked, leaked
    assert "moda_core.projection" in names
    print(len(names))
"""
_BACKGROUND = {"plain": _start(_PLAIN_IMPORT), "core": _start(_CORE_IMPORT)}


def _finish(name: str) -> tuple[int, str, str]:
    process = _BACKGROUND[name]
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


# ---------------------------------------------------------------- loading
def test_pack_loads_like_comfyui_and_registers_all_nodes(moda_pack, moda_nodes):
    assert moda_pack.__name__ == str(REPO_ROOT).replace(".", "_x_")
    assert inspect.iscoroutinefunction(moda_pack.comfy_entrypoint)
    assert not hasattr(moda_pack, "NODE_CLASS_MAPPINGS")
    assert EXPECTED_NODES <= set(moda_nodes)


def test_pack_imports_without_comfyui():
    code, out, err = _finish("plain")
    assert code == 0 and out.strip() == "ok", err


def test_moda_core_never_imports_comfyui():
    """At run time (every module imported in a clean interpreter) and in the source (lazy imports too)."""
    code, out, err = _finish("core")
    assert code == 0, err
    assert int(out) > 10
    for path in sorted((REPO_ROOT / "moda_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                root = name.split(".")[0]
                assert not root.startswith("comfy") and root not in ("folder_paths", "server", "nodes"), \
                    f"{path.relative_to(REPO_ROOT)} imports {name}"


# ---------------------------------------------------------------- schemas
@pytest.fixture(scope="module")
def infos(moda_nodes):
    return {node_id: object_info(cls) for node_id, cls in moda_nodes.items()}


def test_node_ids_names_and_categories(moda_nodes, infos):
    display_names = [info["display_name"] for info in infos.values()]
    assert len(set(display_names)) == len(display_names)
    for node_id, info in infos.items():
        assert node_id.startswith("MODA_") and info["name"] == node_id
        assert info["display_name"].startswith("MODA ") and (info["category"] == "MODA" or info["category"].startswith("MODA/"))
        assert len(info["description"]) > 40, node_id
        assert info["python_module"] == f"custom_nodes.{REPO_ROOT.name}"
        # messages use DISPLAY_NAME; the shown name may add search words: "MODA Audio to Motion (talking head, ...)"
        assert info["display_name"].startswith(getattr(moda_nodes[node_id], "DISPLAY_NAME", info["display_name"]))


@pytest.mark.parametrize("query, node_id", [("talking", "MODA_AudioToMotion"), ("talking head", "MODA_AudioToMotion"),
                                            ("lip sync", "MODA_AudioToMotion"), ("talking", "MODA_SubjectFromImage")])
def test_search_words_find_the_main_nodes(infos, query, node_id):
    """The frontend (1.35) searches node ids and display names; newer schemas carry search_aliases instead."""
    info = infos[node_id]
    searched = " ".join([info["name"], info["display_name"], *info.get("search_aliases", [])]).lower()
    assert query in searched


def test_every_input_and_output_has_a_tooltip(infos):
    for node_id, info in infos.items():
        for category in ("required", "optional"):
            for name, (io_type, options) in info["input"].get(category, {}).items():
                assert len(options.get("tooltip", "")) > 10, f"{node_id}.{name} has no tooltip"
        assert len(info["output_tooltips"]) == len(info["output"])
        for name, tooltip in zip(info["output_name"], info["output_tooltips"]):
            assert tooltip and len(tooltip) > 10, f"{node_id} output {name} has no tooltip"


def test_execute_signature_matches_inputs(moda_nodes, infos):
    for node_id, cls in moda_nodes.items():
        params = list(inspect.signature(cls.execute).parameters)
        order = infos[node_id]["input_order"]
        assert params == order.get("required", []) + order.get("optional", []), node_id


def test_widget_defaults_are_valid(infos):
    for node_id, info in infos.items():
        for name, (io_type, options) in info["input"]["required"].items():
            if io_type not in WIDGETS or "default" not in options:
                continue
            default = options["default"]
            if io_type == "COMBO":
                assert default in options["options"], f"{node_id}.{name}"
            if io_type in ("INT", "FLOAT"):
                assert options["min"] <= default <= options["max"], f"{node_id}.{name}"


def test_exact_schemas(infos):
    """The sockets workflows depend on (changing them breaks saved workflows)."""
    def sockets(node_id):
        info = infos[node_id]
        return ([(n, t) for n, (t, _) in info["input"]["required"].items()], info["output"], info["output_node"])

    assert sockets("MODA_SaveRepr") == ([("repr", "MODA_REPR"), ("filename_prefix", "STRING"),
                                         ("format", "COMBO")], ["STRING"], True)
    assert infos["MODA_SaveRepr"]["input"]["hidden"] == {"prompt": ("PROMPT",),
                                                         "extra_pnginfo": ("EXTRA_PNGINFO",)}
    assert sockets("MODA_LoadRepr") == ([("repr_file", "COMBO")], ["MODA_REPR"], False)
    assert sockets("MODA_ReprInfo") == ([("repr", "MODA_REPR")], ["STRING", "FLOAT", "INT", "INT"], False)
    assert sockets("MODA_ProjectRepr") == ([("repr", "MODA_REPR"), ("subject", "MODA_SUBJECT"), ("sample", "INT"),
                                            ("face_center", "COMBO"), ("style", "COMBO")],
                                           ["IMAGE", "MODA_POINTS"], False)
    face = infos["MODA_ProjectRepr"]["input"]["required"]["face_center"][1]
    assert face["options"] == ["authors (y 235)", "canonical (y 232)"] and face["default"] == "authors (y 235)"


def test_custom_types(moda_pack):
    types_module = sys.modules[f"{moda_pack.__name__}.nodes.types"]
    tags = [t.io_type for t in types_module.ALL_TYPES]
    assert len(set(tags)) == len(tags) and all(t.startswith("MODA_") for t in tags)
    assert {"MODA_REPR", "MODA_SUBJECT", "MODA_POINTS", "MODA_MODEL", "MODA_RENDERER"} <= set(tags)
    assert types_module.MODA_REPR.Input("x").get_io_type() == "MODA_REPR"


def test_object_info_is_json(infos):
    json.dumps(infos)


def test_nodes_use_only_api_present_since_0_3_64():
    """``IO``/``UI`` aliases and the ``raw_link``/``extra_dict`` arguments arrived after 0.3.64."""
    for path in sorted((REPO_ROOT / "nodes").glob("*.py")):
        source = path.read_text()
        for pattern in (r"\braw_link=", r"\bextra_dict=", r"\bIO\b", r"\bUI\b"):
            assert not re.search(pattern, source), f"{path.name} matches {pattern!r}"


# ---------------------------------------------------------------- the doubles behave like ComfyUI
def test_double_schema_behaviour(comfy_doubles):
    io = comfy_doubles.io
    custom = io.Custom("X_TYPE")
    out = custom.Output()
    schema = io.Schema(node_id="N", inputs=[io.Int.Input("a", default=1), custom.Input("b", optional=True)],
                       outputs=[out, io.Image.Output("img")], is_output_node=True)
    schema.finalize()
    assert out.id == "_0_X_TYPE_" and out.display_name is None
    assert schema.hidden == [io.Hidden.prompt, io.Hidden.extra_pnginfo]
    info = schema.get_v1_info(object)
    assert info.input["optional"] == {"b": ("X_TYPE", {})}
    assert info.input["required"]["a"] == ("INT", {"default": 1})
    assert info.output_name == ["X_TYPE", "img"]
    with pytest.raises(ValueError, match="Input ids must be unique"):
        io.Schema(node_id="N", inputs=[io.Int.Input("a"), io.Float.Input("a")]).validate()
    assert io.Combo.Input("c", options=io.FolderType, default=io.FolderType.temp).as_dict()["default"] == "temp"
    assert io.Combo.Input("c", options=[], upload=io.UploadType.audio).as_dict()["audio_upload"] is True


def test_double_progress_interrupt_and_paths(comfy_doubles, comfy_dirs, progress_events):
    utils, mm, fp = comfy_doubles.utils, comfy_doubles.model_management, comfy_doubles.folder_paths
    bar = utils.ProgressBar(3)
    bar.update(2)
    bar.update(5)
    assert [e[:2] for e in progress_events] == [(2, 3), (3, 3)]
    mm.interrupt_current_processing()
    with pytest.raises(mm.InterruptProcessingException):
        mm.throw_exception_if_processing_interrupted()
    mm.throw_exception_if_processing_interrupted()          # the flag is consumed
    folder, name, counter, sub, _ = fp.get_save_image_path("moda/x", fp.get_output_directory())
    assert (folder, name, counter, sub) == (str(comfy_dirs.output / "moda"), "x", 1, "moda")
    (comfy_dirs.output / "moda" / "x_00007_.npz").write_bytes(b"")
    assert fp.get_save_image_path("moda/x", fp.get_output_directory())[2] == 8
    with pytest.raises(Exception, match="outside the output folder"):
        fp.get_save_image_path("../x", fp.get_output_directory())
    assert fp.get_annotated_filepath("a/b.npz [output]") == str(comfy_dirs.output / "a/b.npz")
    fp.add_model_folder_path("moda", str(comfy_dirs.models / "moda"), is_default=True)
    (comfy_dirs.models / "moda").mkdir()
    (comfy_dirs.models / "moda" / "w.safetensors").write_bytes(b"")
    assert fp.get_filename_list("moda") == ["w.safetensors"]
    assert fp.get_full_path_or_raise("moda", "w.safetensors").endswith("w.safetensors")
    with pytest.raises(FileNotFoundError):
        fp.get_full_path_or_raise("moda", "missing.safetensors")


# Fidelity against a real ComfyUI checkout (skipped unless COMFYUI_DIR points at one, e.g. a fetched snapshot).
_SIGNATURES = """
import inspect, json, sys
sys.argv = sys.argv[:1]
from comfy.cli_args import args
args.cpu = True
from comfy_api.latest import _io as io, _ui as ui
import comfy.utils, comfy.model_management as mm, folder_paths
def sig(f):
    return [(p.name, repr(p.default)) for p in inspect.signature(f).parameters.values()]
out = {}
for name in ("Input", "WidgetInput", "Output"):
    out[name] = sig(getattr(io, name).__init__)
for name in ("Boolean", "Int", "Float", "String", "Combo"):
    out[name + ".Input"] = sig(getattr(io, name).Input.__init__)
out["Combo.Output"] = sig(io.Combo.Output.__init__)
out["NodeOutput"] = sig(io.NodeOutput.__init__)
import dataclasses
out["Schema"] = [(f.name, "factory" if f.default_factory is not dataclasses.MISSING else
                  "required" if f.default is dataclasses.MISSING else repr(f.default))
                 for f in dataclasses.fields(io.Schema)]
out["Hidden"] = [h.value for h in io.Hidden]
out["enums"] = {e: [m.value for m in getattr(io, e)] for e in ("FolderType", "UploadType", "NumberDisplay")}
out["ProgressBar"] = sig(comfy.utils.ProgressBar.__init__) + sig(comfy.utils.ProgressBar.update_absolute)
out["PreviewText"] = sig(ui.PreviewText.__init__)
for f in ("get_filename_list", "get_full_path", "get_full_path_or_raise", "add_model_folder_path",
          "get_annotated_filepath", "exists_annotated_filepath", "get_save_image_path", "get_input_directory",
          "get_output_directory", "get_temp_directory", "filter_files_content_types", "get_folder_paths"):
    out["fp." + f] = sig(getattr(folder_paths, f))
for f in ("intermediate_device", "get_torch_device", "unet_offload_device", "soft_empty_cache",
          "throw_exception_if_processing_interrupted", "interrupt_current_processing", "load_models_gpu",
          "unload_all_models"):
    out["mm." + f] = sig(getattr(mm, f))
import comfy.model_patcher, comfy.patcher_extension
for f in ("__init__", "add_callback", "detach", "model_size"):
    out["ModelPatcher." + f] = sig(getattr(comfy.model_patcher.ModelPatcher, f))
out["CallbacksMP.ON_DETACH"] = comfy.patcher_extension.CallbacksMP.ON_DETACH
out["types"] = [getattr(io, t).io_type for t in ("Boolean", "Int", "Float", "String", "Combo", "Image", "Mask",
                                                  "Audio", "Video", "AnyType")]
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="set COMFYUI_DIR to a ComfyUI checkout to compare")
def test_doubles_match_real_comfyui_signatures():
    real = _run(_SIGNATURES, env={"PYTHONPATH": os.environ["COMFYUI_DIR"]})
    doubles = _run(_SIGNATURES.replace("from comfy.cli_args import args\nargs.cpu = True\n", ""),
                   env={"PYTHONPATH": str(DOUBLES_DIR)})
    assert real.returncode == 0, real.stderr[-2000:]
    assert doubles.returncode == 0, doubles.stderr[-2000:]
    real_sigs, double_sigs = json.loads(real.stdout.splitlines()[-1]), json.loads(doubles.stdout.splitlines()[-1])
    assert double_sigs == real_sigs
