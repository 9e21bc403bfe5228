"""Every shipped workflow must load and queue in ComfyUI: a validator for UI-format and API-format JSON.

Checked for ``workflows/<name>.json`` (UI format, what users open) and ``workflows/api/<name>_api.json`` (API
format, what ``POST /prompt`` takes), and for the fixtures in ``tests/data/workflows``:

* every node type exists in the pack (its live schemas) or in ``CORE_NODES`` below;
* UI format: node/link ids unique, inputs and outputs match the node's sockets, every link joins an output to an
  input of a matching type and is recorded at both ends, required sockets are connected, ``widgets_values`` has
  one valid value per widget (types, min/max, combo options) plus the frontend's extras, an output node exists;
* API format: the checks ``execution.validate_inputs`` makes (required inputs, linked types, constant values);
* the API file is the same graph as the UI file: same nodes, links and widget values, nothing else.

The validator works on ``/object_info`` entries, so the same code accepts a live server's ``/object_info``.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from comfy_harness import *  # noqa: F401,F403  (fixtures)
from comfy_harness import REPO_ROOT, run_node

WORKFLOW_DIR = REPO_ROOT / "workflows"
FIXTURE_DIR = Path(__file__).resolve().parent / "data" / "workflows"

# ---------------------------------------------------------------- core nodes we use
# /object_info entries written down from ComfyUI 0.8.0 source (618b803, 2026-01-07), checked against 0.3.64
# (a125cd8): types, widget options and output types only (tooltips left out). File combos list files at run time.
_FILES: list[str] = []
CORE_NODES: dict[str, dict] = {
    # nodes.py:1647 LoadImage (V1): image = (sorted image files, {"image_upload": True}) -> IMAGE, MASK
    "LoadImage": {"input": {"required": {"image": [_FILES, {"image_upload": True}]}},
                  "input_order": {"required": ["image"]}, "output": ["IMAGE", "MASK"], "output_node": False},
    # comfy_extras/nodes_audio.py LoadAudio (V3): Combo "audio" (upload=audio) -> AUDIO
    "LoadAudio": {"input": {"required": {"audio": ["COMBO", {"audio_upload": True, "options": _FILES}]}},
                  "input_order": {"required": ["audio"]}, "output": ["AUDIO"], "output_node": False},
    # comfy_extras/nodes_video.py CreateVideo (V3): images IMAGE, fps FLOAT 30 [1, 120] step 1, audio AUDIO opt.
    "CreateVideo": {"input": {"required": {"images": ["IMAGE", {}],
                                           "fps": ["FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0,
                                                             "step": 1.0}]},
                              "optional": {"audio": ["AUDIO", {}]}},
                    "input_order": {"required": ["images", "fps"], "optional": ["audio"]},
                    "output": ["VIDEO"], "output_node": False},
    # comfy_extras/nodes_video.py SaveVideo (V3, output node): format = VideoContainer, codec = VideoCodec
    "SaveVideo": {"input": {"required": {"video": ["VIDEO", {}],
                                         "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                                         "format": ["COMBO", {"options": ["auto", "mp4"], "default": "auto"}],
                                         "codec": ["COMBO", {"options": ["auto", "h264"], "default": "auto"}]}},
                  "input_order": {"required": ["video", "filename_prefix", "format", "codec"]},
                  "output": [], "output_node": True},
    # nodes.py SaveImage / PreviewImage (V1, output nodes)
    "SaveImage": {"input": {"required": {"images": ["IMAGE", {}],
                                         "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
                  "input_order": {"required": ["images", "filename_prefix"]}, "output": [], "output_node": True},
    "PreviewImage": {"input": {"required": {"images": ["IMAGE", {}]}}, "input_order": {"required": ["images"]},
                     "output": [], "output_node": True},
    # comfy_extras/nodes_video.py LoadVideo (V3): Combo "file" (sorted video files of input/, upload=video) -> VIDEO
    "LoadVideo": {"input": {"required": {"file": ["COMBO", {"video_upload": True, "options": _FILES}]}},
                  "input_order": {"required": ["file"]}, "output": ["VIDEO"], "output_node": False},
    # comfy_extras/nodes_video.py GetVideoComponents (V3): video -> images IMAGE, audio AUDIO, fps FLOAT
    "GetVideoComponents": {"input": {"required": {"video": ["VIDEO", {}]}}, "input_order": {"required": ["video"]},
                           "output": ["IMAGE", "AUDIO", "FLOAT"], "output_node": False},
    # comfy_extras/nodes_images.py ImageStitch (V3): image1, direction, match_image_size, spacing_width [0, 1024]
    # step 2, spacing_color, optional image2 -> IMAGE (batches of different lengths repeat their last image)
    "ImageStitch": {"input": {"required": {"image1": ["IMAGE", {}],
                                           "direction": ["COMBO", {"options": ["right", "down", "left", "up"],
                                                                   "default": "right"}],
                                           "match_image_size": ["BOOLEAN", {"default": True}],
                                           "spacing_width": ["INT", {"default": 0, "min": 0, "max": 1024,
                                                                     "step": 2}],
                                           "spacing_color": ["COMBO", {"options": ["white", "black", "red", "green",
                                                                                   "blue"], "default": "white"}]},
                              "optional": {"image2": ["IMAGE", {}]}},
                    "input_order": {"required": ["image1", "direction", "match_image_size", "spacing_width",
                                                 "spacing_color"], "optional": ["image2"]},
                    "output": ["IMAGE"], "output_node": False},
    # comfy_extras/nodes_preview_any.py PreviewAny (V1, output node; "Preview as Text", 0.3.64 "Preview Any")
    "PreviewAny": {"input": {"required": {"source": ["*", {}]}}, "input_order": {"required": ["source"]},
                   "output": [], "output_node": True},
}
# Widgets the frontend adds after the schema's own: LoadImage's and LoadVideo's upload button ("image"), LoadAudio's
# upload and player (null, null), PreviewAny's text display (null x3 in the 0.7.67 templates).
EXTRA_WIDGET_VALUES = {"LoadImage": 1, "LoadVideo": 1, "LoadAudio": 2, "PreviewAny": 3}
FILE_PICKERS = {("LoadImage", "image"), ("LoadAudio", "audio"), ("LoadVideo", "file"), ("MODA_LoadRepr", "repr_file"),
                ("MODA_LoadSubject", "subject_file"), ("MODA_LoadMODAModel", "weights"), ("MODA_LoadFaCo", "weights"),
                ("MODA_LoadRenderer", "weights"), ("MODA_LoadAudioEncoder", "weights"),
                ("MODA_LoadAuthorsSubject", "subject_folder")}
UI_ONLY_NODES = {"Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
CONTROL_NAMES = {"seed", "noise_seed"}        # INT inputs the frontend gives a control widget without being asked


# ---------------------------------------------------------------- specs
@dataclass
class InputSpec:
    name: str
    type: str                     # "COMBO" for every combo (V1 list types are folded in)
    options: dict
    required: bool
    combo: list | None

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def has_control_widget(self) -> bool:
        """The frontend adds a "control after generate" widget after this one: when the input asks for it, and
        (legacy convention, frontend 1.35 ``useIntWidget``) after every INT named ``seed`` or ``noise_seed``
        that does not say ``control_after_generate: False``."""
        flag = self.options.get("control_after_generate")
        if flag is None:
            return self.type == "INT" and self.name in CONTROL_NAMES
        return bool(flag)


@dataclass
class NodeSpec:
    name: str
    inputs: dict[str, InputSpec]
    outputs: list[str]
    output_node: bool
    extra_widget_values: int = 0

    @classmethod
    def from_object_info(cls, name: str, info: dict, extra: int = 0) -> NodeSpec:
        inputs = {}
        for category in ("required", "optional"):
            order = info.get("input_order", {}).get(category) or list(info["input"].get(category, {}))
            for key in order:
                io_type, options = (list(info["input"][category][key]) + [{}])[:2]
                combo = None
                if isinstance(io_type, list):
                    io_type, combo = "COMBO", io_type
                elif io_type == "COMBO":
                    combo = options.get("options", [])
                inputs[key] = InputSpec(key, io_type, options or {}, category == "required", combo)
        return cls(name, inputs, list(info["output"]), bool(info.get("output_node")), extra)

    def widgets(self) -> list[InputSpec]:
        return [i for i in self.inputs.values() if i.is_widget]

    def frontend_widgets(self) -> list[str]:
        """Names of the widgets the frontend builds, in order, as ``widgets_values`` stores them: each widget
        input, its control widget after it, then the node's frontend extras (upload button, player, ...)."""
        names = []
        for ispec in self.widgets():
            names.append(ispec.name)
            if ispec.has_control_widget:
                names.append(f"{ispec.name}:control_after_generate")
        return names + [f"frontend extra {k}" for k in range(self.extra_widget_values)]


