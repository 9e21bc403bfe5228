"""Load and run the node pack the way ComfyUI does, against the test doubles in ``tests/comfy_doubles``.

Use from a test module with ``from comfy_harness import *  # noqa: F401,F403`` (or import the fixtures by name)::

    def test_x(moda_nodes, comfy_dirs):
        out = run_node(moda_nodes["MODA_ReprInfo"], repr=r)

Fixtures
    ``comfy_doubles`` (session): puts ``tests/comfy_doubles`` first on ``sys.path`` and imports the doubles;
        returns a namespace with ``io``, ``ui``, ``folder_paths``, ``utils``, ``model_management``.
    ``moda_pack`` (session): the pack module, loaded from ``<repo>/__init__.py`` as ComfyUI's
        ``nodes.load_custom_node`` does (``spec_from_file_location`` under the folder path with ``.`` -> ``_x_``).
    ``moda_nodes`` (session): ``{node_id: class}`` from ``comfy_entrypoint()`` + ``get_node_list()``, each class
        checked with ``GET_SCHEMA()`` and given ``RELATIVE_PYTHON_MODULE`` as the loader does.
    ``comfy_dirs`` (function): ``folder_paths`` re-pointed at a fresh ``tmp_path`` (input/, output/, temp/,
        models/); returns a namespace with those paths. The old values come back after the test.
    ``progress_events`` (function): records ``ProgressBar`` updates as ``(value, total, node_id)`` tuples.

Helpers
    ``run_node(cls, **inputs)``: validate_inputs (only the inputs it names, as execution.py) -> locked class
        clone with ``hidden`` -> execute -> normalised ``NodeOutput``. Raises ``ValidationFailed`` on a string.
    ``fingerprint(cls, **inputs)``: what ``fingerprint_inputs`` returns (``None`` when the node has none).
    ``object_info(cls)``: the ``/object_info`` entry (``GET_NODE_INFO_V1()``), as the server returns it.
"""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import sys
import types
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOUBLES_DIR = Path(__file__).resolve().parent / "comfy_doubles"
DOUBLE_MODULES = ("comfy_api", "comfy_api.latest", "comfy_api.latest._io", "comfy_api.latest._ui", "comfy",
                  "comfy.utils", "comfy.model_management", "comfy.model_patcher", "comfy.patcher_extension",
                  "folder_paths")


class ValidationFailed(AssertionError):
    """``validate_inputs`` returned something other than True."""


# ---------------------------------------------------------------- loading
def _import_doubles() -> types.SimpleNamespace:
    if str(DOUBLES_DIR) not in sys.path:
        sys.path.insert(0, str(DOUBLES_DIR))
    for name in ("comfy_api", "comfy", "folder_paths"):
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or "".join(getattr(module, "__path__", []) or [])
        if module is not None and str(DOUBLES_DIR) not in origin:
            raise RuntimeError(f"a real {name!r} is already imported ({origin}); the doubles cannot be used")
    latest = importlib.import_module("comfy_api.latest")
    return types.SimpleNamespace(io=latest.io, ui=latest.ui, latest=latest,
                                 folder_paths=importlib.import_module("folder_paths"),
                                 utils=importlib.import_module("comfy.utils"),
                                 model_management=importlib.import_module("comfy.model_management"))


def load_pack_like_comfyui(pack_dir: Path | str = REPO_ROOT):
    """Import ``<pack_dir>/__init__.py`` exactly as ComfyUI 0.8.0's ``load_custom_node`` does for a folder."""
    module_path = str(pack_dir)
    sys_module_name = module_path.replace(".", "_x_")
    if sys_module_name in sys.modules:
        return sys.modules[sys_module_name]
    spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[sys_module_name]
        raise
    return module


def collect_nodes(module, doubles) -> dict[str, type]:
    """``comfy_entrypoint`` (sync or async) -> ``ComfyExtension`` -> ``get_node_list()`` -> ``{node_id: cls}``."""
    entrypoint = getattr(module, "comfy_entrypoint", None)
    assert callable(entrypoint), "the pack exports no callable comfy_entrypoint"
    assert not hasattr(module, "NODE_CLASS_MAPPINGS"), "NODE_CLASS_MAPPINGS would make ComfyUI skip the entrypoint"

    async def load():
        extension = await entrypoint() if inspect.iscoroutinefunction(entrypoint) else entrypoint()
        assert isinstance(extension, doubles.latest.ComfyExtension), type(extension)
        return await extension.get_node_list()

    node_list = asyncio.run(load())
    assert isinstance(node_list, list), type(node_list)
    found = {}
    for cls in node_list:
        schema = cls.GET_SCHEMA()
        assert schema.node_id not in found, f"duplicate node id {schema.node_id}"
        cls.RELATIVE_PYTHON_MODULE = f"custom_nodes.{os.path.basename(str(REPO_ROOT))}"
        found[schema.node_id] = cls
    return found


