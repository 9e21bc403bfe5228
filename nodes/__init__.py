"""ComfyUI nodes for MODA: thin V3 adapters over moda_core.

Each module exports ``NODES``; add new modules to ``_node_modules`` below. Socket types live in ``types.py``.
"""
from comfy_api.latest import ComfyExtension, io

from . import avatar, editing, evaluate, models, motion, plots, projection, render, repr_nodes, subject_nodes


def _node_modules():
    return (models, subject_nodes, motion, projection, render, repr_nodes, editing, plots, evaluate, avatar)


class MODAExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [node for module in _node_modules() for node in module.NODES]


async def comfy_entrypoint() -> MODAExtension:
    return MODAExtension()
