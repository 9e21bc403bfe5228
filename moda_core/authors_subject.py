"""The authors' subject files (``meta_dir/<person>/repr.npz`` + ``reference.pth``) as a :class:`Subject`.

* ``repr.npz`` (moda-official-facts.md §8.2): float64 means in the 512-px canonical space, ``templete`` (sic)
  [478, 3], ``headmotion`` [7] (yaw, pitch, roll, anchor x, y, z, scale), ``shoulder`` [18, 3]; ``eye`` [60, 3]
  and ``lip`` [40, 3] are loaded by the authors but unused (checked for shape when present).
* ``reference.pth`` (§8.3): a ``torch.save`` pickle ``{'example_files': [str], 'examples': [uint8 [512, 512, 3]
  RGB]}``; the renderer conditions on ``examples[0]``. Read with :func:`load_restricted_pickle`, which builds only
  plain containers, strings, numbers and numpy arrays and refuses anything else (a pickle that would run code).
  ``reference.png`` (or .jpg) may stand in for it; like the authors' image path it is read as RGB and resized to
  512 px with OpenCV's default (bilinear) interpolation.

The Subject keeps the means in float64, as the authors add them, so the drawn points match theirs exactly.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from moda_core.subject import REFERENCE_SIZE, Subject, SubjectError

REPR_FILE = "repr.npz"
REFERENCE_FILES = ("reference.pth", "reference.png", "reference.jpg")
# repr.npz key -> (accepted spellings, shape, required)
REPR_KEYS: dict[str, tuple[tuple[str, ...], tuple[int, ...], bool]] = {
    "template": (("templete", "template"), (478, 3), True),
    "headmotion": (("headmotion",), (7,), True),
    "shoulder": (("shoulder",), (18, 3), True),
    "eye": (("eye",), (60, 3), False),
    "lip": (("lip",), (40, 3), False),
}
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C            # legacy (non-zip) torch.save files start with this pickle


class AuthorsSubjectError(SubjectError):
    """An authors' subject file is missing, damaged or holds something other than what it should."""