# ---------------------------------------------------------------- running
def _overrides(cls, name: str) -> bool:
    io = sys.modules["comfy_api.latest._io"]
    return getattr(cls, name).__func__ is not getattr(io.ComfyNode, name).__func__


def _lock(cls):
    """A subclass whose class attributes cannot be assigned (execution.py's ``lock_class``)."""
    def refuse(self, name, value):
        raise AttributeError(f"Cannot set attribute '{name}' on immutable instance of {type(self).__name__}")

    class LockedMeta(type(cls)):
        def __setattr__(cls_, name, value):
            raise AttributeError(f"Cannot modify class attribute '{name}' on locked class '{cls_.__name__}'")

    body = dict(cls.__dict__)
    body["__setattr__"] = refuse
    return LockedMeta(cls.__name__, cls.__bases__, body)


def _call(method, cls, kwargs):
    result = method.__func__(cls, **kwargs)
    return asyncio.run(result) if inspect.isawaitable(result) else result


def run_node(cls, unique_id: str = "1", prompt: dict | None = None, extra_pnginfo: dict | None = None, **inputs):
    """Validate and execute one node the way ComfyUI's executor does; returns the ``io.NodeOutput``."""
    io = sys.modules["comfy_api.latest._io"]
    cls.VALIDATE_CLASS()
    cls.GET_SCHEMA()
    if _overrides(cls, "validate_inputs"):
        spec = inspect.getfullargspec(cls.validate_inputs)
        named = {k: v for k, v in inputs.items() if spec.varkw is not None or k in spec.args}
        verdict = _call(cls.validate_inputs, cls, named)
        if verdict is not True:
            raise ValidationFailed(str(verdict))
    hidden = {io.Hidden.unique_id: unique_id, io.Hidden.prompt: prompt, io.Hidden.extra_pnginfo: extra_pnginfo}
    clone = _lock(cls.PREPARE_CLASS_CLONE({"hidden_inputs": hidden}))
    return _call(getattr(cls, cls.FUNCTION), clone, inputs)        # EXECUTE_NORMALIZED(_ASYNC) on the clone


def fingerprint(cls, **inputs):
    if not _overrides(cls, "fingerprint_inputs"):
        return None
    return _call(cls.fingerprint_inputs, cls, inputs)


def object_info(cls) -> dict:
    return cls.GET_NODE_INFO_V1()


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def comfy_doubles():
    return _import_doubles()


@pytest.fixture(scope="session")
def moda_pack(comfy_doubles):
    return load_pack_like_comfyui(REPO_ROOT)


@pytest.fixture(scope="session")
def moda_nodes(moda_pack, comfy_doubles) -> dict[str, type]:
    return collect_nodes(moda_pack, comfy_doubles)


@pytest.fixture
def comfy_dirs(comfy_doubles, tmp_path):
    fp = comfy_doubles.folder_paths
    names = ("base_path", "models_dir", "output_directory", "temp_directory", "input_directory", "user_directory")
    saved = {n: getattr(fp, n) for n in names}
    saved_folders = {k: (list(v[0]), v[1]) for k, v in fp.folder_names_and_paths.items()}
    base = tmp_path / "comfyui"
    dirs = types.SimpleNamespace(base=base, input=base / "input", output=base / "output", temp=base / "temp",
                                 models=base / "models", user=base / "user")
    for path in vars(dirs).values():
        path.mkdir(parents=True, exist_ok=True)
    fp.base_path, fp.models_dir = str(base), str(dirs.models)
    fp.output_directory, fp.temp_directory = str(dirs.output), str(dirs.temp)
    fp.input_directory, fp.user_directory = str(dirs.input), str(dirs.user)
    fp.folder_names_and_paths.clear()
    fp.folder_names_and_paths.update({
        "checkpoints": ([str(dirs.models / "checkpoints")], fp.supported_pt_extensions),
        "custom_nodes": ([str(base / "custom_nodes")], set())})
    yield dirs
    for n, v in saved.items():
        setattr(fp, n, v)
    fp.folder_names_and_paths.clear()
    fp.folder_names_and_paths.update(saved_folders)


@pytest.fixture
def progress_events(comfy_doubles):
    events = []
    utils = comfy_doubles.utils
    previous = utils.PROGRESS_BAR_HOOK
    utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append((value, total,
                                                                                                 node_id)))
    yield events
    utils.set_progress_bar_global_hook(previous)
    comfy_doubles.model_management.interrupt_current_processing(False)


__all__ = ["comfy_doubles", "moda_pack", "moda_nodes", "comfy_dirs", "progress_events", "run_node", "fingerprint",
           "object_info", "load_pack_like_comfyui", "collect_nodes", "ValidationFailed", "REPO_ROOT", "DOUBLES_DIR"]
