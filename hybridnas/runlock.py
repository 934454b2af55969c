"""One writer per run directory, and a study URL that travels with the run.

``RunLock(run_dir)`` is an exclusive lock on a run directory, for a search
and for ``--resume``: a second process that tries to take it gets a
``RunLockError`` naming the holder's pid and host instead of sharing the
study (two writers lose each other's trials). The lock is an operating-system
file lock (the ``filelock`` package, ``fcntl.flock`` on POSIX), so the kernel
releases it when its process dies, even by ``kill -9``; the holder's pid and
host are recorded next to it, and a record left by a dead process is reported
as stale and replaced.

    >>> with RunLock("results/my-run"):          # doctest: +SKIP
    ...     run_the_search()

``portable_storage_url`` / ``resolve_storage_url`` store the SQLite study URL
of a run relative to its directory (``sqlite:///{run_dir}/study.db`` in
``config.yaml``), so that resuming a *copied* run directory writes into the
copy's study, never into the original's.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._io import write_atomic
from .errors import UserError

__all__ = ["RunLock", "RunLockError", "LockHolder", "read_holder", "portable_storage_url",
           "resolve_storage_url", "RUN_DIR_PLACEHOLDER"]

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock.holder.json"


class RunLockError(UserError):
    """The run directory is held by another process (named in the message)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a run's lock."""

    pid: int
    host: str
    since: str
    command: str = ""

    @classmethod
    def me(cls, command: str = "") -> "LockHolder":
        return cls(os.getpid(), socket.gethostname(),
                   _dt.datetime.now().astimezone().isoformat(timespec="seconds"), command)

    def alive(self) -> bool | None:
        """Whether the process still runs: None when it is on another host
        (no way to tell from here)."""
        if self.host != socket.gethostname():
            return None
        return _pid_alive(self.pid)

    def describe(self) -> str:
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on host {self.host}{what}, since {self.since}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return False
    return True


def read_holder(run_dir: str | os.PathLike) -> LockHolder | None:
    """The holder recorded in ``run_dir`` (None when none is, or the record is
    unreadable). The record says who took the lock last; ``RunLock`` says
    whether it is still held."""
    path = Path(run_dir) / HOLDER_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data.get("since", "?")),
                          str(data.get("command", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """Exclusive lock on the run directory ``run_dir`` (created if missing).

    ``acquire()`` returns at once: it takes the lock or raises
    ``RunLockError`` naming the holder. ``stale`` is the holder record of a
    process that died without releasing (now replaced), else None.
    ``command`` (e.g. ``"hybridnas search"``) is shown to whoever is refused.
    Use as a context manager, or call ``release()``.
    """

    def __init__(self, run_dir: str | os.PathLike, command: str = "") -> None:
        self.run_dir = Path(run_dir)
        self.command = command
        self.stale: LockHolder | None = None
        self._lock: Any = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self) -> "RunLock":
        from filelock import FileLock, Timeout

        if self._lock is not None:
            return self
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{self.run_dir}: cannot create the run directory "
                            f"({e.strerror or e})") from None
        lock = FileLock(str(self.run_dir / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RunLockError(self._refusal()) from None
        except OSError as e:
            raise UserError(f"{self.run_dir / LOCK_NAME}: cannot lock the run directory "
                            f"({e.strerror or e})") from None
        previous = read_holder(self.run_dir)
        if previous is not None and previous.alive() is False:
            self.stale = previous  # its process died holding it: the kernel freed the lock
        try:
            write_atomic(self.run_dir / HOLDER_NAME, lambda p: p.write_text(
                json.dumps(asdict(LockHolder.me(self.command))), encoding="utf-8"))
        except OSError as e:
            lock.release()
            raise UserError(f"{self.run_dir}: cannot write in the run directory "
                            f"({e.strerror or e})") from None
        self._lock = lock
        return self

    def _refusal(self) -> str:
        holder = read_holder(self.run_dir)
        if holder is None or holder.alive() is False:  # the new holder has not written yet
            who = "another process (not yet recorded)"
        else:
            who = holder.describe()
        return (f"{self.run_dir} is in use by {who}: one process writes a run at a time; "
                f"wait for it to finish or stop it, then resume")

    def release(self) -> None:
        """Give the lock up (the holder record goes with it)."""
        if self._lock is None:
            return
        holder = read_holder(self.run_dir)
        if holder is not None and holder.pid == os.getpid():
            try:
                (self.run_dir / HOLDER_NAME).unlink()
            except OSError:
                pass
        self._lock.release()
        self._lock = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------
# A study URL that travels with the run directory
# --------------------------------------------------------------------------

#: Stands for the run directory in a stored SQLite URL.
RUN_DIR_PLACEHOLDER = "{run_dir}"
_SQLITE = "sqlite:///"


def _sqlite_path(url: str) -> tuple[str, str] | None:
    """(file path, ``?query`` suffix) of a SQLite file URL, else None."""
    if not url.startswith(_SQLITE):
        return None
    rest = url[len(_SQLITE):]
    path, sep, query = rest.partition("?")
    if not path or path == ":memory:":
        return None
    return path, sep + query


def portable_storage_url(url: str, run_dir: str | os.PathLike) -> str:
    """The form of ``url`` to write into the run's config.yaml: a SQLite file
    inside ``run_dir`` becomes ``sqlite:///{run_dir}/<relative path>``; any
    other URL (PostgreSQL, a SQLite file elsewhere) is returned unchanged."""
    parsed = _sqlite_path(url)
    if parsed is None or parsed[0].startswith(RUN_DIR_PLACEHOLDER):
        return url
    path, query = parsed
    run = Path(run_dir).resolve()
    try:
        rel = Path(path).resolve().relative_to(run)
    except ValueError:
        return url
    return f"{_SQLITE}{RUN_DIR_PLACEHOLDER}/{rel.as_posix()}{query}"


def resolve_storage_url(url: str, run_dir: str | os.PathLike) -> str:
    """The URL to open for a run in ``run_dir``, from what config.yaml holds.

    ``sqlite:///{run_dir}/...`` points into ``run_dir`` wherever it now is.
    An absolute SQLite URL written before URLs were portable, whose file is
    ``<old place>/<this run's folder name>/<file>`` while ``run_dir`` holds
    a file of that name, is taken as a copy of that run: the copy's file is
    used, so the original is never written.
    """
    parsed = _sqlite_path(url)
    if parsed is None:
        return url
    path, query = parsed
    run = Path(run_dir).resolve()
    if path.startswith(RUN_DIR_PLACEHOLDER + "/"):
        return f"{_SQLITE}{run / path[len(RUN_DIR_PLACEHOLDER) + 1:]}{query}"
    old = Path(path)
    if (old.is_absolute() and old.parent.name == run.name and old.parent.resolve() != run
            and (run / old.name).is_file()):
        return f"{_SQLITE}{run / old.name}{query}"
    return url
