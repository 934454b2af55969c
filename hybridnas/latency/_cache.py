"""SQLite cache of latency figures, keyed by architecture id + settings.

One small table; every call opens its own short-lived connection, so a cache
object can be pickled into Ray workers or forked processes, and WAL mode plus
a busy timeout let several processes read and write the same file at once.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Iterator

from ..errors import UserError
from ._measure import KEY_SETTINGS, LatencyResult, settings_key

__all__ = ["LatencyCache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latency (
    arch_id TEXT NOT NULL,
    settings_key TEXT NOT NULL,
    median_ms REAL NOT NULL,
    p10_ms REAL NOT NULL,
    p90_ms REAL NOT NULL,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (arch_id, settings_key)
)
"""


class LatencyCache:
    """``LatencyCache(path)``: ``get(arch_id, settings)`` returns a cached
    ``LatencyResult`` or ``None``; ``put(arch_id, result)`` stores one.

    ``settings`` is a dict with (at least) the keys in ``KEY_SETTINGS``
    (device, device_name, backend, batch_size, resolution, in_chans,
    num_classes, threads, dtype); other keys are ignored for matching, so a
    figure measured with more repeats still answers a later query.
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0):
        self.path = os.fspath(path)
        self.timeout_s = timeout_s
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            with self._connect() as con:
                con.execute(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as e:
            raise UserError(f"latency cache {self.path}: cannot open ({e})") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        con.execute("PRAGMA busy_timeout = %d" % int(self.timeout_s * 1000))
        # WAL: readers never block the one writer; journal mode sticks to the
        # file. Switching a new file to WAL needs it to itself and answers
        # "database is locked" at once (no busy wait) while another process
        # opens it, so several trials opening a fresh cache together retry.
        deadline = time.monotonic() + self.timeout_s
        delay = 0.005
        while True:
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                return con
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                    con.close()
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def __getstate__(self) -> dict:
        return {"path": self.path, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def get(self, arch_id: str, settings: dict) -> LatencyResult | None:
        key = settings_key(settings)
        con = self._connect()
        try:
            row = con.execute("SELECT median_ms, p10_ms, p90_ms, settings FROM latency "
                              "WHERE arch_id = ? AND settings_key = ?", (arch_id, key)).fetchone()
        finally:
            con.close()
        if row is None:
            return None
        stored = json.loads(row[3])
        stored["cached"] = True
        return LatencyResult(row[0], row[1], row[2], stored)

    def put(self, arch_id: str, result: LatencyResult) -> None:
        missing = [k for k in KEY_SETTINGS if k not in result.settings]
        if missing:
            raise ValueError(f"latency result settings lack {missing}")
        settings = {k: v for k, v in result.settings.items() if k != "cached"}
        con = self._connect()
        try:
            con.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (arch_id, settings_key(settings), result.median_ms, result.p10_ms,
                         result.p90_ms, json.dumps(settings, sort_keys=True), time.time()))
        finally:
            con.close()

    def __len__(self) -> int:
        con = self._connect()
        try:
            return int(con.execute("SELECT COUNT(*) FROM latency").fetchone()[0])
        finally:
            con.close()

    def items(self) -> Iterator[tuple[str, LatencyResult]]:
        """Every cached (arch_id, result), oldest first."""
        con = self._connect()
        try:
            rows = con.execute("SELECT arch_id, median_ms, p10_ms, p90_ms, settings FROM latency "
                               "ORDER BY created_at").fetchall()
        finally:
            con.close()
        for arch_id, med, p10, p90, settings in rows:
            yield arch_id, LatencyResult(med, p10, p90, json.loads(settings))
