"""moda_core: MODA talking portraits as a plain PyTorch library (no ComfyUI imports).

Stages: preprocessing (photo/video -> Subject, R) -> MODA (audio -> motion R) -> FaCo-Net (dense face)
-> pose transform + projection (condition images) -> renderer with TPE (frames).

The names below load on first use, so ``import moda_core.cli`` (argument checks) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:                                  # what type checkers and IDEs see; at run time: __getattr__
    from moda_core.repr import ReprError, TalkingRepr
    from moda_core.subject import Subject, SubjectError

__version__ = "0.1.0"
__all__ = ["TalkingRepr", "ReprError", "Subject", "SubjectError", "__version__"]

_LAZY = {"TalkingRepr": "moda_core.repr", "ReprError": "moda_core.repr",
         "Subject": "moda_core.subject", "SubjectError": "moda_core.subject"}
_EAGER_BEFORE = ("repr", "subject")                # submodules ``import moda_core`` used to load: still reachable


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _EAGER_BEFORE:
        return importlib.import_module(f"moda_core.{name}")
    raise AttributeError(f"module 'moda_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
