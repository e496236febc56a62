"""Background writes: ``record_usage`` appends to this process's journal and returns; a
writer thread commits the journal to the database in batches.

What survives what:

* the process killed (``kill -9``, OOM): every row ``record_usage`` returned is in the
  journal file (written to the operating system before returning); the next process of
  the app to start replays journals whose process is gone (idempotent by ``run_id``);
* the database down or stalled: the writer backs off and retries; a batch it cannot write
  goes to the spool, which it replays once the database answers again;
* the machine losing power: rows the OS had not yet written to disk are lost, unless
  ``LLM_TRACKER_JOURNAL_FSYNC`` is set (an ``fsync`` per row, which costs the caller the
  disk's flush latency).

Each process has its own journal (``journal-<host>-<pid>-<random>.jsonl`` in the journal
folder), held under ``flock`` while it lives; a journal whose lock can be taken belongs
to a dead process. After ``fork`` (gunicorn's workers) the child starts its own writer
and journal; the parent's rows stay the parent's.
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import logging
import mmap
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import Connection, Engine

from . import alerts, budgets
from .database import db, timed_engine
from .recording import (
    Spool,
    encode_row,
    get_spool,
    insert_rows,
    is_outage,
    keep_rows,
)

logger = logging.getLogger("llm_tracker")

WRITE_MODES = ("background", "sync")
# A journal segment's size (a row is about 1 kB); a full one is closed, and deleted once
# its rows are committed.
SEGMENT_BYTES = 8 * 1024 * 1024
_MAX_BACKOFF_S = 5.0
_WRITERS: dict[int, BackgroundWriter] = {}  # id(app) -> this process's writer for it
_REGISTRY_LOCK = threading.Lock()


def journal_dir(app: Flask) -> str:
    """The folder of ``app``'s journals, under ``LLM_TRACKER_INSTANCE_PATH``."""
    return os.path.join(
        app.config.get("LLM_TRACKER_INSTANCE_PATH") or app.instance_path, "llm_tracker_journal"
    )


class _Segment:
    """One journal file of this process, locked for as long as the process lives.

    Rows are copied into a shared memory map of the file, not written with ``write()``:
    the copy lands in the operating system's page cache, so a killed process loses
    nothing, and it makes no system call. A system call releases the GIL, and a caller
    thread that releases it waits for another thread to give it back (up to Python's
    5 ms switch interval): with a few busy threads, a write per call cost every call
    about a millisecond. The file's space is reserved up front (``posix_fallocate``), so a
    full disk fails the segment's creation, never a copy into the map.
    """

    def __init__(self, directory: str, last_seq: int, size: int) -> None:
        os.makedirs(directory, exist_ok=True)
        name = f"journal-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = os.path.join(directory, name)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            os.posix_fallocate(self.fd, 0, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            os.unlink(self.path)
            raise
        self.size = size
        self.offset = 0  # bytes used; the rest of the file is NUL, which readers stop at
        self.rows = 0
        self.last_seq = last_seq

    def fits(self, data: bytes) -> bool:
        return self.offset + len(data) <= self.size

    def append(self, data: bytes, fsync: bool) -> None:
        end = self.offset + len(data)
        self.map[self.offset : end] = data
        if fsync:
            # msync of the pages just written (from a page boundary).
            start = self.offset - self.offset % mmap.PAGESIZE
            self.map.flush(start, end - start)
        self.offset = end
        self.rows += 1

    def empty(self) -> None:
        """Forget rows that are all committed (NUL again, so no reader replays them)."""
        self.map[0:1] = b"\0"  # first: a process killed meanwhile leaves no row to replay
        self.map[: self.offset] = bytes(self.offset)
        self.offset = 0
        self.rows = 0

    def abandon(self) -> None:
        """Release this process's handles without touching the file (a forked child)."""
        self.map.close()
        os.close(self.fd)

    def close(self, delete: bool) -> None:
        self.map.close()
        if not delete:
            os.ftruncate(self.fd, self.offset)  # what is left for the next process, unpadded
        os.close(self.fd)
        if delete:
            for path in (self.path, self.path + ".lock"):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


