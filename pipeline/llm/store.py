"""The durable, append-only response store: every paid answer is written here before anything reads it.

One SQLite database (``OUT/responses/responses.sqlite``) in WAL mode with ``synchronous=FULL``: a commit
returns only once the row is on disk, several processes may share the file, and a SIGKILL loses at most the
request that was on the wire. Rows are only ever INSERTed:

- ``intents``    a request is about to be sent (written *before* sending, so a crash between send and store
                 is visible as an intent without a response);
- ``releases``   a sender is done with a key (answered or given up): with ``intents`` this lets two runs on
                 one store wait for each other's answer instead of buying it twice;
- ``responses``  the full raw HTTP body, the headers of interest, timing, status, error code;
- ``batch_uploads`` batch input files uploaded, written before the batch is created (a kill between the
                 two is then found again on the server instead of being paid twice);
- ``plans``      the exact request of each attempt of each prompt (its key, parameters and the messages
                 appended to the prompt: rejected answer and feedback), written before its intent. A resumed
                 run re-issues the latest plan of an attempt instead of rebuilding it, so a feedback text
                 that came out differently (or a re-budgeted window) can never make it buy the attempt again;
- ``facts``      what was learned about a server (a context window from its refusal, a response format it
                 does not support), so a resumed run does not pay to learn it again;
- ``batches``    OpenAI Batch API jobs we created (so a killed run resumes polling instead of resubmitting)
  and ``batch_events`` their closing events.

A request is never re-sent while an ``ok`` response for its key is stored.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "responses.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intents(
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_key TEXT NOT NULL, record_id TEXT, attempt INTEGER,
    mode TEXT, pid INTEGER, created_at REAL, request TEXT, owner TEXT);
CREATE INDEX IF NOT EXISTS intents_key ON intents(request_key);
CREATE TABLE IF NOT EXISTS responses(
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_key TEXT NOT NULL, ok INTEGER NOT NULL,
    http_status INTEGER, body TEXT, headers TEXT, latency_s REAL, created_at REAL, provider TEXT,
    model TEXT, batch_id TEXT, error_code TEXT, error_message TEXT, pid INTEGER);
CREATE INDEX IF NOT EXISTS responses_key ON responses(request_key, ok);
CREATE TABLE IF NOT EXISTS batches(
    batch_id TEXT PRIMARY KEY, input_file_id TEXT, request_keys TEXT, created_at REAL, pid INTEGER);
CREATE TABLE IF NOT EXISTS releases(
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_key TEXT NOT NULL, owner TEXT, created_at REAL);
CREATE INDEX IF NOT EXISTS releases_key ON releases(request_key, owner);
CREATE TABLE IF NOT EXISTS batch_uploads(
    file_id TEXT PRIMARY KEY, request_keys TEXT, created_at REAL, pid INTEGER);
CREATE TABLE IF NOT EXISTS plans(
    id INTEGER PRIMARY KEY AUTOINCREMENT, chain TEXT NOT NULL, attempt INTEGER NOT NULL,
    request_key TEXT NOT NULL, params TEXT, extra TEXT, created_at REAL, pid INTEGER);
CREATE INDEX IF NOT EXISTS plans_chain ON plans(chain, attempt);
CREATE TABLE IF NOT EXISTS facts(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, value TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS batch_events(
    id INTEGER PRIMARY KEY AUTOINCREMENT, batch_id TEXT NOT NULL, status TEXT, data TEXT, created_at REAL);
"""


@dataclass(frozen=True)
class StoredResponse:
    """One row of ``responses``: a raw answer (or a recorded failure) for one request key."""

    request_key: str
    ok: bool
    http_status: int | None
    body: str | None                      # the raw response body exactly as received
    headers: dict[str, str]
    latency_s: float | None
    provider: str
    model: str
    batch_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    id: int | None = None

    def json(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.body) if self.body else None
        except json.JSONDecodeError:
            return None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


OPEN_TIMEOUT_S = 60.0  # how long opening a store (or any statement on it) waits for another process's lock


def _enable_wal(db: sqlite3.Connection, timeout_s: float = OPEN_TIMEOUT_S) -> None:
    """Put the store in WAL mode, waiting for another process that opens it at the same moment.

    Switching a new database file to WAL needs its exclusive lock, and SQLite answers "database is locked" at once
    there instead of calling the busy handler (two workers opening a fresh store together: one of them died on it,
    in 22 of 30 tries of two processes started at once). Retried until ``timeout_s``, as the busy handler would."""
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError(f"could not put the response store in WAL mode within {timeout_s:g} s "
                                           "(another process holds its lock)")
        time.sleep(pause)
        pause = min(0.2, pause * 2)


