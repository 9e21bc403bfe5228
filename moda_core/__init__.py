"""moda_core: MODA talking portraits as a plain PyTorch library (no ComfyUI imports).

Stages: preprocessing (photo/video -> Subject, R) -> MODA (audio -> motion R) -> FaCo-Net (dense face)
-> pose transform + projection (condition images) -> renderer with TPE (frames).
"""
from moda_core.repr import ReprError, TalkingRepr
from moda_core.subject import Subject, SubjectError

__version__ = "0.1.0"
__all__ = ["TalkingRepr", "ReprError", "Subject", "SubjectError", "__version__"]
