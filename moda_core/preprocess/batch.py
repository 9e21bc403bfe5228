"""Many talking videos -> one sample folder each (``<out>/<stem>/``), in worker processes, skipping finished ones.

A sample folder is *complete* when its ``sample.json`` names the sample format: :func:`prepare_video_sample`
writes every file into a temporary folder, ``sample.json`` last, and renames the folder into place, so a folder
under the final name with that file is whole. Workers are ``spawn`` processes (the same on every platform; no
forked MediaPipe or torch threads); each video's failure is caught and reported, the others go on.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from moda_core.preprocess.errors import PreprocessError
from moda_core.preprocess.sample import SAMPLE_FORMAT, SAMPLE_VERSION, Progress, prepare_video_sample

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def is_prepared_sample(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a complete sample (its ``sample.json`` names the sample format and version)."""
    try:
        meta = json.loads((Path(folder) / "sample.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == SAMPLE_FORMAT and meta.get("version") == SAMPLE_VERSION


def video_files(folder: str | os.PathLike) -> list[Path]:
    """The video files directly in ``folder`` (by suffix, hidden files left out), sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith("."))


@dataclass(frozen=True)
class PrepareOutcome:
    """What happened to one video: ``status`` is ``prepared``, ``skipped`` or ``failed``; ``detail`` says why
    (the sample's one-line summary, or the error)."""

    video: Path
    folder: Path
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status}: {self.video.name} -> {self.folder}: {self.detail}"


def _prepare_one(video: Path, folder: Path, fps: float, models_dir, max_seconds: float | None, overwrite: bool,
                 progress: Progress | None = None) -> tuple[str, str]:
    """Prepare one video (in a worker process or in-process) -> ``(status, detail)``; never raises an Exception."""
    if not overwrite and is_prepared_sample(folder):
        return "skipped", "already prepared (sample.json present)"
    try:
        summary = prepare_video_sample(video, folder, fps=fps, models_dir=models_dir, max_seconds=max_seconds,
                                       overwrite=overwrite, progress=progress)
    except (PreprocessError, OSError, ValueError, RuntimeError) as err:
        return "failed", str(err) or type(err).__name__
    except Exception as err:                       # noqa: BLE001 - one bad video must not stop the others
        return "failed", f"{type(err).__name__}: {err}"
    detail = summary.one_line().split(": ", 1)[-1]
    return "prepared", detail + "".join(f"; warning: {w}" for w in summary.warnings)


def _worker_init(threads: int) -> None:
    """Spawned worker: share the cores between the workers (read by torch and OpenCV when first imported)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Interrupt running workers (they remove their temporary folder on KeyboardInterrupt) and drop the queue."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive() and process.pid:
            try:
                os.kill(process.pid, signal.SIGINT)
            except OSError:
                pass
    pool.shutdown(wait=True)


def prepare_videos(videos: list[str | os.PathLike], out_root: str | os.PathLike, *, workers: int = 1,
                   fps: float = 30.0, models_dir: str | os.PathLike | None = None, max_seconds: float | None = None,
                   overwrite: bool = False, progress: Progress | None = None,
                   worker: Callable[..., tuple[str, str]] = _prepare_one) -> Iterator[PrepareOutcome]:
    """Prepare each video into ``out_root/<stem>/``; yields a :class:`PrepareOutcome` per video as it finishes.

    ``workers`` > 1 prepares that many videos at once in spawned processes; ``progress(stage, done, total)``
    reports frames only with one worker (in-process). Complete sample folders are skipped unless
    ``overwrite``; two videos with the same stem fail the later one (one folder each). A worker process that
    dies (killed for memory, a crash in native code) takes its pool down: the videos caught in it are tried
    again one at a time, so only the one that kills its worker fails. ``worker`` (a module-level function with
    :func:`_prepare_one`'s signature) does the work of one video.
    """
    out_root = Path(out_root)
    if workers < 1:
        raise PreprocessError(f"workers must be at least 1, got {workers}")
    out_root.mkdir(parents=True, exist_ok=True)
    jobs, seen = [], {}
    for video in map(Path, videos):
        folder = out_root / video.stem
        if folder in seen:
            yield PrepareOutcome(video, folder, "failed", f"same sample folder as {seen[folder].name}; rename one "
                                                           "of the two videos")
            continue
        seen[folder] = video
        jobs.append((video, folder))
    options = (fps, models_dir, max_seconds, overwrite)
    if workers == 1 or len(jobs) <= 1:
        for video, folder in jobs:
            yield PrepareOutcome(video, folder, *worker(video, folder, *options, progress))
        return
    caught = []
    for job, outcome in _in_pool(jobs, min(workers, len(jobs)), worker, options):
        if outcome is None:
            caught.append(job)
        else:
            yield PrepareOutcome(*job, *outcome)
    for job in caught:
        (_, outcome), = _in_pool([job], 1, worker, options)
        yield PrepareOutcome(*job, *(outcome or ("failed", "its worker process died (out of memory, or a crash "
                                                           "in a native library); try it alone or with fewer "
                                                           "--workers")))


def _in_pool(jobs: list[tuple[Path, Path]], workers: int, worker, options: tuple
             ) -> Iterator[tuple[tuple[Path, Path], tuple[str, str] | None]]:
    """``(job, (status, detail))`` per job as it finishes in a spawned pool; ``(job, None)`` when the pool broke."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(max(1, (os.cpu_count() or 1) // workers),))
    try:
        futures: dict[Future, tuple[Path, Path]] = {pool.submit(worker, *job, *options): job for job in jobs}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                outcome = None
            except Exception as err:               # noqa: BLE001 - e.g. a result that cannot be sent back
                outcome = "failed", f"{type(err).__name__}: {err}"
            yield futures[future], outcome
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
