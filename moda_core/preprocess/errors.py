"""The one exception type of the preprocessing package."""
from __future__ import annotations


class PreprocessError(ValueError):
    """An input cannot be preprocessed; the message names the input and says what to do."""