def build_specs(moda_nodes: dict) -> dict[str, NodeSpec]:
    specs = {name: NodeSpec.from_object_info(name, info, EXTRA_WIDGET_VALUES.get(name, 0))
             for name, info in CORE_NODES.items()}
    for node_id, cls in moda_nodes.items():
        assert node_id not in specs, f"{node_id} clashes with a core node"
        specs[node_id] = NodeSpec.from_object_info(node_id, cls.GET_NODE_INFO_V1())
    return specs


def types_match(received: str, wanted: str) -> bool:
    """``comfy_execution.validation.validate_node_input`` (non-strict): equal, ``*``, or a common ``A,B`` member."""
    if received == wanted or "*" in (received, wanted):
        return True
    a, b = {t.strip() for t in received.split(",")}, {t.strip() for t in wanted.split(",")}
    return "*" in a | b or bool(a & b)


def check_value(where: str, node: NodeSpec, spec: InputSpec, value) -> list[str]:
    """A constant for a widget input: the value checks of ``execution.validate_inputs``, without its coercion."""
    label = f"{where}: input '{spec.name}'"
    kind = spec.type
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return [f"{label}: {value!r} is not an INT"]
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return [f"{label}: {value!r} is not a FLOAT"]
    if kind == "STRING" and not isinstance(value, str):
        return [f"{label}: {value!r} is not a STRING"]
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return [f"{label}: {value!r} is not a BOOLEAN"]
    if kind in ("INT", "FLOAT"):
        if "min" in spec.options and value < spec.options["min"]:
            return [f"{label}: value {value} smaller than min of {spec.options['min']}"]
        if "max" in spec.options and value > spec.options["max"]:
            return [f"{label}: value {value} bigger than max of {spec.options['max']}"]
    if kind == "COMBO":
        if (node.name, spec.name) in FILE_PICKERS:
            if not isinstance(value, str) or not value.strip():
                return [f"{label}: {value!r} is not a file name"]
        elif value not in spec.combo:
            return [f"{label}: {value!r} not in {spec.combo}"]
    return []


