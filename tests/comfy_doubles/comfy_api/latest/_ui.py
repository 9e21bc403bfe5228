"""Test double of ComfyUI's ``comfy_api/latest/_ui.py`` (reached as ``comfy_api.latest.ui``).

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07; same in 0.3.64). Only ``PreviewText`` is here: the UI payload a node
returns through ``io.NodeOutput(..., ui=ui.PreviewText(text))``, stored by the server under the node's id in
``/history`` as ``{"text": (text,)}``. Written for comfyui-moda's tests; no ComfyUI code is copied.
"""
from __future__ import annotations

from ._io import _UIOutput


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self):
        return {"text": (self.value,)}
