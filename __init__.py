"""comfyui-moda: ComfyUI entry point (V3 node API).

ComfyUI imports this file as a package and calls ``comfy_entrypoint``. Outside ComfyUI (plain Python,
tests, pip installs) importing it is harmless: without ``comfy_api`` there is simply no entry point.
"""
import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
try:
    import moda_core  # noqa: F401  (installed as a library)
except ImportError:
    # Appended, not prepended: our `nodes/` folder must never shadow ComfyUI's own `nodes` module.
    sys.path.append(_PACK_DIR)

comfy_entrypoint = None  # not running inside ComfyUI
if __package__:  # pytest imports this file as a plain module when the folder name is not an identifier
    try:
        from .nodes import comfy_entrypoint  # noqa: F401
    except ImportError as err:
        if not (err.name or "").startswith(("comfy", "folder_paths", "server")):
            raise

__all__ = ["comfy_entrypoint"]