# ---------------------------------------------------------------- API format
def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def validate_api(prompt: dict, specs: dict[str, NodeSpec]) -> list[str]:
    errors = []
    if not isinstance(prompt, dict) or not prompt:
        return ["API workflow must be a non-empty object {node_id: {class_type, inputs}}"]
    for node_id, node in prompt.items():
        where = f"API node {node_id}"
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type not in specs:
            errors.append(f"{where}: unknown node type {class_type!r}")
            continue
        spec, inputs = specs[class_type], node.get("inputs", {})
        where = f"{where} ({class_type})"
        for name in inputs:
            if name not in spec.inputs:
                errors.append(f"{where}: unknown input '{name}'")
        for name, ispec in spec.inputs.items():
            if name not in inputs:
                if ispec.required:
                    errors.append(f"{where}: required input '{name}' is missing")
                continue
            value = inputs[name]
            if isinstance(value, list):
                if not is_link(value):
                    errors.append(f"{where}: input '{name}': bad link {value!r}, must be [node_id, slot]")
                    continue
                source = prompt.get(value[0])
                source_spec = specs.get(source.get("class_type")) if isinstance(source, dict) else None
                if source_spec is None:
                    errors.append(f"{where}: input '{name}' links to missing or unknown node {value[0]!r}")
                elif not 0 <= value[1] < len(source_spec.outputs):
                    errors.append(f"{where}: input '{name}' links to output {value[1]} of node {value[0]}, which "
                                  f"has {len(source_spec.outputs)} outputs")
                elif not types_match(source_spec.outputs[value[1]], ispec.type):
                    errors.append(f"{where}: input '{name}': received type {source_spec.outputs[value[1]]} "
                                  f"mismatch input type {ispec.type}")
            elif not ispec.is_widget:
                errors.append(f"{where}: input '{name}' of type {ispec.type} must be linked, got {value!r}")
            else:
                errors += check_value(where, spec, ispec, value)
    if not any(specs[n["class_type"]].output_node for n in prompt.values()
               if isinstance(n, dict) and n.get("class_type") in specs):
        errors.append("API workflow has no output node (ComfyUI rejects it: prompt_no_outputs)")
    return errors


