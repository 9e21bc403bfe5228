"""Test double of ComfyUI's ``server.py``: ``PromptServer.instance.send_progress_text`` only.

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07): ``send_progress_text(text, node_id, sid=None)`` sends the text to the
frontend, which shows it under the node with that id (core's Get Image Size uses it). Here the calls are recorded
in ``PromptServer.instance.texts`` as ``(node_id, text)``. Written for comfyui-moda's tests; no ComfyUI code is
copied.
"""
from __future__ import annotations


class PromptServer:
    instance: "PromptServer | None" = None

    def __init__(self):
        self.texts: list[tuple[str, str]] = []

    def send_progress_text(self, text, node_id, sid=None):
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        self.texts.append((str(node_id), text))


PromptServer.instance = PromptServer()
