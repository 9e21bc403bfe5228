"""ComfyUI nodes for MODA: thin V3 adapters over moda_core."""
from comfy_api.latest import ComfyExtension, io


class MODAExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> MODAExtension:
    return MODAExtension()