# ---------------------------------------------------------------- UI format
def _widget_values(where: str, spec: NodeSpec, values, linked: set[str]) -> tuple[dict, list[str]]:
    """Map ``widgets_values`` to widget names; extra control_after_generate / frontend values are checked."""
    if not isinstance(values, list):
        return {}, [f"{where}: widgets_values must be a list, got {type(values).__name__}"]
    errors, mapped, i = [], {}, 0
    for ispec in spec.widgets():
        if i >= len(values):
            errors.append(f"{where}: widgets_values has no value for widget '{ispec.name}'")
            return mapped, errors
        mapped[ispec.name] = values[i]
        if ispec.name not in linked:
            errors += check_value(where, spec, ispec, values[i])
        i += 1
        if ispec.has_control_widget:
            if i >= len(values) or values[i] not in CONTROL_VALUES:
                errors.append(f"{where}: widget '{ispec.name}' must be followed by a control_after_generate "
                              f"value {sorted(CONTROL_VALUES)}")
            i += 1
    if len(values) - i > spec.extra_widget_values:
        errors.append(f"{where}: widgets_values has {len(values)} values, the node has {i} widget values"
                      + (f" (+{spec.extra_widget_values} frontend extras)" if spec.extra_widget_values else ""))
    return mapped, errors


def validate_ui(workflow: dict, specs: dict[str, NodeSpec]) -> tuple[dict, list[str]]:
    """Returns ``({node_id: {"type", "mode", "links": {input: (from, slot)}, "widgets": {...}}}, errors)``."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list) \
            or not isinstance(workflow.get("links"), list):
        return {}, ["UI workflow must have 'nodes' and 'links' lists (use the editor's Save / Export)"]
    errors, graph = [], {}
    if (workflow.get("definitions") or {}).get("subgraphs"):
        errors.append("UI workflow uses subgraphs; this validator (and the shipped examples) keep to flat graphs")
    nodes = {}
    for node in workflow["nodes"]:
        if node.get("id") in nodes:
            errors.append(f"UI node id {node.get('id')} is used twice")
        nodes[node.get("id")] = node
    links = {}
    for link in workflow["links"]:
        if not (isinstance(link, list) and len(link) == 6):
            errors.append(f"UI link {link!r} must be [id, from_node, from_slot, to_node, to_slot, type]")
            continue
        if link[0] in links:
            errors.append(f"UI link id {link[0]} is used twice")
        links[link[0]] = link
    if nodes and workflow.get("last_node_id", 0) < max(k for k in nodes if isinstance(k, int)):
        errors.append("UI last_node_id is smaller than a node id")
    if links and workflow.get("last_link_id", 0) < max(links):
        errors.append("UI last_link_id is smaller than a link id")

    for node_id, node in nodes.items():
        kind, where = node.get("type"), f"UI node {node_id} ({node.get('type')})"
        if kind in UI_ONLY_NODES:
            continue
        if kind not in specs:
            errors.append(f"UI node {node_id}: unknown node type {kind!r}")
            continue
        spec = specs[kind]
        if node.get("mode", 0) not in (0, 2):
            errors.append(f"{where}: mode {node.get('mode')} (bypass) is not allowed in shipped workflows")
        linked = {}
        for slot, entry in enumerate(node.get("inputs") or []):
            ispec = spec.inputs.get(entry.get("name"))
            if ispec is None:
                errors.append(f"{where}: unknown input '{entry.get('name')}'")
                continue
            if entry.get("type") != ispec.type:
                errors.append(f"{where}: input '{ispec.name}' has type {entry.get('type')}, the node declares "
                              f"{ispec.type}")
            link_id = entry.get("link")
            if link_id is None:
                continue
            link = links.get(link_id)
            if link is None or link[3] != node_id or link[4] != slot:
                errors.append(f"{where}: input '{ispec.name}' names link {link_id}, which does not end here")
                continue
            linked[ispec.name] = (link[1], link[2])
        for ispec in spec.inputs.values():
            if ispec.required and not ispec.is_widget and ispec.name not in linked:
                errors.append(f"{where}: required input '{ispec.name}' is not connected")
        outputs = node.get("outputs") or []
        if [o.get("type") for o in outputs] != spec.outputs:
            errors.append(f"{where}: outputs {[o.get('type') for o in outputs]} differ from the node's "
                          f"{spec.outputs}")
        for slot, out in enumerate(outputs):
            for link_id in out.get("links") or []:
                link = links.get(link_id)
                if link is None or link[1] != node_id or link[2] != slot:
                    errors.append(f"{where}: output {slot} names link {link_id}, which does not start here")
        widgets, problems = _widget_values(where, spec, node.get("widgets_values", []), set(linked))
        errors += problems
        graph[node_id] = {"type": kind, "mode": node.get("mode", 0), "links": linked, "widgets": widgets}

    for link_id, (_, src, src_slot, dst, dst_slot, link_type) in links.items():
        where = f"UI link {link_id}"
        a, b = nodes.get(src), nodes.get(dst)
        if a is None or b is None:
            errors.append(f"{where}: joins missing node {src if a is None else dst}")
            continue
        if a.get("type") not in specs or b.get("type") not in specs:
            continue
        out_types = specs[a["type"]].outputs
        if not 0 <= src_slot < len(out_types):
            errors.append(f"{where}: node {src} has no output {src_slot}")
            continue
        if link_type != out_types[src_slot]:
            errors.append(f"{where}: type {link_type} but output {src_slot} of node {src} is {out_types[src_slot]}")
        inputs = b.get("inputs") or []
        if not 0 <= dst_slot < len(inputs) or inputs[dst_slot].get("link") != link_id:
            errors.append(f"{where}: node {dst} input {dst_slot} does not name this link")
            continue
        wanted = specs[b["type"]].inputs.get(inputs[dst_slot].get("name"))
        if wanted is not None and not types_match(out_types[src_slot], wanted.type):
            errors.append(f"{where}: {out_types[src_slot]} output joined to {wanted.type} input "
                          f"'{wanted.name}' of node {dst}")
        if link_id not in ((a.get("outputs") or [{}] * (src_slot + 1))[src_slot].get("links") or []):
            errors.append(f"{where}: output {src_slot} of node {src} does not list this link")

    if not any(specs[g["type"]].output_node for g in graph.values() if g["mode"] == 0):
        errors.append("UI workflow has no active output node")
    return graph, errors


def compare_ui_api(graph: dict, prompt: dict, specs: dict[str, NodeSpec]) -> list[str]:
    """The API file must be exactly what the editor's 'Export (API)' would give for the UI file."""
    errors = []
    active = {str(k): g for k, g in graph.items() if g["mode"] == 0}
    if set(active) != set(prompt):
        errors.append(f"UI/API node ids differ: UI only {sorted(set(active) - set(prompt))}, "
                      f"API only {sorted(set(prompt) - set(active))}")
    for node_id in sorted(set(active) & set(prompt)):
        g, api = active[node_id], prompt[node_id]
        if api.get("class_type") != g["type"]:
            errors.append(f"node {node_id}: UI type {g['type']} but API class_type {api.get('class_type')}")
            continue
        expected = {name: [str(src), slot] for name, (src, slot) in g["links"].items()}
        expected.update({k: v for k, v in g["widgets"].items() if k not in g["links"]})
        got = api.get("inputs", {})
        for name in sorted(set(expected) | set(got)):
            if name not in got:
                errors.append(f"node {node_id} ({g['type']}): input '{name}' = {expected[name]!r} in UI, "
                              "missing in API")
            elif name not in expected:
                errors.append(f"node {node_id} ({g['type']}): API input '{name}' is not in the UI graph")
            elif got[name] != expected[name] or type(got[name]) is not type(expected[name]):
                errors.append(f"node {node_id} ({g['type']}): input '{name}' is {expected[name]!r} in UI but "
                              f"{got[name]!r} in API")
    return errors


