"""tqdm progress bars per pipeline stage, driven by the pipeline's ``progress(stage, done, total)`` callback."""
from __future__ import annotations

import contextlib

from tqdm import tqdm


class StageProgress:
    """One tqdm bar per stage name; call the instance as the pipeline's progress callback."""

    def __init__(self, disable: bool | None = None):
        self._bars: dict[str, tqdm] = {}
        self._disable = disable

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="step" if stage == "motion" else "frame",
                                           disable=self._disable, leave=True, dynamic_ncols=True)
        bar.total = total
        bar.update(done - bar.n)

    @contextlib.contextmanager
    def stage(self, name: str, total: int):
        self(name, 0, total)
        yield
        self(name, total, total)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