# ------------------------------------------------------------------------------------ restricted unpickling
def _numpy_reconstruct():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct, core.multiarray.scalar


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How protocol-2 pickles (torch.save's default) store bytes: ``_codecs.encode(text, "latin1")``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"unexpected bytes encoding {encoding!r}")
    return text.encode("latin1")


class _Refused(Exception):
    """Raised while unpickling; :func:`load_restricted_pickle` adds the file name."""


def _require_plain(dtype, what: str) -> np.dtype:
    dtype = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    if not _plain_dtype(dtype):
        raise _Refused(f"holds {what} of dtype {dtype.str!r}; only plain numeric and string arrays are accepted "
                       f"(arrays of Python objects and structured or altered dtypes are refused)")
    return dtype


class _CheckedArray(np.ndarray):
    """What the pickle's ``numpy.ndarray`` stands for: arrays are built only by numpy's own reconstruction, and
    their state is checked before numpy copies the stored bytes in (a forged dtype never gets an array)."""

    def __new__(cls, *args, **kwargs):
        raise _Refused("calls numpy.ndarray directly, which numpy's own pickles never do")

    def __setstate__(self, state):
        _require_plain(state[2] if len(state) == 5 else state[1], "an array")
        super().__setstate__(state)


def _empty_bytes(*args) -> bytes:
    """How protocol-2 pickles store ``b""`` (e.g. the data of an empty array): ``bytes()``."""
    if args:
        raise _Refused("calls bytes() with arguments, which pickles of plain data never do")
    return b""


def _allowed_globals() -> dict[tuple[str, str], object]:
    reconstruct, scalar = _numpy_reconstruct()

    def checked_reconstruct(subtype, shape, typecode):
        if subtype is not _CheckedArray:
            raise _Refused(f"reconstructs an array as {getattr(subtype, '__name__', subtype)!r}")
        return reconstruct(subtype, shape, _require_plain(typecode, "an array"))

    def checked_scalar(dtype, *args):
        return scalar(_require_plain(dtype, "a numpy scalar"), *args)

    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): _CheckedArray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset, ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
        ("builtins", "bytes"): _empty_bytes, ("__builtin__", "bytes"): _empty_bytes}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = checked_reconstruct
        allowed[(module, "scalar")] = checked_scalar
    for name in dir(getattr(np, "dtypes", None) or object()):        # numpy >= 1.25 pickles dtypes by class
        if name.endswith("DType"):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers, strings, numbers and numpy arrays; any other global is refused."""

    def __init__(self, file, source: Path):
        super().__init__(file)
        self.source = source
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None and module.split(".")[0] == "torch":
            raise AuthorsSubjectError(f"{self.source}: holds torch objects ({module}.{name}); only numpy arrays are "
                                      f"accepted here (save the image as reference.png instead)")
        if found is None:
            raise AuthorsSubjectError(
                f"{self.source}: refusing to load {module}.{name}; this file may hold only numpy arrays, strings, "
                f"numbers and plain containers (a pickle naming other objects can run code when loaded). "
                f"Use the authors' original file, or save the image as reference.png instead")
        return found

    def persistent_load(self, pid):
        raise AuthorsSubjectError(f"{self.source}: holds torch storages; only numpy arrays are accepted here "
                                  f"(save the image as reference.png instead)")


_PLAIN_KINDS = "biufcSU"       # bool, integers, floats, complex, bytes, str: items that hold no pointers


def _plain_dtype(dtype: np.dtype) -> bool:
    """A builtin numeric or string dtype exactly as numpy itself builds it. A pickle can forge a dtype's state
    (``BUILD`` sets its flags and item size): a structured dtype whose object field is hidden by cleared flags
    would let raw bytes stand for object pointers, so only canonical plain dtypes pass."""
    if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        return False
    canonical = np.dtype(dtype.str)
    return (dtype.flags, dtype.itemsize, dtype.alignment, dtype.metadata) == \
        (canonical.flags, canonical.itemsize, canonical.alignment, None)


def _check_plain(value, source: Path) -> None:
    """Reject arrays and scalars of other than plain numeric or string dtypes (object, structured, forged) and
    non-plain leaves. Iterative and once per container, so deep nesting and loops cannot overflow the stack."""
    pending, seen = [(value, "the file")], set()
    while pending:
        value, where = pending.pop()
        if isinstance(value, (np.ndarray, np.generic)):
            if not _plain_dtype(value.dtype):
                raise AuthorsSubjectError(f"{source}: {where} has dtype {value.dtype.str!r}; only plain numeric and "
                                          f"string arrays are accepted (arrays of Python objects and structured or "
                                          f"altered dtypes are refused)")
        elif isinstance(value, (dict, list, tuple, set, frozenset)):
            if id(value) in seen:                 # shared or self-referencing: checked once
                continue
            seen.add(id(value))
            if isinstance(value, dict):
                pending += [(key, where) for key in value]
                pending += [(item, f"{where}[{key!r}]") for key, item in value.items()]
            else:
                pending += [(item, f"{where}[{index}]") for index, item in enumerate(value)]
        elif not isinstance(value, (str, bytes, int, float, complex, bool, type(None))):
            raise AuthorsSubjectError(f"{source}: {where} is a {type(value).__name__}; only arrays, strings, numbers "
                                      f"and plain containers are accepted")


def load_restricted_pickle(path: str | os.PathLike):
    """Read a ``torch.save`` file (zip or legacy) or a plain pickle holding only arrays, strings, numbers and
    containers, never running code from it. Raises :class:`AuthorsSubjectError` naming the file otherwise.
    Arrays come back as a checked ``numpy.ndarray`` subclass (``np.asarray`` gives a plain array)."""
    path = Path(path)
    if not path.is_file():
        raise AuthorsSubjectError(f"file not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
                if len(names) != 1:
                    raise AuthorsSubjectError(f"{path}: a zip file without one data.pkl, not a torch.save file")
                value = _RestrictedUnpickler(io.BytesIO(archive.read(names[0])), path).load()
        else:
            with open(path, "rb") as handle:
                value = _RestrictedUnpickler(handle, path).load()
                if isinstance(value, int) and value == _TORCH_MAGIC:          # legacy torch.save layout
                    _RestrictedUnpickler(handle, path).load()                 # protocol version
                    _RestrictedUnpickler(handle, path).load()                 # system info
                    value = _RestrictedUnpickler(handle, path).load()
    except AuthorsSubjectError:
        raise
    except _Refused as err:
        raise AuthorsSubjectError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OSError, MemoryError, RecursionError) as err:
        raise AuthorsSubjectError(f"{path}: damaged or not a pickle file ({type(err).__name__}: {err})") from err
    _check_plain(value, path)
    return value


# ------------------------------------------------------------------------------------ the two files
def read_repr_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The authors' ``repr.npz`` as float64 arrays keyed ``template``, ``headmotion``, ``shoulder`` (and ``eye``,
    ``lip`` when present), shapes checked. No pickles are read."""
    path = Path(path)
    if not path.is_file():
        raise AuthorsSubjectError(f"file not found: {path}")
    known = {key for spellings, _, _ in REPR_KEYS.values() for key in spellings}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise AuthorsSubjectError(f"{path}: one bare array ({loaded.dtype} {list(loaded.shape)}), not an .npz "
                                      f"archive of named arrays (templete, headmotion, shoulder, ...)")
        with loaded as npz:
            names = list(npz.files)
            stored = {key: npz[key] for key in names if key in known}        # other members are not read
    except MemoryError as err:
        raise AuthorsSubjectError(f"{path}: an array in it is too large to be a subject's means") from err
    except ValueError as err:
        raise AuthorsSubjectError(f"{path}: holds Python objects or is damaged ({err}); repr.npz must hold plain "
                                  f"numeric arrays") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise AuthorsSubjectError(f"{path}: not a readable .npz file ({err})") from err
    means: dict[str, np.ndarray] = {}
    for name, (spellings, shape, required) in REPR_KEYS.items():
        key = next((k for k in spellings if k in stored), None)
        if key is None:
            if required:
                raise AuthorsSubjectError(f"{path}: missing key {spellings[0]!r} ({list(shape)}); it has "
                                          f"{sorted(names)}. The authors' repr.npz holds templete [478, 3], "
                                          f"headmotion [7], shoulder [18, 3], eye [60, 3] and lip [40, 3]")
            continue
        value = stored[key]
        if value.shape != shape:
            raise AuthorsSubjectError(f"{path}: {key!r} must have shape {list(shape)}, got {list(value.shape)}")
        if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
            raise AuthorsSubjectError(f"{path}: {key!r} must be a real numeric array, got {value.dtype}")
        value = value.astype(np.float64)
        if not np.isfinite(value).all():
            raise AuthorsSubjectError(f"{path}: {key!r} contains NaN or infinite values")
        means[name] = value
    if means["headmotion"][6] <= 0:
        raise AuthorsSubjectError(f"{path}: headmotion scale (7th value) must be > 0, got {means['headmotion'][6]}")
    return means