def validate_pair(ui_workflow: dict, api_prompt: dict, specs: dict[str, NodeSpec]) -> list[str]:
    graph, errors = validate_ui(ui_workflow, specs)
    errors += validate_api(api_prompt, specs)
    return errors + compare_ui_api(graph, api_prompt, specs)


def load_pair(ui_path: Path) -> tuple[dict, dict]:
    api_path = ui_path.parent / "api" / f"{ui_path.stem}_api.json"
    if not api_path.exists():
        api_path = ui_path.with_name(f"{ui_path.stem}_api.json")
    return json.loads(ui_path.read_text()), json.loads(api_path.read_text())


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def specs(moda_nodes):
    return build_specs(moda_nodes)


def _shipped_ui_files() -> list[Path]:
    return sorted(WORKFLOW_DIR.glob("*.json"))


def test_shipped_workflows_come_in_ui_api_pairs():
    ui = {p.stem for p in _shipped_ui_files()}
    api = {p.name[:-len("_api.json")] for p in (WORKFLOW_DIR / "api").glob("*_api.json")}
    assert ui == api, f"UI without API: {sorted(ui - api)}; API without UI: {sorted(api - ui)}"
    stray = [p.name for p in (WORKFLOW_DIR / "api").glob("*.json") if not p.name.endswith("_api.json")]
    assert not stray, f"files in workflows/api must be named <name>_api.json: {stray}"


@pytest.mark.parametrize("ui_path", _shipped_ui_files(), ids=lambda p: p.stem)
def test_shipped_workflow_is_valid(ui_path, specs):
    ui_workflow, api_prompt = load_pair(ui_path)
    assert validate_pair(ui_workflow, api_prompt, specs) == []


