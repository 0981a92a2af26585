"""Container records in SQLite (WAL): one row per container, its document as JSON.

The name column is UNIQUE: two creates racing for one name cannot both win, and a
crash leaves either the whole record or none of it. A new container is synced to disk
before create answers; later changes of state (running, exited, removed) are written
at once but synced lazily (WAL, synchronous=NORMAL): they survive palletd being killed,
and after a host crash every container is stopped anyway, whatever its record said.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from pallet.errors import Conflict

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,     -- without the leading "/"
    doc TEXT NOT NULL              -- the container's record, JSON
);
"""


class ContainerDB:
    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._sync = "FULL"

    def _durable(self, on: bool) -> None:
        want = "FULL" if on else "NORMAL"
        if want != self._sync:
            self._conn.execute(f"PRAGMA synchronous={want}")
            self._sync = want

    def insert(self, cid: str, name: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._durable(True)
            try:
                self._conn.execute("INSERT INTO containers VALUES (?,?,?)",
                                   (cid, name, json.dumps(doc)))
            except sqlite3.IntegrityError:
                row = self._conn.execute("SELECT id FROM containers WHERE name = ?",
                                         (name,)).fetchone()
                raise Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container '
                    f'"{row[0] if row else "?"}". You have to remove (or rename) that '
                    "container to be able to reuse that name.", op="create", obj=name,
                ) from None

    def update(self, cid: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._durable(False)
            self._conn.execute("UPDATE containers SET doc = ? WHERE id = ?",
                               (json.dumps(doc), cid))

    def rename(self, cid: str, name: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._durable(True)
            try:
                self._conn.execute("UPDATE containers SET name = ?, doc = ? WHERE id = ?",
                                   (name, json.dumps(doc), cid))
            except sqlite3.IntegrityError:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use',
                               op="rename", obj=name) from None

    def delete(self, cid: str) -> None:
        with self._lock:
            self._durable(False)
            self._conn.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT doc FROM containers").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self._conn.close()