class BackgroundWriter:
    """This process's journal and writer thread for one app."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.pid = os.getpid()
        config = app.config
        self.interval = max(int(config.get("LLM_TRACKER_FLUSH_INTERVAL_MS", 100)), 1) / 1000
        self.batch_size = max(int(config.get("LLM_TRACKER_BATCH_SIZE", 500)), 1)
        self.fsync = bool(config.get("LLM_TRACKER_JOURNAL_FSYNC", False))
        self.timeout_s = float(config.get("LLM_TRACKER_WRITER_TIMEOUT_S", 10))
        self.directory = journal_dir(app)
        self._cond = threading.Condition()
        # (sequence number, row, its journal line): the line is the PostgreSQL insert's too.
        self._queue: deque[tuple[int, Mapping[str, Any], str]] = deque()
        self._segments: list[_Segment] = []
        self._recorded = 0  # rows recorded (the sequence number of the last one)
        self._done = 0  # every row up to this sequence number is committed or kept
        self._written = 0  # rows committed by this writer
        self._flushing = 0  # flush() calls waiting
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._backoff = 0.0
        self._closing = False

    # --- the caller's side ---------------------------------------------------------

    def record(self, values: Mapping[str, Any]) -> None:
        """Journal one row (durable once this returns) and queue it for the writer."""
        line = encode_row(values)
        data = (line + "\n").encode()
        with self._cond:
            segment = self._segment(data)
            segment.append(data, self.fsync)
            self._recorded += 1
            segment.last_seq = self._recorded
            self._queue.append((self._recorded, values, line))
            if len(self._queue) == self.batch_size and not self._backoff:
                # Once, as the batch fills: a writer backing off (or busy) is not woken by
                # every call, which would have it take the GIL from the callers each time.
                self._cond.notify_all()
            if self._thread is None:
                self._start()

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every row recorded so far is committed (or spooled); rows written."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, before = self._recorded, self._written
            if self._done >= target:
                return 0
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
            return self._written - before

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the writer thread and release its connection and journal."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            for segment in self._segments:
                segment.close(delete=self._done == self._recorded)
            self._segments.clear()
        if self._engine is not None and self._engine is not db.engine:
            self._engine.dispose()
        self._engine = None

    def pending(self) -> int:
        """Rows recorded but not yet committed or kept."""
        with self._cond:
            return self._recorded - self._done

    def _segment(self, data: bytes) -> _Segment:
        # Called with the lock held: the segment ``data`` goes to.
        current = self._segments[-1] if self._segments else None
        if current is None or not current.fits(data):
            size = max(SEGMENT_BYTES, -(-(len(data)) // mmap.PAGESIZE) * mmap.PAGESIZE)
            current = _Segment(self.directory, self._recorded, size)
            self._segments.append(current)
        return current

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llm_tracker-writer", daemon=True)
        self._thread.start()

    # --- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        with self.app.app_context():
            try:
                replay_orphans(self.app)
            except Exception:
                logger.exception("llm_tracker: could not replay the journals of dead processes")
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._write(batch)
                except Exception:  # never let the thread die with rows waiting
                    logger.exception("llm_tracker: the writer failed on a batch")

    def _next_batch(self) -> list[tuple[int, Mapping[str, Any], str]] | None:
        with self._cond:
            waited_since = time.monotonic()
            while True:
                if self._closing and not self._queue:
                    return None
                if self._flushing and self._backoff:
                    self._backoff = 0.0  # a flush does not wait out a back-off: try now
                waited = time.monotonic() - waited_since
                if self._backoff:
                    # However full the queue: the database is down, and hammering it helps no one.
                    wait = self._backoff - waited
                    ready = wait <= 0
                else:
                    wait = self.interval - waited
                    ready = (
                        wait <= 0
                        or len(self._queue) >= self.batch_size
                        or bool(self._flushing)
                        or self._closing
                    )
                if ready and self._queue:
                    break
                self._cond.wait(max(wait, 0.001) if self._queue else None)
            return [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]

    def _write(self, batch: list[tuple[int, Mapping[str, Any], str]]) -> None:
        rows = [values for _seq, values, _line in batch]
        lines = [line for _seq, _values, line in batch]
        written = 0
        try:
            written = self._commit(rows, lines)
            self._backoff = 0.0
        except Exception as exc:
            # An outage (_commit isolates data errors itself): the batch is kept in the spool
            # (durable, replayed once the database answers), so the journal can advance and
            # memory stays flat however long the outage lasts.
            keep_rows(self.app, rows, exc, lines)
            self._backoff = min(max(self._backoff * 2, 0.1), _MAX_BACKOFF_S)
            if self._engine is not None and self._engine is not db.engine:
                self._engine.dispose()  # the next try connects afresh, within connect_timeout
        else:
            if os.path.exists(get_spool(self.app).path):
                try:
                    self._replay_spool()
                except Exception:
                    logger.exception("llm_tracker: could not replay the spool")
        with self._cond:
            self._written += written
            self._done = batch[-1][0]
            self._retire_segments()
            self._cond.notify_all()

    def _commit(self, rows: list[Mapping[str, Any]], lines: list[str]) -> int:
        # One transaction; a batch the database refuses for its data is split until the
        # refused row stands alone, which is dead-lettered. Outages propagate.
        try:
            with self.engine().connect() as conn, _deadline(conn, self.timeout_s):
                with budgets.transaction(conn, self.app):
                    return insert_rows(conn, rows, lines)
        except Exception as exc:
            if is_outage(exc):
                raise
            if len(rows) == 1:
                keep_rows(self.app, rows, exc)
                return 0
            half = len(rows) // 2
            return self._commit(rows[:half], lines[:half]) + self._commit(rows[half:], lines[half:])

    def _replay_spool(self) -> None:
        result = get_spool(self.app).replay(engine=self.engine())
        if result.written or result.dead:
            logger.warning(
                "llm_tracker: the database is back: %d spooled row(s) written, %d dead-lettered",
                result.written,
                result.dead,
            )

    def _retire_segments(self) -> None:
        # Called with the lock held: segments whose rows are all committed are deleted; the
        # current one is emptied when everything is.
        while len(self._segments) > 1 and self._segments[0].last_seq <= self._done:
            self._segments.pop(0).close(delete=True)
        if self._segments and self._done == self._recorded and self._segments[-1].rows:
            self._segments[-1].empty()

    def engine(self) -> Engine:
        """The writer's own engine: the app's database with connect and statement timeouts,
        so a stalled database holds the writer (never a caller) for a bounded time."""
        if self._engine is None:
            self._engine = writer_engine(self.app)
        return self._engine


def writer_engine(app: Flask) -> Engine:
    """An engine on ``app``'s database with the writer's timeouts."""
    return timed_engine(app)


@contextmanager
def _deadline(conn: Connection, timeout_s: float) -> Iterator[None]:
    """Shut the connection's socket down if the block outlasts ``timeout_s``.

    ``statement_timeout`` needs a server that answers and ``tcp_user_timeout`` a peer that
    stops acknowledging; a stalled server or pooler that acknowledges and never replies
    would hold the writer forever. A shut-down socket makes the driver's wait fail at once.
    """
    dbapi = conn.connection.driver_connection
    pgconn = getattr(dbapi, "pgconn", None)
    if pgconn is None:  # SQLite: its busy timeout bounds every wait
        yield
        return
    sock = socket.socket(fileno=os.dup(pgconn.socket))  # ours to close, whatever happens
    timer = threading.Timer(timeout_s, _shut_down, (sock,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        sock.close()


def _shut_down(sock: socket.socket) -> None:
    logger.warning("llm_tracker: the database did not answer the writer in time; giving up")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def replay_orphans(app: Flask) -> int:
    """Write the rows of journals left by dead processes; how many were written."""
    written = 0
    for path in sorted(glob.glob(os.path.join(journal_dir(app), "journal-*.jsonl"))):
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            _trim(path)
            result = Spool(path, get_spool(app).dead.path).replay()
            written += result.written
            if result.error is None and os.path.getsize(path) == 0:
                for stale in (path, path + ".lock"):
                    try:
                        os.unlink(stale)
                    except FileNotFoundError:
                        pass
            elif result.error is not None:
                logger.warning(
                    "llm_tracker: journal %s kept (%d row(s)): %s",
                    path,
                    result.remaining,
                    result.error,
                )
    if written:
        logger.warning(
            "llm_tracker: %d row(s) from the journals of dead processes written", written
        )
    return written


def _trim(path: str) -> None:
    # A journal's rows end at its first NUL: the rest is the unused part of the segment.
    # (A JSON line never holds a raw NUL: encode_row escapes it.)
    with open(path, "rb") as f:
        end = f.read().find(b"\0")
    if end >= 0:
        os.truncate(path, end)


def orphan_journals(app: Flask) -> list[str]:
    """Journals whose process is gone (their lock can be taken): rows ``replay`` will write."""
    found = []
    for path in sorted(glob.glob(os.path.join(journal_dir(app), "journal-*.jsonl"))):
        try:
            with open(path, encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                found.append(path)
        except (BlockingIOError, FileNotFoundError):
            continue
    return found


def writer_for(app: Flask) -> BackgroundWriter:
    """This process's writer for ``app`` (a forked child gets a new one)."""
    key = id(app)
    writer = _WRITERS.get(key)
    if writer is None or writer.pid != os.getpid():
        with _REGISTRY_LOCK:
            writer = _WRITERS.get(key)
            if writer is None or writer.pid != os.getpid():
                writer = _WRITERS[key] = BackgroundWriter(app)
    return writer