def test_fixture_workflow_is_valid(specs):
    assert validate_pair(*load_pair(FIXTURE_DIR / "repr_info.json"), specs) == []


def _break_ui(mutate):
    def apply(ui, api):
        mutate(ui)
    return apply


def _break_api(mutate):
    def apply(ui, api):
        mutate(api)
    return apply


def _node(workflow, node_id):
    return next(n for n in workflow["nodes"] if n["id"] == node_id)


BROKEN = {
    "unknown node type": (_break_ui(lambda w: _node(w, 2).update(type="MODA_NoSuchNode")),
                          "unknown node type 'MODA_NoSuchNode'"),
    "link type mismatch": (_break_ui(lambda w: w["links"][0].__setitem__(5, "IMAGE")),
                           "type IMAGE but output 0 of node 1 is MODA_REPR"),
    "wrong input wired": (_break_ui(lambda w: (w["links"].append([9, 2, 0, 4, 0, "STRING"]),
                                               _node(w, 4)["inputs"][0].update(link=9),
                                               _node(w, 2)["outputs"][0]["links"].append(9),
                                               w.update(last_link_id=9))),
                          "STRING output joined to MODA_REPR input 'repr' of node 4"),
    "dangling link end": (_break_ui(lambda w: _node(w, 2)["inputs"][0].update(link=None)),
                          "node 2 input 0 does not name this link"),
    "required socket unconnected": (_break_ui(lambda w: (w["links"].pop(0), _node(w, 2)["inputs"][0].update(link=None),
                                                         _node(w, 1)["outputs"][0].update(links=[3]))),
                                    "required input 'repr' is not connected"),
    "bad combo value": (_break_ui(lambda w: _node(w, 4).update(widgets_values=["copies/repr", "zip"])),
                        "'zip' not in ['safetensors', 'npz', 'safetensors + npz']"),
    "widget wrong type": (_break_ui(lambda w: _node(w, 4).update(widgets_values=[7, "npz"])),
                          "7 is not a STRING"),
    "too many widget values": (_break_ui(lambda w: _node(w, 4)["widgets_values"].append("extra")),
                               "widgets_values has 3 values, the node has 2"),
    "missing widget value": (_break_ui(lambda w: _node(w, 1).update(widgets_values=[])),
                             "no value for widget 'repr_file'"),
    "output types differ": (_break_ui(lambda w: _node(w, 2)["outputs"].pop()),
                            "outputs ['STRING', 'FLOAT', 'INT'] differ"),
    "no output node": (lambda ui, api: (ui["nodes"].__setitem__(slice(None), [_node(ui, 1)]), ui["links"].clear(),
                                        _node(ui, 1)["outputs"][0].update(links=None),
                                        [api.pop(k) for k in ("2", "3", "4")]),
                       "no active output node"),
    "bypassed node": (_break_ui(lambda w: _node(w, 3).update(mode=4)), "(bypass) is not allowed"),
    "API widget differs from UI": (_break_api(lambda p: p["4"]["inputs"].update(format="npz")),
                                   "input 'format' is 'safetensors + npz' in UI but 'npz' in API"),
    "API link differs from UI": (_break_api(lambda p: p["3"]["inputs"].update(source=["2", 1])),
                                 "input 'source' is ['2', 0] in UI but ['2', 1] in API"),
    "API missing node": (_break_api(lambda p: p.pop("3")), "UI only ['3']"),
    "API missing required input": (_break_api(lambda p: p["2"]["inputs"].clear()),
                                   "required input 'repr' is missing"),
    "API link to missing output": (_break_api(lambda p: p["2"]["inputs"].update(repr=["1", 3])),
                                   "links to output 3 of node 1, which has 1 outputs"),
    "API type mismatch": (_break_api(lambda p: p["4"]["inputs"].update(repr=["2", 2])),
                          "received type INT mismatch input type MODA_REPR"),
    "API value out of range": (_break_api(lambda p: p.update({"5": {"class_type": "CreateVideo", "inputs": {
        "images": ["1", 0], "fps": 500.0}}})), "value 500.0 bigger than max of 120.0"),
    "API extra input": (_break_api(lambda p: p["1"]["inputs"].update(seed=3)), "unknown input 'seed'"),
    "API constant for a socket": (_break_api(lambda p: p["2"]["inputs"].update(repr="x.safetensors")),
                                  "input 'repr' of type MODA_REPR must be linked"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_validator_rejects_broken_workflow(case, specs):
    ui, api = load_pair(FIXTURE_DIR / "repr_info.json")
    mutate, message = BROKEN[case]
    ui, api = copy.deepcopy(ui), copy.deepcopy(api)
    mutate(ui, api)
    errors = validate_pair(ui, api, specs)
    assert any(message in e for e in errors), f"{case}: expected {message!r} in {errors}"


def test_validator_accepts_core_node_conventions(specs):
    """Frontend extras and control_after_generate values as real saved workflows carry them."""
    spec = specs["LoadAudio"]
    assert _widget_values("n", spec, ["speech.wav", None, None], set())[1] == []
    assert _widget_values("n", specs["CreateVideo"], [25.0], set())[1] == []
    seeded = NodeSpec.from_object_info("X", {"input": {"required": {"seed": ["INT", {
        "min": 0, "max": 10, "control_after_generate": True}]}}, "output": []})
    assert _widget_values("n", seeded, [3, "randomize"], set())[1] == []
    assert "control_after_generate" in _widget_values("n", seeded, [3], set())[1][0]
    assert types_match("STRING", "*") and types_match("IMAGE,MASK", "MASK") and not types_match("INT", "FLOAT")


def test_frontend_adds_control_widget_after_seed_inputs(specs):
    """An INT named seed gets a control widget even unasked (so stored values shift); control_after_generate
    False turns it off; any input asking for one gets one."""
    legacy = NodeSpec.from_object_info("X", {"input": {"required": {
        "seed": ["INT", {"min": 0, "max": 10}], "noise_seed": ["INT", {}], "strength": ["FLOAT", {}],
        "other": ["INT", {"control_after_generate": True}], "seed_off": ["INT", {}]},
        "optional": {"plain": ["INT", {}]}}, "output": []})
    assert legacy.frontend_widgets() == ["seed", "seed:control_after_generate", "noise_seed",
                                         "noise_seed:control_after_generate", "strength", "other",
                                         "other:control_after_generate", "seed_off", "plain"]
    assert "must be followed by a control_after_generate" in _widget_values("n", legacy, [3, 1.0], set())[1][0]
    off = NodeSpec.from_object_info("X", {"input": {"required": {"seed": ["INT", {"control_after_generate": False}]}},
                                          "output": []})
    assert off.frontend_widgets() == ["seed"]
    assert specs["MODA_AddBlinks"].frontend_widgets() == ["per_minute", "seed", "depth"], "edits stay put"
    assert specs["MODA_AudioToMotion"].frontend_widgets()[:2] == ["seed", "seed:control_after_generate"]
    assert specs["LoadAudio"].frontend_widgets() == ["audio", "frontend extra 0", "frontend extra 1"]


def test_every_node_default_is_a_valid_widget_value(specs, moda_nodes):
    """What a freshly added node shows must pass the server's checks (file pickers aside: they list files)."""
    problems = []
    for name in moda_nodes:
        spec = specs[name]
        for ispec in spec.widgets():
            if (name, ispec.name) in FILE_PICKERS or "default" not in ispec.options:
                continue
            problems += check_value(f"{name} default", spec, ispec, ispec.options["default"])
    assert problems == []


@pytest.mark.parametrize("ui_path", _shipped_ui_files(), ids=lambda p: p.stem)
def test_shipped_widget_values_line_up_with_frontend_widgets(ui_path, specs):
    """Every node's widgets_values has exactly one value per widget the frontend builds, in its order."""
    workflow = json.loads(ui_path.read_text())
    for node in workflow["nodes"]:
        if node["type"] in UI_ONLY_NODES:
            continue
        expected = specs[node["type"]].frontend_widgets()
        values = node.get("widgets_values", [])
        assert len(values) == len(expected), (f"node {node['id']} ({node['type']}): {len(values)} values "
                                              f"{values} for the frontend's widgets {expected}")
        for widget, value in zip(expected, values):
            if widget.endswith(":control_after_generate"):
                assert value in CONTROL_VALUES, f"node {node['id']} ({node['type']}): {widget} = {value!r}"


@pytest.mark.parametrize("ui_path", _shipped_ui_files(), ids=lambda p: p.stem)
def test_shipped_workflow_has_a_template_thumbnail(ui_path):
    """Browse Templates shows /api/workflow_templates/<pack>/<name>.jpg (frontend 1.35: extension templates have
    mediaSubtype 'jpg'): a real JPEG beside the json, small enough for the dialog."""
    from PIL import Image

    thumbnail = ui_path.with_suffix(".jpg")
    assert thumbnail.is_file(), f"{thumbnail.name} missing"
    assert thumbnail.stat().st_size < 60_000, f"{thumbnail.name} is {thumbnail.stat().st_size} bytes"
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG" and min(image.size) >= 128, image.size
        pixels = np.asarray(image.convert("L"), np.float32)
    assert pixels.std() > 10, "a blank image"


CORE_SAVE_NODES = {"SaveVideo", "SaveImage"}


@pytest.mark.parametrize("ui_path", _shipped_ui_files(), ids=lambda p: p.stem)
def test_shipped_workflows_save_under_output_moda(ui_path, moda_nodes):
    """Core save nodes get a 'moda/' prefix; the pack's save nodes add output/moda/ themselves (no second one)."""
    prompt = load_pair(ui_path)[1]
    saves = {k: n for k, n in prompt.items() if "filename_prefix" in n["inputs"]}
    for node_id, node in saves.items():
        prefix = node["inputs"]["filename_prefix"]
        if node["class_type"] in CORE_SAVE_NODES:
            assert prefix.startswith("moda/"), f"node {node_id}: {prefix!r} is not under output/moda/"
        else:
            assert node["class_type"] in moda_nodes and not prefix.startswith("moda/"), (node_id, prefix)


def _execute_api(prompt: dict, moda_nodes: dict) -> dict:
    """Run an API prompt through the doubles in dependency order; core output nodes are recorded, not run."""
    results, order, pending = {}, [], dict(prompt)
    while pending:
        ready = [k for k, n in pending.items()
                 if all(not is_link(v) or v[0] in results for v in n["inputs"].values())]
        assert ready, f"cycle or missing node among {sorted(pending)}"
        for node_id in sorted(ready):
            node = pending.pop(node_id)
            inputs = {k: results[v[0]][v[1]] if is_link(v) else v for k, v in node["inputs"].items()}
            if node["class_type"] in moda_nodes:
                results[node_id] = run_node(moda_nodes[node["class_type"]], unique_id=node_id, prompt=prompt,
                                            **inputs).args
            else:
                assert CORE_NODES[node["class_type"]]["output_node"], node["class_type"]
                results[node_id] = (inputs,)
            order.append(node_id)
    return results


def test_fixture_api_workflow_runs_with_doubles(moda_nodes, comfy_dirs):
    from test_nodes_repr import make_repr

    make_repr(samples=2, frames=9, face=False).save(comfy_dirs.input / "example_repr.safetensors")
    prompt = json.loads((FIXTURE_DIR / "repr_info_api.json").read_text())
    results = _execute_api(prompt, moda_nodes)
    summary = results["3"][0]["source"]
    assert "frames: 9 at 25 fps" in summary and "samples: 2" in summary
    saved = sorted(p.name for p in (comfy_dirs.output / "moda" / "copies").iterdir())
    assert saved == ["repr_00001_.npz", "repr_00001_.safetensors"]
    assert torch.is_tensor(results["1"][0].mouth)


# Against a live server's /object_info (skipped unless COMFYUI_OBJECT_INFO names a saved JSON of it):
#   curl -s http://127.0.0.1:8188/object_info > /tmp/object_info.json
@pytest.mark.skipif(not os.environ.get("COMFYUI_OBJECT_INFO"), reason="set COMFYUI_OBJECT_INFO to a saved "
                                                                       "/object_info JSON to compare")
def test_core_node_table_matches_live_object_info(specs):
    live_info = json.loads(Path(os.environ["COMFYUI_OBJECT_INFO"]).read_text())
    live = {name: NodeSpec.from_object_info(name, info, EXTRA_WIDGET_VALUES.get(name, 0))
            for name, info in live_info.items()}
    for name in CORE_NODES:
        ours, real = specs[name], live[name]
        assert (ours.outputs, ours.output_node) == (real.outputs, real.output_node), name
        assert list(ours.inputs) == list(real.inputs), name
        for key, spec in ours.inputs.items():
            other = real.inputs[key]
            assert (spec.type, spec.required) == (other.type, other.required), f"{name}.{key}"
            if (name, key) not in FILE_PICKERS:
                assert spec.combo == other.combo, f"{name}.{key}"
            for option in ("min", "max", "default"):
                assert spec.options.get(option) == other.options.get(option), f"{name}.{key}.{option}"
    moda = {name: spec for name, spec in live.items() if name.startswith("MODA_")}
    assert validate_pair(*load_pair(FIXTURE_DIR / "repr_info.json"), {**specs, **moda}) == []
