"""Helpers for the parity tests against ../shared/reference (golden vectors and official key layouts)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def load_golden(parity_dir: Path, name: str) -> dict[str, torch.Tensor]:
    """All tensors of a golden file, cloned: safetensors hands out unaligned memory and CPU kernels are
    alignment sensitive (parity/README.md §3)."""
    return {key: value.clone() for key, value in load_file(parity_dir / name).items()}


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix`` with the prefix removed (e.g. ``weights.``)."""
    return {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}


def state_dict_layout(module: torch.nn.Module) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()]


def official_layout(reference_dir: Path, section: str) -> list[tuple[str, list[int], str]]:
    shapes = json.loads((reference_dir / "official_state_dict_shapes.json").read_text())[section]
    return [(k, v["shape"], v["dtype"]) for k, v in shapes.items()]
