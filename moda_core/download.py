"""Getting the weights in one call: the authors' Google-Drive release (via ``gdown``) or any Hugging Face repo
(via ``huggingface_hub``), into one folder the loaders list (ComfyUI's models/moda, the CLI's weights folder).

:func:`download_weights` is what ``moda download`` and the MODA Download Weights node call. Guarantees:

- progress through ``progress(file, bytes_done, bytes_total)`` (it may raise to stop the transfer);
- an interrupted transfer resumes on the next call (gdown's ``.part`` file, the Hub's ``.incomplete`` file);
- nothing half-written under a final name (transfers land in temporary names, then are renamed);
- a file that was not fetched never counts as fetched: every failure raises one :class:`DownloadError` naming
  each file, its URL and the folder to put it in, and says which same-name local copies exist but were not
  checked (the Hub client would otherwise quietly fall back to them).

The authors' files are told apart by content (state-dict keys, ``templete`` in repr.npz), converted to our
``.safetensors`` (``torch.load(weights_only=True)``, strict load) and Cathy's subject is imported.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

Progress = Callable[[str, int, "int | None"], None]     # (file, bytes done, bytes total or None); may raise
SOURCES = ("authors", "hf")
STAGING = ".moda-download"           # in the target folder: Drive transfers (resumable) and what each became


class DownloadError(ValueError):
    """A download that did not happen; ``input_name`` is the request field it concerns (repo_id, revision,
    filenames) for callers that pin errors on inputs."""

    def __init__(self, message: str, input_name: str = "repo_id"):
        super().__init__(message)
        self.input_name = input_name


@dataclass
class Outcome:
    """What a download did: one line per file (written, up to date, kept), and the paths the loaders use."""

    lines: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def add(self, path: Path, line: str) -> None:
        self.paths.append(path)
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines)


# ----------------------------------------------------------------------------------------- the authors' files
@dataclass(frozen=True)
class DriveFile:
    """One file the authors' install.sh fetches; ``names`` are what it may hold (pairs share an entry)."""

    drive_id: str
    names: tuple[str, ...]
    kinds: tuple[str, ...]           # the content kinds it may hold, see identify_authors_file

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?id={self.drive_id}"

    @property
    def label(self) -> str:
        return " or ".join(self.names)

    @property
    def progress_name(self) -> str:
        """Unique per file (the two files of a pair share their label)."""
        return f"{self.label} [{self.drive_id[:6]}]"


PERSON = "cathy"                     # the subject the authors release (their meta_dir/Cathy, renderer/Cathy.pth)
_CKPTS, _SUBJECT = ("MODA.pkl", "FaCo.pkl"), ("repr.npz", "reference.pth")
AUTHORS_FILES = (
    DriveFile("1TgyVM1JwKmt1uMkS5nAb9SAKMVCcUZmW", _CKPTS, ("moda", "faco")),
    DriveFile("1g1YOQaOT9gHXNpLATGxqX2ysSaaIShRT", _CKPTS, ("moda", "faco")),
    DriveFile("14TfL3Qq1TrT4FkFsQOmcBVwZ_Fj-_AjZ", ("renderer/Cathy.pth",), ("renderer",)),
    DriveFile("1ISMHAoEKIo1_BPGDuWeBWWhz8D9jZwqf", _SUBJECT, ("repr", "reference")),
    DriveFile("1maUQxgVKJakAu4UMkj_T4eYnzaAMktKW", _SUBJECT, ("repr", "reference")),
)
# where each kind lands in the target folder (networks converted to ours)
AUTHORS_TARGETS = {"moda": "moda.safetensors", "faco": "faco.safetensors",
                   "renderer": f"renderer/{PERSON}.safetensors",
                   "repr": f"{PERSON}/repr.npz", "reference": f"{PERSON}/reference.pth"}
