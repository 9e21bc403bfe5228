"""Small file helpers shared by every writer in moda_core."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def temp_beside(path: str | os.PathLike) -> str:
    """A new empty temporary file in ``path``'s folder (same file system, so :func:`commit` is a rename)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    return tmp


def commit(tmp: str, path: str | os.PathLike) -> Path:
    """Give ``tmp`` the usual file mode (mkstemp makes 0600) and rename it to ``path``."""
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)
    return Path(path)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A failure or interrupt leaves no file (old or half-written) under the final name.
    """
    tmp = temp_beside(path)
    try:
        write(tmp)
        return commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