def close_writer(app: Flask, timeout: float | None = None) -> None:
    """Flush ``app``'s writer in this process and stop it, and release the budget checks'
    connections (an app shutting down)."""
    writer = _WRITERS.pop(id(app), None)
    if writer is not None and writer.pid == os.getpid():
        with app.app_context():
            writer.close(timeout)
    budgets.close(app)


def flush(timeout: float | None = None) -> int:
    """Block until every row this process recorded so far is committed or spooled.

    Returns how many rows were written to the database meanwhile. Runs at interpreter exit
    and at the end of every CLI command; tests call it instead of sleeping.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    written = 0
    for writer in list(_WRITERS.values()):
        if writer.pid != os.getpid():
            continue
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        written += writer.flush(left)
    # The budget alerts those rows fired: logged, and their webhooks delivered (or given up).
    alerts.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
    return written


def _forget_parent_writers() -> None:
    # In a forked child the parent's writer threads do not exist; its rows and journal are
    # the parent's to write. The child starts its own on its first record. Its copies of
    # the parent's journal descriptors are closed: they share the parent's lock, and would
    # keep the parent's journal from being replayed after the parent died.
    for writer in _WRITERS.values():
        for segment in writer._segments:
            segment.abandon()
    _WRITERS.clear()


def _flush_at_exit() -> None:
    # Bounded: what a stalled database keeps from being committed stays in the journal,
    # which the next process replays.
    flush(timeout=EXIT_FLUSH_S)


EXIT_FLUSH_S = 30.0
os.register_at_fork(after_in_child=_forget_parent_writers)
atexit.register(_flush_at_exit)
