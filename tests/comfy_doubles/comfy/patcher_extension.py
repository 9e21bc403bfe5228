"""Test double of ComfyUI's ``comfy/patcher_extension.py``: the callback names the pack uses.

Mirrors ComfyUI 0.8.0 (618b803): ``CallbacksMP.ON_DETACH`` ("on_detach_after") is called by
``ModelPatcher.detach`` as ``callback(patcher, unpatch_all)``. Written for comfyui-moda's tests; no ComfyUI code
is copied.
"""


class CallbacksMP:
    ON_LOAD = "on_load_after"
    ON_DETACH = "on_detach_after"
