"""Small file helpers shared by the rooms."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Write ``path`` so that readers (a resuming search, a browser, another
    process) see the old file or the new one, never half of one.

    ``write(tmp)`` writes the content to a temporary path in the same folder;
    it is then renamed over ``path``. The temporary file gets the usual mode
    (some writers create owner-only files) and is removed if writing fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