SUBJECT_TARGET = f"{PERSON}/subject.safetensors"
# where a user downloading by hand puts the authors' file (the loaders read them as they are)
_MANUAL_FOLDERS = {"moda": "", "faco": "", "renderer": "renderer", "repr": PERSON, "reference": PERSON}
_DESCRIPTIONS = {"moda": "MODA network (the authors' MODA.pkl)", "faco": "FaCo-Net (the authors' FaCo.pkl)",
                 "renderer": "Cathy's renderer (the authors' renderer/Cathy.pth)",
                 "repr": "Cathy's repr.npz", "reference": "Cathy's reference.pth"}


def identify_authors_file(path: str | os.PathLike) -> str:
    """``moda``/``faco``/``renderer`` (state-dict keys), ``repr`` (an npz holding ``templete``) or ``reference``
    (a torch pickle holding ``examples``), from the content only; nothing is unpickled."""
    from moda_core.checkpoints import authors_file_kind, pickled_strings

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        head = path.read_bytes()[:64] if path.is_file() else b""
        what = "a web page" if head.lstrip().lower().startswith((b"<!doctype", b"<html")) else "not a zip archive"
        raise ValueError(f"{path} ({path.stat().st_size if path.is_file() else 0} bytes) is {what}: a truncated "
                         "or wrong download, not one of the authors' checkpoints, repr.npz or reference.pth") from None
    if "templete.npy" in members:
        return "repr"
    kind = authors_file_kind(path)
    if kind in ("moda", "faco", "renderer"):
        return kind
    if kind is None and "examples" in pickled_strings(path):
        return "reference"
    raise ValueError(f"{path}: holds {kind or 'unknown content'}, not one of the authors' released files "
                     "(MODA.pkl, FaCo.pkl, renderer/Cathy.pth, repr.npz, reference.pth)")


def select_authors_files(names: Sequence[str] = ()) -> list[DriveFile]:
    """The Drive files holding ``names`` (e.g. ``MODA.pkl``, ``Cathy.pth``, ``repr.npz``); all when empty."""
    if not names:
        return list(AUTHORS_FILES)
    chosen = []
    for name in names:
        found = [f for f in AUTHORS_FILES if any(Path(n).name.lower() == Path(name).name.lower() for n in f.names)]
        if not found:
            known = ", ".join(dict.fromkeys(n for f in AUTHORS_FILES for n in f.names))
            raise DownloadError(f"{name!r} is not in the authors' release; it holds {known}", "filenames")
        chosen += [f for f in found if f not in chosen]
    return chosen


# ----------------------------------------------------------------------------------------- shared helpers
def _is_network_error(err: BaseException | None) -> bool:
    """Connection, DNS, timeout or offline mode (as opposed to an answer such as 404), also when wrapped (gdown's
    "Download failed after N retries" carries the connection error as its cause)."""
    from huggingface_hub import errors

    while err is not None:
        if isinstance(err, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError, ConnectionError,
                            TimeoutError)):
            return True
        names = {cls.__module__.split(".")[0] + "." + cls.__name__ for cls in type(err).__mro__}
        if names & {"requests.ConnectionError", "requests.Timeout", "httpx.TransportError",
                    "httpx2.TransportError", "urllib3.HTTPError", "socket.gaierror"}:
            return True
        err = err.__cause__
    return False


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _missing_dirs(path: Path, root: Path) -> list[Path]:
    """The folders between ``root`` and ``path`` that do not exist yet (deepest first)."""
    missing, parent = [], path.parent
    while parent != root and root in parent.parents and not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _remove_empty(dirs: Iterable[Path]) -> None:
    for folder in dirs:
        try:
            folder.rmdir()
        except OSError:
            pass


def leaves_folder(name: str) -> bool:
    """True for a file name that would land outside the target folder (absolute, drive letter, '..')."""
    clean = name.strip().replace("\\", "/")
    return clean.startswith("/") or ".." in clean.split("/") or re.match(r"^[A-Za-z]:", clean) is not None


