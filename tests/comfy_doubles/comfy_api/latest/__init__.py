"""Test double of ComfyUI's ``comfy_api/latest/__init__.py``.

Mirrors ComfyUI 0.8.0 (618b803, 2026-01-07) and 0.3.64 (a125cd8) for what comfyui-moda imports:
``ComfyExtension`` (abstract ``async get_node_list``, optional ``async on_load``), ``io`` and ``ui``.
The real module also exports ``ComfyAPI``/``ComfyAPISync``, ``Input``, ``InputImpl``, ``Types`` and, since 0.8 only,
the aliases ``IO``/``UI``; the pack uses ``io``/``ui`` so that it loads on 0.3.64 too. Written for comfyui-moda's
tests; no ComfyUI code is copied.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from . import _io as io
from . import _ui as ui


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Declared by ComfyUI; its loader (0.8.0) never calls it."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The node classes this extension registers."""


__all__ = ["ComfyExtension", "io", "ui"]
