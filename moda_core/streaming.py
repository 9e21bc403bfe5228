"""Overlapping pipeline stages: run an iterator's work in a worker thread, a few items ahead of its consumer.

The stages that feed the renderer (warping, drawing: cv2/numpy, which release the GIL) and the H.264 encoder
after it (:class:`moda_core.video.VideoWriter` with ``background=True``) run while torch renders, so on a
multi-core CPU their time hides behind the renderer's. Items arrive in order and unchanged; an exception in
the worker is raised in the consumer; a consumer that stops (an error, an interrupt, ``close()``) stops the
worker after the item it is on.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.05          # how often a blocked worker looks for a stop request


def put_until(items: queue.Queue, entry, stop: threading.Event) -> bool:
    """``items.put(entry)``, giving up (False) once ``stop`` is set."""
    while not stop.is_set():
        try:
            items.put(entry, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 1, *, name: str = "moda-prefetch") -> Iterator[T]:
    """Yield the items of ``items`` in order, computed in a worker thread up to ``depth`` items ahead.

    Use it with :func:`contextlib.closing` (or exhaust it): closing stops the worker after its current item
    and waits for it, so nothing runs on after the consumer has gone.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put_until(ready, (True, item), stop):
                    return
            put_until(ready, (False, None), stop)
        except BaseException as err:          # noqa: BLE001 - handed to the consumer, raised there
            put_until(ready, (False, err), stop)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            more, value = ready.get()
            if not more:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        worker.join()