def _check_name(name: str) -> str:
    clean = name.strip().replace("\\", "/")
    if not clean:
        raise DownloadError("an empty file name; name each file by its path inside the repo", "filenames")
    if leaves_folder(clean):
        raise DownloadError(f"{name!r} leaves the target folder; use the file's path inside the repo", "filenames")
    return clean


# ----------------------------------------------------------------------------------------- entry point
def download_weights(source: str, folder: str | os.PathLike, *, repo_id: str = "", files: Sequence[str] = (),
                     revision: str = "main", progress: Progress | None = None, configs: dict | None = None,
                     import_subject: bool = True) -> Outcome:
    """Fetch weights into ``folder`` from ``source`` ("authors" or "hf") and return what was written.

    hf: ``repo_id`` and ``files`` (paths in the repo; sub-folders are kept) at ``revision``. authors: the five
    files of the authors' release (``files`` may pick some by name), converted and placed as
    :data:`AUTHORS_TARGETS` says, Cathy's subject imported to :data:`SUBJECT_TARGET`. ``configs`` ({kind:
    config}) overrides the network configs used to convert the authors' checkpoints (default: theirs).
    Raises :class:`DownloadError` when anything could not be fetched or is not what it should be.
    """
    folder = Path(folder).expanduser()
    problems = check_request(source, repo_id, files, revision)
    if problems:
        input_name, message = problems[0]
        raise DownloadError("; ".join(m for _, m in problems), input_name)
    progress = progress or (lambda *_: None)
    folder.mkdir(parents=True, exist_ok=True)
    if source == "authors":
        return _fetch_authors(folder, select_authors_files(files), progress, configs or {}, import_subject)
    return _fetch_hub(folder, repo_id.strip(), [_check_name(f) for f in files], revision.strip(), progress)


def check_request(source: str, repo_id: str, files: Sequence[str], revision: str) -> list[tuple[str, str]]:
    """Problems of a request, each as (input name, message); [] when it can be tried."""
    if source not in SOURCES:
        return [("source", f"unknown source {source!r}; use one of {', '.join(SOURCES)}")]
    problems = []
    if source == "hf":
        repo = repo_id.strip()
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo):
            problems.append(("repo_id", f"{repo_id!r} is not a Hugging Face repo id; enter one such as "
                                        "'owner/moda-weights'"))
        if not files:
            problems.append(("filenames", "no file named; enter the files to fetch, one per line"))
        if not revision.strip():
            problems.append(("revision", "empty; use 'main' or a tag or commit hash"))
    for name in files:
        try:
            _check_name(name) if source == "hf" else select_authors_files([name])
        except DownloadError as err:
            problems.append(("filenames", str(err)))
    return problems


