"""``record_usage``: the one write path, and the spool that keeps rows the database refused."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import Connection, Engine, String, Table, insert
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import configure_mappers

from . import budgets, rollup
from .database import as_utc, current_flask_app, db, utcnow
from .models import MONEY_COLUMNS, NO_USER, TOKEN_COLUMNS, LLMUsage
from .params import is_blank
from .pricing import get_pricer

logger = logging.getLogger("llm_tracker")

_TABLE: Table = LLMUsage.__table__  # type: ignore[assignment]
_MAPPER = LLMUsage.__mapper__
# Keyword arguments of record_usage beyond SPEC §1.2's named ones that map to columns.
_EXTRA_COLUMNS = frozenset(
    {
        "id",
        "run_id",
        "requested_model",
        "deployment",
        "node_name",
        "cache_write_tokens",
        "latency_ms",
        "source_type",
        "ttft_ms",
    }
)
# The counts a caller gives (the total is derived from two of them).
_TOKEN_FIELDS = tuple(name for name in TOKEN_COLUMNS if name != "total_tokens")


def record_usage(
    model: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    total_tokens: int | None = None,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    success: bool = True,
    error: str | None = None,
    user_id: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    provider: str | None = None,
    created_at: datetime | None = None,
    **extra: Any,
) -> LLMUsage:
    """Record one usage row, priced at its ``created_at``; returns the row.

    In background mode (``LLM_TRACKER_WRITE_MODE = "background"``, the default) the row is
    appended to this process's journal and committed by the writer thread within
    ``LLM_TRACKER_FLUSH_INTERVAL_MS`` (``flush()`` waits for it). In ``"sync"`` mode it is
    written in its own short transaction. Either way, a row the database cannot take goes
    (with its cost) to the durable spool (``flask spool replay`` writes it later): never
    lost.
    """
    unknown = set(extra) - _EXTRA_COLUMNS
    if unknown:
        raise TypeError(f"record_usage() got unexpected keyword argument(s): {sorted(unknown)}")
    if not model or not isinstance(model, str):
        raise ValueError("record_usage() needs a non-empty model name")
    values = _row_values(
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
        success=success,
        error=error,
        user_id=user_id,
        metadata=metadata,
        provider=provider,
        created_at=created_at,
        **extra,
    )
    app = _RECORDING_APP.get() or current_flask_app()
    values.update(get_pricer(app).price(values))
    if app.config.get("LLM_TRACKER_WRITE_MODE") == "background":
        writer.writer_for(app).record(values)
        return _as_model(values)
    try:
        with db.engine.connect() as conn, budgets.transaction(conn, app):
            if not insert_row(conn, values):
                logger.warning("llm_tracker: run %s was already recorded", values["run_id"])
    except Exception as exc:  # any failure to write must not lose the row
        keep_row(app, values, exc)
    return _as_model(values)


# The app a UsageHandler records for in background mode, where no app context is needed
# (the writer thread has its own): pushing one per call cost about a third of the call.
_RECORDING_APP: ContextVar[Flask | None] = ContextVar("llm_tracker_recording_app", default=None)


@contextmanager
def recording_for(app: Flask) -> Iterator[None]:
    """Inside the block, ``record_usage`` records for ``app`` (background mode only)."""
    token = _RECORDING_APP.set(app)
    try:
        yield
    finally:
        _RECORDING_APP.reset(token)


def keep_row(app: Flask, values: Mapping[str, Any], exc: BaseException) -> None:
    """Keep a row the database did not take (see ``keep_rows``)."""
    keep_rows(app, [values], exc)


def keep_rows(
    app: Flask,
    rows: Sequence[Mapping[str, Any]],
    exc: BaseException,
    lines: Sequence[str] | None = None,
) -> None:
    """Keep rows the database did not take: spooled after an outage, dead-lettered when the
    database refused their data (replaying them could only fail again). Logs which.
    ``lines`` are the rows' ``encode_row`` lines when the caller has them."""
    spool = get_spool(app)
    reason = None if is_outage(exc) else f"database refused the row: {describe_error(exc)}"
    try:
        if reason is None:
            spool.append_many(rows, lines)
        else:
            for values in rows:
                spool.dead.append(values, reason=reason)
    except OSError as io_exc:
        # The last place left is the log: the rows in full, so an operator can recover them.
        for values in rows:
            logger.error(
                "llm_tracker: database write failed (%s) and %s %s is not "
                "writable (%s); the row is only in this log line: %s",
                describe_error(exc),
                "the spool" if reason is None else "the dead-letter file",
                spool.path if reason is None else spool.dead.path,
                io_exc,
                encode_row(values),
            )
        return
    if reason is None:
        logger.warning(
            "llm_tracker: database write failed (%s); %s spooled to %s",
            describe_error(exc),
            "row" if len(rows) == 1 else f"{len(rows)} rows",
            spool.path,
        )
    else:
        logger.error(
            "llm_tracker: %s; row dead-lettered to %s (flask spool dead)", reason, spool.dead.path
        )