def _to_reference_size(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.shape[:2] == (REFERENCE_SIZE, REFERENCE_SIZE):
        return image
    return cv2.resize(image, (REFERENCE_SIZE, REFERENCE_SIZE))       # the authors' im2tensor resize (bilinear)


def read_reference_pth(path: str | os.PathLike) -> np.ndarray:
    """``reference.pth['examples'][0]``: uint8 RGB ``[512, 512, 3]`` (resized to 512 px if stored at another size)."""
    path = Path(path)
    content = load_restricted_pickle(path)
    examples = content.get("examples") if isinstance(content, dict) else None
    if not isinstance(examples, (list, tuple)) or not examples:
        found = sorted(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise AuthorsSubjectError(f"{path}: expected a dict with a non-empty list 'examples' of images, got {found}")
    image = examples[0]
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8
            or 0 in image.shape):
        what = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise AuthorsSubjectError(f"{path}: 'examples'[0] must be a uint8 RGB image [H, W, 3], got {what}")
    return np.ascontiguousarray(_to_reference_size(image))


def read_reference_image(path: str | os.PathLike) -> np.ndarray:
    """A reference picture (png/jpg) as uint8 RGB ``[512, 512, 3]``, read like the authors' image path."""
    import cv2

    path = Path(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise AuthorsSubjectError(f"{path}: not a readable image")
    return np.ascontiguousarray(_to_reference_size(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))


def is_authors_subject_folder(folder: str | os.PathLike) -> bool:
    """True for a folder holding ``repr.npz`` and a reference (``reference.pth``/``.png``/``.jpg``)."""
    folder = Path(folder)
    return (folder / REPR_FILE).is_file() and any((folder / name).is_file() for name in REFERENCE_FILES)


def import_subject(folder: str | os.PathLike, name: str | None = None) -> Subject:
    """The authors' subject folder (``repr.npz`` + ``reference.pth``, or ``reference.png``) -> :class:`Subject`.

    Template, head-motion mean (incl. scale) and shoulder mean are kept in float64 exactly as stored; the
    reference image is ``reference.pth``'s (preferred when both exist). ``name`` defaults to the folder name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AuthorsSubjectError(f"subject folder not found: {folder}")
    means = read_repr_npz(folder / REPR_FILE)
    reference = next((folder / n for n in REFERENCE_FILES if (folder / n).is_file()), None)
    if reference is None:
        raise AuthorsSubjectError(f"{folder}: no reference image; expected one of {', '.join(REFERENCE_FILES)} "
                                  f"beside repr.npz (the authors ship reference.pth)")
    image = read_reference_pth(reference) if reference.suffix == ".pth" else read_reference_image(reference)
    return Subject(reference_image=torch.from_numpy(image), template=torch.from_numpy(means["template"]),
                   mean_head_pose=torch.from_numpy(means["headmotion"]),
                   mean_torso=torch.from_numpy(means["shoulder"]), means_float64=True,
                   name=folder.resolve().name if name is None else name)