# ----------------------------------------------------------------------------------------- Hugging Face
class _HubFallbackLog(logging.Handler):
    """Catches huggingface_hub's "Couldn't access the Hub ... Defaulting to existing file" warning."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Defaulting to existing file" in message or "Couldn't access the Hub" in message:
            self.messages.append(message)


@contextmanager
def _hub_fallbacks():
    handler, logger = _HubFallbackLog(), logging.getLogger("huggingface_hub")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _tqdm_for(progress: Progress, name: str) -> type:
    from huggingface_hub.utils import tqdm

    class ProgressTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.done = kwargs.get("initial", 0) or 0

        def update(self, n=1):
            self.done += n or 0
            progress(name, self.done, self.total)
            return super().update(n)

    return ProgressTqdm


def _clean_hub_cache(folder: Path) -> None:
    """Drop the Hub client's lock files and empty folders under ``folder/.cache`` (its ``.incomplete`` partial
    files stay, for resuming; ``.metadata`` files stay, for up-to-date checks)."""
    cache = folder / ".cache"
    if not cache.is_dir():
        return
    for lock in cache.rglob("*.lock"):
        lock.unlink(missing_ok=True)
    hub = cache / "huggingface"
    if hub.is_dir() and not any(p.is_file() and p.name != ".gitignore" for p in hub.rglob("*")):
        shutil.rmtree(hub, ignore_errors=True)
    _remove_empty(sorted((p for p in cache.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True))
    _remove_empty([cache])


def _fetch_hub(folder: Path, repo_id: str, files: list[str], revision: str, progress: Progress) -> Outcome:
    import huggingface_hub
    from huggingface_hub import errors

    outcome, failures, stop = Outcome(), [], None      # failures: (file, reason, input name)
    for name in files:
        target = folder / name
        if stop is not None:
            failures.append((name, stop[0], stop[1]))
            continue
        created, fetched = _missing_dirs(target, folder), False
        before = target.stat() if target.is_file() else None
        try:
            huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo_id, name, revision=revision))
            with _hub_fallbacks() as fallbacks:
                path = Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename=name, revision=revision,
                                                            local_dir=folder, tqdm_class=_tqdm_for(progress, name)))
            if fallbacks:
                raise ConnectionError(fallbacks[0].split("(error: ", 1)[-1].rstrip(")"))
        except errors.RepositoryNotFoundError as err:
            stop = (f"repo {repo_id!r} not found, private or gated ({_reason(err)}); check the name, or log in "
                    "with `hf auth login` (or set HF_TOKEN) for private and gated repos", "repo_id")
        except errors.RevisionNotFoundError as err:
            stop = (f"revision {revision!r} not found in {repo_id} ({_reason(err)}); use 'main' or an existing "
                    "tag or commit hash", "revision")
        except errors.EntryNotFoundError as err:
            if isinstance(err, errors.LocalEntryNotFoundError):    # the connection dropped after the check
                stop = (f"the Hugging Face Hub could not be reached ({_reason(err)})", "repo_id")
            else:
                failures.append((name, f"not in {repo_id} at {revision} (see https://huggingface.co/{repo_id}/"
                                       f"tree/{revision})", "filenames"))
        except Exception as err:       # noqa: BLE001 - network and HTTP errors of several client libraries
            if _is_network_error(err):
                stop = (f"the Hugging Face Hub could not be reached ({_reason(err)})", "repo_id")
            elif isinstance(err, (errors.HfHubHTTPError, OSError)):
                failures.append((name, f"download failed ({_reason(err)}); run again to resume", "repo_id"))
            else:
                raise
        else:
            fetched, after = True, path.stat()
            fresh = before is None or (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size)
            outcome.add(path, f"{'downloaded' if fresh else 'up to date (checked against the repo)'}: {path} "
                              f"({after.st_size / 1e6:.1f} MB, {repo_id}@{revision})")
            continue
        finally:
            _clean_hub_cache(folder)
            if not fetched:                        # also when stopped (cancel): no empty folders left
                _remove_empty(created)
        if stop is not None:
            failures.append((name, stop[0], stop[1]))
    if failures:
        raise DownloadError(_failure_message(
            folder, outcome, [(name, reason, f"https://huggingface.co/{repo_id}/resolve/{revision}/{name}",
                               (folder / name).parent, folder / name) for name, reason, _ in failures],
            f"from https://huggingface.co/{repo_id} (revision {revision})"), failures[0][2])
    return outcome


def _failure_message(folder: Path, outcome: Outcome, failures: list[tuple], origin: str) -> str:
    """One message: every file not fetched with its reason, URL and folder, then the same-name local copies
    that exist but were not checked, then what did succeed."""
    reasons = list(dict.fromkeys(reason for _, reason, *_ in failures))
    lines = [f"{len(failures)} file(s) not downloaded {origin}" + (f": {reasons[0]}." if len(reasons) == 1 else ":"),
             "Get each from its URL and put it in the folder shown:"]
    for name, reason, url, target_folder, _ in failures:
        lines.append(f"  {name}: {url} -> {target_folder}{os.sep}" + (f"  ({reason})" if len(reasons) > 1 else ""))
    local = [str(local) for *_, local in failures if local is not None and Path(local).is_file()]
    if local:
        lines.append("Same-name local copies exist but were NOT downloaded or checked now (the loaders will use them "
                     "as they are): " + ", ".join(local))
    if outcome.lines:
        lines.append("Fetched: " + "; ".join(outcome.lines))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- authors' release
def _record_path(folder: Path, drive: DriveFile) -> Path:
    return folder / STAGING / f"{drive.drive_id}.json"


def _recorded_targets(folder: Path, drive: DriveFile) -> list[Path] | None:
    """The files an earlier run made from ``drive`` when they are still as it wrote them, else None."""
    try:
        record = json.loads(_record_path(folder, drive).read_text())
        targets = []
        for relative, (size, mtime_ns) in record["targets"].items():
            stat = (folder / relative).stat()
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
                return None
            targets.append(folder / relative)
        return targets
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(folder: Path, drive: DriveFile, kind: str, targets: list[Path]) -> None:
    from moda_core.fileio import atomic_write

    stats = {str(t.relative_to(folder)).replace(os.sep, "/"): (t.stat().st_size, t.stat().st_mtime_ns)
             for t in targets}
    record = json.dumps({"drive_id": drive.drive_id, "kind": kind, "targets": stats})
    atomic_write(_record_path(folder, drive), lambda tmp: Path(tmp).write_text(record))


def _gdown(drive: DriveFile, staged: Path, progress: Progress) -> None:
    import gdown

    gdown.download(id=drive.drive_id, output=str(staged), quiet=True, resume=True, timeout=60, retries=2,
                   progress=lambda done, total: progress(drive.progress_name, done, total))


def _fetch_authors(folder: Path, drives: list[DriveFile], progress: Progress, configs: dict,
                   import_subject: bool) -> Outcome:
    outcome, staging = Outcome(), folder / STAGING
    staging.mkdir(exist_ok=True)
    fetched, failures, unreachable = {}, [], None
    for drive in drives:
        kept = _recorded_targets(folder, drive)
        if kept:
            for path in kept:
                outcome.add(path, f"kept: {path} (made from Drive file {drive.drive_id} by an earlier download; "
                                  "delete it to download again)")
            continue
        staged = staging / drive.drive_id
        if unreachable is not None:
            failures.append((drive, unreachable))
            continue
        if not staged.is_file():                   # a complete transfer of an earlier run is not repeated
            try:
                _gdown(drive, staged, progress)
            except Exception as err:  # noqa: BLE001 - gdown/requests errors, classified below
                if _is_network_error(err):
                    unreachable = f"Google Drive could not be reached ({_reason(err)})"
                    failures.append((drive, unreachable))
                elif type(err).__name__ in ("HTTPError", "FileURLRetrievalError"):     # Drive's answer
                    failures.append((drive, f"{_reason(err)}; Drive refused the file (moved, private, or its "
                                            "download quota is used up for today)"))
                elif type(err).__module__.startswith(("gdown", "requests")) or isinstance(err, OSError):
                    failures.append((drive, f"{_reason(err)}; run again to resume"))
                else:
                    raise
                continue
        fetched[drive] = staged
    if failures:
        _remove_empty([staging])                   # a partial transfer (kept for resuming) keeps the folder
        raise DownloadError(_authors_failure(folder, outcome, failures, fetched), "source")
    kinds = _identify_all(fetched)
    subject_done = False
    for drive, staged in fetched.items():
        kind = kinds[drive]
        target = folder / AUTHORS_TARGETS[kind]
        replaced = target.is_file()
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("moda", "faco", "renderer"):
            _convert(staged, target, kind, configs.get(kind), drive)
            staged.unlink()
            from moda_core.checkpoints import describe_checkpoint
            info = describe_checkpoint(target)
            detail = f"{info.num_parameters / 1e6:.2f} M parameters"
        else:
            os.replace(staged, target)
            detail = f"{target.stat().st_size / 1e6:.1f} MB"
        _write_record(folder, drive, kind, [target])
        outcome.add(target, f"{'replaced' if replaced else 'wrote'}: {target} ({_DESCRIPTIONS[kind]}, "
                            f"{detail}, Drive {drive.drive_id})")
        subject_done = subject_done or kind in ("repr", "reference")
    subject_missing = any("repr" in d.kinds for d in drives) and not (folder / SUBJECT_TARGET).is_file()
    if import_subject and (subject_done or subject_missing):       # also when only the subject file was deleted
        _import_subject(folder, outcome)
    _remove_empty([staging])
    return outcome


def _authors_failure(folder: Path, outcome: Outcome, failures: list[tuple[DriveFile, str]],
                     fetched: dict[DriveFile, Path]) -> str:
    lines = [_failure_message(folder, outcome, [(d.label, reason, d.url, folder / _MANUAL_FOLDERS[d.kinds[0]], None)
                                                for d, reason in failures], "from the authors' Google Drive")]
    lines += [f"Downloaded, kept in {path.parent} for the next run: {d.label} ({d.drive_id})"
              for d, path in fetched.items()]
    lines.append("The loaders and --weights read the authors' files as they are; import the subject with "
                 f"`moda import-subject {folder / PERSON} --out {folder / SUBJECT_TARGET}`.")
    return "\n".join(lines)


def _identify_all(fetched: dict[DriveFile, Path]) -> dict[DriveFile, str]:
    """Kind of each transferred file; a wrong or truncated file is deleted (so the next run fetches it again)."""
    kinds, seen = {}, {}
    for drive, staged in fetched.items():
        try:
            kind = identify_authors_file(staged)
            if kind not in drive.kinds:
                raise ValueError(f"{staged}: holds the authors' {kind} file, expected {drive.label}")
        except ValueError as err:
            staged.unlink(missing_ok=True)
            raise DownloadError(f"Drive file {drive.drive_id} ({drive.label}, {drive.url}) is unusable: {err}. "
                                "It was deleted; run again to download it anew.", "source") from None
        if kind in seen:
            raise DownloadError(f"Drive files {seen[kind].drive_id} and {drive.drive_id} both hold the authors' "
                                f"{kind} file; the release changed, get the files by hand", "source")
        seen[kind], kinds[drive] = drive, kind
    return kinds


def _convert(staged: Path, target: Path, kind: str, config, drive: DriveFile) -> None:
    from moda_core.checkpoints import convert_authors_checkpoint

    try:
        convert_authors_checkpoint(staged, target, kind=kind, config=config)
    except ValueError as err:
        raise DownloadError(f"Drive file {drive.drive_id} ({_DESCRIPTIONS[kind]}) does not convert: {err}. Delete "
                            f"{staged} and run again if the download was damaged.", "source") from None


def _import_subject(folder: Path, outcome: Outcome) -> None:
    subject_dir = folder / PERSON
    command = f"moda import-subject {subject_dir} --out {folder / SUBJECT_TARGET}"
    try:
        from moda_core.authors_subject import import_subject
    except ImportError:
        outcome.lines.append(f"subject files in {subject_dir}: import with `{command}`")
        return
    if not all((subject_dir / name).is_file() for name in _SUBJECT):
        outcome.lines.append(f"subject not imported: {subject_dir} lacks "
                             f"{' or '.join(n for n in _SUBJECT if not (subject_dir / n).is_file())}")
        return
    try:
        subject = import_subject(subject_dir, name=PERSON)
    except ValueError as err:
        raise DownloadError(f"Cathy's subject files in {subject_dir} do not import: {err}. Delete them and run "
                            "again if the download was damaged.", "source") from None
    path = subject.save(folder / SUBJECT_TARGET)
    outcome.add(path, f"wrote: {path} (Cathy's subject imported from repr.npz and reference.pth)")