def _row_values(
    *,
    model: str,
    total_tokens: int | None,
    metadata: Mapping[str, Any] | None,
    created_at: datetime | None,
    **fields: Any,
) -> dict[str, Any]:
    values: dict[str, Any] = {k: v for k, v in fields.items()}
    for name in _TOKEN_FIELDS:
        values[name] = _count(name, values.get(name))
    values["total_tokens"] = (
        values["prompt_tokens"] + values["completion_tokens"]
        if total_tokens is None
        else _count("total_tokens", total_tokens)
    )
    meta = dict(metadata or {})
    node_name = values.get("node_name") or meta.get("node_name") or "unknown"
    meta["node_name"] = values["node_name"] = str(node_name)
    values["metadata"] = meta
    values["model"] = model
    values["success"] = bool(values["success"])
    values["created_at"] = utcnow() if created_at is None else as_utc(created_at)
    values["id"] = _uuid(values.get("id"))
    values["run_id"] = str(values.get("run_id") or values["id"])
    return normalise_row(values)


def _count(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if value > INT64_MAX:
        raise ValueError(f"{name} {value} does not fit a 64-bit count")
    return value


# --- values every column can hold -----------------------------------------------------

CUT_MARK = "…[cut]"
# error is TEXT (no length limit): this keeps a pathological message from bloating rows.
MAX_ERROR_CHARS = 10_000
INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1
_MAX_META_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")
# Bounded text columns and their lengths (model, node_name, provider...); run_id apart.
_TEXT_LIMITS = {
    col.key: col.type.length
    for col in _TABLE.c
    if isinstance(col.type, String) and col.type.length and col.key != "run_id"
}


_SOURCE_LIMIT = _TEXT_LIMITS["source_type"]


def clean_text(value: str, limit: int | None = None) -> str:
    """``value`` as every backend stores it: NUL and lone surrogates (which PostgreSQL and
    UTF-8 refuse) replaced by U+FFFD, and text over ``limit`` characters cut, ending in
    ``CUT_MARK`` so a reader sees it was cut."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if _SURROGATE.search(value):
        value = _SURROGATE.sub("\ufffd", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - len(CUT_MARK)] + CUT_MARK
    return value


def _clean_json(value: Any, depth: int = 0) -> Any:
    # JSON both backends take: string keys, no NUL or lone surrogate, no NaN/Infinity
    # (PostgreSQL's JSONB refuses them); anything else JSON can't hold is kept as text.
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_META_DEPTH:
        return clean_text(json.dumps(value, default=str)[:MAX_ERROR_CHARS])
    if isinstance(value, Mapping):
        return {clean_text(str(k)): _clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v, depth + 1) for v in value]
    return clean_text(str(value))


def _json_needs_cleaning(meta: Mapping[str, Any]) -> bool:
    try:
        text = json.dumps(meta, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return True
    return "\\u0000" in text or _SURROGATE.search(text) is not None


def _user_id(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"user_id must be an integer, got {value!r}")
    # NO_USER stands for "no user" in the rollups' NOT NULL key.
    if not NO_USER < value <= INT64_MAX:
        raise ValueError(f"user_id {value} does not fit a 64-bit id")
    return value


def normalise_row(values: dict[str, Any]) -> dict[str, Any]:
    """Make a row's values storable on every backend (in place; returns ``values``).

    Bounded text is cut with ``CUT_MARK``, NUL and lone surrogates replaced, metadata made
    plain JSON, ``latency_ms`` capped to its column; a user id or count that no 64-bit
    column holds raises ``ValueError`` (there is no value to store in its place).
    """
    for name, limit in _TEXT_LIMITS.items():
        text = values.get(name)
        if text is not None:
            values[name] = clean_text(text if isinstance(text, str) else str(text), limit)
    run_id = clean_text(str(values["run_id"]))
    if len(run_id) > 64:
        # Cut ids could collide; a digest keeps one row per run, idempotent on replay.
        run_id = "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()[:57]
    values["run_id"] = run_id
    if values.get("error") is not None:
        values["error"] = clean_text(str(values["error"]), MAX_ERROR_CHARS)
    meta = values.get("metadata") or {}
    if _json_needs_cleaning(meta):
        meta = _clean_json(dict(meta))
    if values.get("node_name") is not None:
        meta["node_name"] = values["node_name"]  # metadata always repeats the column
    # The column, else (rows spooled before it existed, or record_usage's metadata=) the
    # metadata's value; blank is none. Metadata repeats it, as the first release had it.
    source = values.get("source_type")
    if is_blank(source):
        source = meta.get("source_type")
    if is_blank(source):
        values["source_type"] = None
    else:
        values["source_type"] = meta["source_type"] = clean_text(str(source), _SOURCE_LIMIT)
    values["metadata"] = meta
    values["user_id"] = _user_id(values.get("user_id"))
    for name in (*_TOKEN_FIELDS, "total_tokens"):
        if name in values:
            values[name] = _count(name, values[name])
    for name in ("latency_ms", "ttft_ms"):
        if values.get(name) is not None:
            values[name] = min(_count(name, values[name]), _INT32_MAX)
    return values


def _uuid(value: Any) -> uuid.UUID:
    if value is None:
        # A version-4 UUID from the random module (reseeded from os.urandom at import and
        # in every forked child): uuid4()'s os.urandom call releases the GIL, and on the
        # caller's path every release can hand the GIL to the writer thread for a while.
        return uuid.UUID(int=random.getrandbits(128), version=4)
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_model(values: Mapping[str, Any]) -> LLMUsage:
    # Filled the way SQLAlchemy fills loaded rows: the constructor's per-attribute events
    # would cost more than the INSERT itself on the hot path.
    if not _MAPPER.configured:
        configure_mappers()
    row = _MAPPER.class_manager.new_instance()
    row.__dict__.update(values)
    row.__dict__["meta"] = row.__dict__.pop("metadata")
    return row


def _insert_statement(dialect: str) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(_TABLE).on_conflict_do_nothing(index_elements=["run_id"])
    return insert(_TABLE)


_INSERTS: dict[str, Any] = {}
# PostgreSQL binds every column in its one statement; the keys a caller left out are NULL.
_ALL_NONE = dict.fromkeys(rollup.raw_columns())


def insert_row(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Insert one row unless its ``run_id`` is already there, and add it to its rollup rows.

    Both happen in ``conn``'s transaction; True when the row was inserted. A duplicate
    ``run_id`` adds nothing to the rollup.
    """
    inserted = _insert_one(conn, values)
    budgets.apply_rows(conn, [values] if inserted else [])  # and the budgets it counts for
    return inserted


def _insert_one(conn: Connection, values: Mapping[str, Any]) -> bool:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # One round trip: the rollup upserts select from the INSERT's RETURNING, so they add
        # exactly the rows that were inserted (RETURNING, not rowcount: psycopg reports -1
        # for ON CONFLICT inserts).
        stmt = _INSERTS.get(dialect)
        if stmt is None:
            stmt = _INSERTS[dialect] = rollup.insert_with_rollup_statement(dialect)
        return conn.execute(stmt, {**_ALL_NONE, **values}).first() is not None
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        stmt = _INSERTS[dialect] = _insert_statement(dialect)
    if conn.execute(stmt, dict(values)).rowcount != 1:
        return False
    # The DBAPI connection itself (the same one, in the same transaction) with the rollup
    # values computed here: a few µs per upsert instead of SQLAlchemy's ~20 µs and a lookup
    # of the row just written. tests/test_rollup_rebuild.py checks it agrees with rebuild's
    # SQL to the byte.
    dbapi = conn.connection.driver_connection
    assert dbapi is not None  # a connection in a transaction has one
    for sql, params in rollup.sqlite_upserts(values):
        dbapi.execute(sql, params)
    return True


def insert_rows(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    lines: Sequence[str] | None = None,
) -> int:
    """Insert a batch of rows in one multi-row statement (run ids already stored are
    skipped) and add the inserted ones to their rollup rows, in ``conn``'s transaction.

    ``lines`` are the rows' ``encode_row`` lines when the caller has them (the journal's).
    Returns how many were inserted. The raw table is written first, as every writer does
    (see ``rollup.lock_writers``).
    """
    if not rows:
        return 0
    # A run id twice in the batch: the first row is the one inserted (and added to the
    # rollups), whichever order the database would have taken them in.
    firsts = {row["run_id"]: n for n, row in reversed(list(enumerate(rows)))}
    if len(firsts) < len(rows):
        keep = sorted(firsts.values())
        rows = [rows[n] for n in keep]
        lines = [lines[n] for n in keep] if lines else None
    if conn.dialect.name == "postgresql":
        # One parameter, the batch as a JSON array: a multi-VALUES insert of 500 rows binds
        # 12,000 placeholders, which psycopg rewrites and adapts one by one.
        payload = "[" + ",".join(lines or [encode_row(row) for row in rows]) + "]"
        inserted: set[str] = set(conn.exec_driver_sql(_pg_insert_sql(), (payload,)).scalars())
    else:
        stmt = _INSERT_MANY.get(conn.dialect.name)
        if stmt is None:
            stmt = _INSERT_MANY[conn.dialect.name] = (
                sqlite.insert(_TABLE)
                .on_conflict_do_nothing(index_elements=["run_id"])
                .returning(_TABLE.c.run_id)
            )
        inserted = set(conn.execute(stmt, [{**_ALL_NONE, **row} for row in rows]).scalars())
    added = [row for row in rows if row["run_id"] in inserted]
    rollup.add_rows(conn, added)
    budgets.apply_rows(conn, added)
    return len(added)


_INSERT_MANY: dict[str, Any] = {}


def _pg_insert_sql() -> str:
    sql = _INSERT_MANY.get("postgresql-json")
    if sql is None:
        dialect = postgresql.dialect()
        names = ", ".join(f'"{col.name}"' for col in _TABLE.c)
        types = ", ".join(f'"{col.name}" {col.type.compile(dialect=dialect)}' for col in _TABLE.c)
        sql = _INSERT_MANY["postgresql-json"] = (
            f'INSERT INTO "{_TABLE.name}" ({names}) '
            f"SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS r({types}) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id"
        )
    return sql


# --- the spool and the dead letters ---------------------------------------------------


def encode_row(values: Mapping[str, Any]) -> str:
    """One row as a JSON line (money as decimal strings: JSON numbers are floats)."""
    row = dict(values)
    row["id"] = str(row["id"])
    row["created_at"] = row["created_at"].isoformat()
    for name in MONEY_COLUMNS:
        if row.get(name) is not None:
            row[name] = str(row[name])
    return json.dumps(row, separators=(",", ":"), default=str)


def decode_row(line: str) -> dict[str, Any]:
    """The row of a spool line, normalised; ``ValueError`` for a torn or invalid line."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    row["id"] = uuid.UUID(row["id"])
    row["created_at"] = as_utc(datetime.fromisoformat(row["created_at"]))
    for name in MONEY_COLUMNS:
        if row.get(name) is not None:
            row[name] = Decimal(row[name])
    if "price_source" not in row:
        # Spooled by a version that did not price rows: price it now, at its created_at.
        row.update(get_pricer().price(row))
    # Spooled by a version that did not normalise: make it storable now.
    return normalise_row(row)


def describe_error(exc: BaseException) -> str:
    """A database error in one line, without the statement SQLAlchemy appends."""
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        exc = exc.orig
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}"


def is_outage(exc: BaseException) -> bool:
    """True when the database could not be reached or used (try again later); False when
    it refused the row's data (trying again would fail the same way)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return not isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError)
    if isinstance(exc, sa_exc.StatementError):
        return False  # the driver could not send a value
    return not isinstance(exc, ValueError | TypeError | OverflowError)


class _LockedFile:
    """An append-only JSONL file; every access holds ``flock`` on ``path + ".lock"``.

    The lock lives in its own file so that rewriting the data file (``os.replace``) can
    never leave a waiting writer appending to the unlinked old one.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _append_lines(self, lines: list[str]) -> None:
        with self._locked(), open(self.path, "a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())

    def _read_lines(self) -> list[str]:
        # Caller holds the lock. Undecodable bytes become U+FFFD: reported, never a crash.
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]

    def _rewrite(self, lines: list[str]) -> None:
        # Caller holds the lock. A new file swapped in: a crash keeps the old or the new.
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


@dataclass
class DeadLetter:
    """A row the database refused (or a line no row could be read from), and why."""

    reason: str
    dead_at: str
    row: dict[str, Any] | None  # the row's JSON values; None for an unreadable line
    line: str | None = None  # the raw line, when it could not be read as a row


class DeadLetters(_LockedFile):
    """Rows replay must not retry: kept with their reason, listed by ``flask spool dead``."""

    def append(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        reason: str | None,
        line: str | None = None,
    ) -> None:
        """Keep one refused row (or an unreadable ``line``) with ``reason``, durably."""
        row = json.loads(encode_row(values)) if values is not None else None
        if line is not None:
            try:
                parsed = json.loads(line)
                row = parsed if isinstance(parsed, dict) else None
            except ValueError:
                pass
        entry = {"reason": reason or "refused", "dead_at": utcnow().isoformat(), "row": row}
        if line is not None and row is None:
            entry["line"] = line.rstrip("\n")
        self._append_lines([json.dumps(entry, separators=(",", ":")) + "\n"])

    def entries(self) -> list[DeadLetter]:
        """Every dead letter, oldest first (a torn entry is shown as such)."""
        with self._locked():
            lines = self._read_lines()
        found = []
        for line in lines:
            try:
                entry = json.loads(line)
                found.append(
                    DeadLetter(
                        str(entry["reason"]),
                        str(entry["dead_at"]),
                        entry.get("row"),
                        entry.get("line"),
                    )
                )
            except (ValueError, KeyError, TypeError):
                found.append(DeadLetter("unreadable dead-letter line", "", None, line.rstrip("\n")))
        return found


@dataclass
class ReplayResult:
    """What ``Spool.replay`` did."""

    written: int = 0
    duplicates: int = 0
    dead: int = 0
    remaining: int = 0
    error: str | None = None  # the outage that stopped it, if one did


@dataclass
class SpoolStatus:
    """The rows waiting in a spool, and the lines that could not be read as rows."""

    rows: list[dict[str, Any]]
    unreadable: int


class _Outage(Exception):
    pass


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class Spool(_LockedFile):
    """Rows the database could not take, fsynced line by line, written by ``replay``.

    ``flock`` serialises appends and replays across threads and worker processes. Rows the
    database refuses for their data go to ``dead`` instead, so they never block the rest.
    """

    REPLAY_BATCH = 500

    def __init__(self, path: str, dead_path: str | None = None) -> None:
        super().__init__(path)
        self.dead = DeadLetters(dead_path or os.path.splitext(path)[0] + "_dead.jsonl")

    def append(self, values: Mapping[str, Any]) -> None:
        """Add one row durably; ``OSError`` when the file cannot be written."""
        self.append_many([values])

    def append_many(
        self, rows: Sequence[Mapping[str, Any]], lines: Sequence[str] | None = None
    ) -> None:
        """Add rows durably (one fsync); ``OSError`` when the file cannot be written.
        ``lines`` are the rows' ``encode_row`` lines when the caller has them."""
        encoded = lines if lines is not None else [encode_row(values) for values in rows]
        self._append_lines([line + "\n" for line in encoded])

    def status(self) -> SpoolStatus:
        """The rows waiting, oldest first, and how many lines are unreadable."""
        with self._locked():
            lines = self._read_lines()
        rows, unreadable = [], 0
        for line in lines:
            try:
                rows.append(decode_row(line))
            except Exception:  # torn or invalid: replay dead-letters it
                unreadable += 1
        return SpoolStatus(rows, unreadable)

    def rows(self) -> list[dict[str, Any]]:
        """The rows waiting, oldest first (unreadable lines left out)."""
        return self.status().rows

    def replay(self, engine: Engine | None = None) -> ReplayResult:
        """Write the spooled rows (run ids already stored are skipped), dead-letter those
        the database refuses and unreadable lines, keep the rest if the database is down."""
        result = ReplayResult()
        with self._locked():
            batch: list[tuple[str, dict[str, Any]]] = []
            kept: list[str] = []
            lines = self._read_lines()
            for n, line in enumerate(lines):
                try:
                    batch.append((line, decode_row(line)))
                except Exception as exc:
                    kind = "invalid row" if _is_json_object(line) else "unreadable spool line"
                    self.dead.append(reason=f"{kind}: {describe_error(exc)}", line=line)
                    result.dead += 1
                if len(batch) == self.REPLAY_BATCH or (batch and n == len(lines) - 1):
                    try:
                        self._write(batch, result, engine or db.engine)
                    except _Outage as outage:
                        result.error = str(outage)
                        kept = [line for line, _ in batch] + lines[n + 1 :]
                        break
                    batch = []
            self._rewrite(kept)
            result.remaining = len(kept)
        return result

    def _write(
        self, batch: list[tuple[str, dict[str, Any]]], result: ReplayResult, engine: Engine
    ) -> None:
        # One transaction per batch; a data error splits it in halves until the refused
        # row stands alone, so every other row is written.
        try:
            app = current_flask_app() if has_app_context() else None
            with engine.connect() as conn, budgets.transaction(conn, app):
                written = insert_rows(conn, [values for _line, values in batch])
            duplicates = len(batch) - written
        except Exception as exc:
            if is_outage(exc):
                raise _Outage(describe_error(exc)) from exc
            if len(batch) == 1:
                self.dead.append(
                    batch[0][1], reason=f"database refused the row: {describe_error(exc)}"
                )
                result.dead += 1
                return
            half = len(batch) // 2
            self._write(batch[:half], result, engine)
            self._write(batch[half:], result, engine)
            return
        result.written += written
        result.duplicates += duplicates


def get_spool(app: Flask | None = None) -> Spool:
    """The spool configured for ``app`` (default: the current app)."""
    app = app or current_app
    return Spool(
        app.config["LLM_TRACKER_SPOOL_PATH"], app.config.get("LLM_TRACKER_DEAD_LETTER_PATH")
    )


# Last: the writer builds on everything above.
from . import writer  # noqa: E402
