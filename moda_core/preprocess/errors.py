"""The one exception type of the preprocessing package."""
from __future__ import annotations


class PreprocessError(ValueError):
    """An input cannot be preprocessed; the message names the input and says what to do."""


def ffmpeg_message(err: BaseException) -> str:
    """PyAV/OS error text without the ``[Errno 1094995529]`` prefix and the repeated file name."""
    return getattr(err, "strerror", None) or str(err)