class ResponseStore:
    """Append-only SQLite store of LLM responses, keyed by ``pipeline.llm.hashing.request_key``."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        # isolation_level=None: autocommit, every INSERT is its own durable transaction.
        self._db = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        _enable_wal(self._db)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        try:  # stores created before intents had an owner
            self._db.execute("ALTER TABLE intents ADD COLUMN owner TEXT")
        except sqlite3.OperationalError:
            pass
        self.owner = f"{os.getpid()}:{uuid.uuid4().hex[:12]}"  # this store handle, as a sender
        self._tx = threading.Lock()
        # Durable commits wait for fsync (~4 ms here). Async callers hand them to one writer thread so the
        # event loop keeps serving other requests meanwhile; one thread keeps the writes in order.
        # (sqlite3.threadsafety == 3: the connection may be shared across threads.)
        self._writer: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="response-store")
        return self._writer

    async def arecord_intent(self, *args, **kwargs) -> None:
        """:meth:`record_intent` without blocking the event loop; returns once durable."""
        await asyncio.get_running_loop().run_in_executor(self._executor(), lambda: self.record_intent(*args, **kwargs))

    async def aclaim(self, *args, **kwargs) -> str | None:
        """:meth:`claim` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), lambda: self.claim(*args, **kwargs))

    async def arelease(self, request_key: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor(), self.release, request_key)

    async def aput(self, r: StoredResponse) -> int:
        """:meth:`put` without blocking the event loop; returns once durable."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), self.put, r)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self._db.close()

    def __enter__(self) -> ResponseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writes (INSERT only) -------------------------------------------------------------------------
    def record_intent(self, request_key: str, record_id: str | None, attempt: int | None, mode: str,
                      request: dict[str, Any] | None = None) -> None:
        """Note that ``request_key`` is about to be sent (``mode`` = 'sync' | 'batch')."""
        self._db.execute(
            "INSERT INTO intents(request_key, record_id, attempt, mode, pid, created_at, request, owner) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (request_key, record_id, attempt, mode, os.getpid(), time.time(),
             json.dumps(request, sort_keys=True) if request is not None else None, self.owner))

    def claim(self, request_key: str, record_id: str | None, attempt: int | None, mode: str,
              request: dict[str, Any] | None = None, lease_s: float = 900.0,
              plan: tuple[str, int, dict[str, Any], dict[str, Any]] | None = None) -> str | None:
        """Record the intent to send ``request_key`` unless another live sender holds it.

        Atomic across processes (``BEGIN IMMEDIATE``). Returns None when claimed (intent recorded), else the
        holder: a different store handle whose process is alive, whose intent is younger than ``lease_s`` and
        which has neither released the key nor stored an ok answer for it. ``plan`` (chain, attempt, params,
        extra) is recorded in the same transaction (one durable commit, not two).
        """
        with self._tx:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                holder = self._holder(request_key, lease_s)
                if holder is None:
                    if plan is not None:
                        self.record_plan(plan[0], plan[1], request_key, plan[2], plan[3])
                    self.record_intent(request_key, record_id, attempt, mode, request)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return holder

    def _holder(self, request_key: str, lease_s: float) -> str | None:
        if self._db.execute("SELECT 1 FROM responses WHERE request_key=? AND ok=1 LIMIT 1",
                            (request_key,)).fetchone():
            return None  # answered: the caller will find it
        rows = self._db.execute(
            "SELECT i.owner, i.pid, i.created_at FROM intents i WHERE i.request_key=? AND i.mode='sync' "
            "AND i.owner IS NOT NULL AND i.owner != ? AND i.created_at > ? AND NOT EXISTS (SELECT 1 FROM releases r "
            "WHERE r.request_key=i.request_key AND r.owner=i.owner AND r.created_at >= i.created_at)",
            (request_key, self.owner, time.time() - lease_s)).fetchall()
        for owner, pid, _ in rows:
            if _pid_alive(pid):
                return owner
        return None

    def release(self, request_key: str) -> None:
        """This handle is done with ``request_key`` (answered, failed for good, or abandoned)."""
        self._db.execute("INSERT INTO releases(request_key, owner, created_at) VALUES (?,?,?)",
                         (request_key, self.owner, time.time()))

    def put(self, r: StoredResponse) -> int:
        """Append one response row; returns its id. Durable when this returns (WAL + synchronous=FULL)."""
        cur = self._db.execute(
            "INSERT INTO responses(request_key, ok, http_status, body, headers, latency_s, created_at, "
            "provider, model, batch_id, error_code, error_message, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.request_key, int(r.ok), r.http_status, r.body, json.dumps(r.headers), r.latency_s, time.time(),
             r.provider, r.model, r.batch_id, r.error_code, r.error_message, os.getpid()))
        return int(cur.lastrowid)

    def record_plan(self, chain: str, attempt: int, request_key: str, params: dict[str, Any],
                    extra: dict[str, Any]) -> None:
        """The exact request of ``attempt`` of prompt ``chain`` (before its intent; durable on return)."""
        self._db.execute("INSERT INTO plans(chain, attempt, request_key, params, extra, created_at, pid) "
                         "VALUES (?,?,?,?,?,?,?)",
                         (chain, attempt, request_key, json.dumps(params, sort_keys=True),
                          json.dumps(extra, sort_keys=True, ensure_ascii=False), time.time(), os.getpid()))

    async def arecord_plan(self, *args, **kwargs) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor(), lambda: self.record_plan(*args, **kwargs))

    def latest_plan(self, chain: str, attempt: int) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        """(request key, params, extra) of the last plan recorded for ``attempt`` of ``chain``."""
        row = self._db.execute("SELECT request_key, params, extra FROM plans WHERE chain=? AND attempt=? "
                               "ORDER BY id DESC LIMIT 1", (chain, attempt)).fetchone()
        return (row[0], json.loads(row[1] or "{}"), json.loads(row[2] or "{}")) if row else None

    def record_fact(self, name: str, value: Any) -> None:
        with self._tx:  # never inside another thread's open claim transaction on this connection
            self._db.execute("INSERT INTO facts(name, value, created_at) VALUES (?,?,?)",
                             (name, json.dumps(value), time.time()))

    def facts(self, prefix: str = "") -> dict[str, Any]:
        """The latest value of every fact whose name starts with ``prefix``."""
        out: dict[str, Any] = {}
        for name, value in self._db.execute("SELECT name, value FROM facts ORDER BY id"):
            if name.startswith(prefix):
                out[name] = json.loads(value)
        return out

    def add_upload(self, file_id: str, request_keys: list[str]) -> None:
        self._db.execute("INSERT INTO batch_uploads(file_id, request_keys, created_at, pid) VALUES (?,?,?,?)",
                         (file_id, json.dumps(request_keys), time.time(), os.getpid()))

    def orphan_uploads(self) -> list[tuple[str, list[str]]]:
        """(file_id, keys) of uploads with no batch recorded: the process died around ``batches.create``."""
        rows = self._db.execute(
            "SELECT u.file_id, u.request_keys FROM batch_uploads u WHERE NOT EXISTS "
            "(SELECT 1 FROM batches b WHERE b.input_file_id=u.file_id) ORDER BY u.created_at").fetchall()
        return [(f, json.loads(k)) for f, k in rows]

    def add_batch(self, batch_id: str, input_file_id: str, request_keys: list[str]) -> None:
        self._db.execute("INSERT INTO batches(batch_id, input_file_id, request_keys, created_at, pid) "
                         "VALUES (?,?,?,?,?)",
                         (batch_id, input_file_id, json.dumps(request_keys), time.time(), os.getpid()))

    def close_batch(self, batch_id: str, status: str, data: dict[str, Any] | None = None) -> None:
        self._db.execute("INSERT INTO batch_events(batch_id, status, data, created_at) VALUES (?,?,?,?)",
                         (batch_id, status, json.dumps(data or {}), time.time()))

    # --- reads ----------------------------------------------------------------------------------------
    @staticmethod
    def _row(row: tuple) -> StoredResponse:
        (id_, key, ok, status, body, headers, latency, provider, model, batch_id, code, msg) = row
        return StoredResponse(key, bool(ok), status, body, json.loads(headers or "{}"), latency, provider,
                              model, batch_id, code, msg, id_)

    _COLS = ("id, request_key, ok, http_status, body, headers, latency_s, provider, model, batch_id, "
             "error_code, error_message")

    def get_ok(self, request_key: str) -> StoredResponse | None:
        """The first stored successful response for ``request_key`` (the one that was paid first)."""
        row = self._db.execute(f"SELECT {self._COLS} FROM responses WHERE request_key=? AND ok=1 "
                               "ORDER BY id LIMIT 1", (request_key,)).fetchone()
        return self._row(row) if row else None

    def responses(self, request_key: str | None = None) -> list[StoredResponse]:
        if request_key is None:
            rows = self._db.execute(f"SELECT {self._COLS} FROM responses ORDER BY id").fetchall()
        else:
            rows = self._db.execute(f"SELECT {self._COLS} FROM responses WHERE request_key=? ORDER BY id",
                                    (request_key,)).fetchall()
        return [self._row(r) for r in rows]

    def ok_keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT DISTINCT request_key FROM responses WHERE ok=1")}

    def lost_intents(self) -> list[str]:
        """Keys sent (intent recorded) in sync mode that never got any stored response: crash evidence."""
        rows = self._db.execute(
            "SELECT DISTINCT i.request_key FROM intents i WHERE i.mode='sync' AND NOT EXISTS "
            "(SELECT 1 FROM responses r WHERE r.request_key=i.request_key)").fetchall()
        return [k for (k,) in rows]

    def open_batches(self) -> list[tuple[str, list[str]]]:
        """(batch_id, request keys) of batches created but not yet closed (still to poll)."""
        rows = self._db.execute(
            "SELECT b.batch_id, b.request_keys FROM batches b WHERE NOT EXISTS "
            "(SELECT 1 FROM batch_events e WHERE e.batch_id=b.batch_id) ORDER BY b.created_at").fetchall()
        return [(bid, json.loads(keys)) for bid, keys in rows]

    def batch_ids(self) -> list[str]:
        return [b for (b,) in self._db.execute("SELECT batch_id FROM batches ORDER BY created_at")]
