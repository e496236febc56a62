"""``record_usage``: the one write path, and the spool that keeps rows the database refused."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, Any

from flask import Flask, current_app
from sqlalchemy import Connection, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import configure_mappers

from . import rollup
from .database import as_utc, db, utcnow
from .models import LLMUsage
from .pricing import PRICE_COLUMNS, get_pricer

logger = logging.getLogger("llm_tracker")

_TABLE = LLMUsage.__table__
_MAPPER = LLMUsage.__mapper__
# Keyword arguments of record_usage beyond SPEC §1.2's named ones that map to columns.
_EXTRA_COLUMNS = frozenset(
    {"id", "run_id", "requested_model", "deployment", "node_name", "cache_write_tokens",
     "latency_ms"}
)
_TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
                 "cache_write_tokens")
_MONEY_COLUMNS = tuple(c for c in PRICE_COLUMNS if c.endswith("_usd"))


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
    """Write one usage row, priced at its ``created_at``, in its own short transaction.

    Returns the row. If the database cannot take it, it goes (with its cost) to the
    durable spool instead (``flask spool replay`` writes it later), so a call is never lost.
    """
    unknown = set(extra) - _EXTRA_COLUMNS
    if unknown:
        raise TypeError(f"record_usage() got unexpected keyword argument(s): {sorted(unknown)}")
    if not model or not isinstance(model, str):
        raise ValueError("record_usage() needs a non-empty model name")
    values = _row_values(
        model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        total_tokens=total_tokens, cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens, success=success, error=error, user_id=user_id,
        metadata=metadata, provider=provider, created_at=created_at, **extra,
    )
    app = current_app._get_current_object()
    values.update(get_pricer(app).price(values))
    try:
        with db.engine.begin() as conn:
            if not insert_row(conn, values):
                logger.warning("llm_tracker: run %s was already recorded", values["run_id"])
    except Exception as exc:  # any failure to write must not lose the row
        logger.warning("llm_tracker: database write failed (%s); row spooled", exc)
        get_spool(app).append(values)
    return _as_model(values)


def _row_values(*, model: str, total_tokens: int | None, metadata: Mapping[str, Any] | None,
                created_at: datetime | None, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {k: v for k, v in fields.items()}
    for name in _TOKEN_FIELDS:
        values[name] = _count(name, values.get(name))
    values["total_tokens"] = (values["prompt_tokens"] + values["completion_tokens"]
                              if total_tokens is None else _count("total_tokens", total_tokens))
    meta = _jsonable(dict(metadata or {}))
    node_name = values.get("node_name") or meta.get("node_name") or "unknown"
    meta["node_name"] = values["node_name"] = str(node_name)
    values["metadata"] = meta
    values["model"] = model
    values["success"] = bool(values["success"])
    values["created_at"] = utcnow() if created_at is None else as_utc(created_at)
    values["id"] = _uuid(values.get("id"))
    values["run_id"] = str(values.get("run_id") or values["id"])
    return values


def _count(name: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _uuid(value: Any) -> uuid.UUID:
    if value is None:
        return uuid.uuid4()
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    # State metadata comes from user code; anything JSON can't hold is kept as text
    # rather than failing the write.
    try:
        json.dumps(meta)
        return meta
    except (TypeError, ValueError):
        return json.loads(json.dumps(meta, default=str))


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
    for sql, params in rollup.sqlite_upserts(values):
        dbapi.execute(sql, params)
    return True


# --- the spool -----------------------------------------------------------------------


def _encode(values: Mapping[str, Any]) -> str:
    row = dict(values)
    row["id"] = str(row["id"])
    row["created_at"] = row["created_at"].isoformat()
    for name in _MONEY_COLUMNS:
        if row.get(name) is not None:
            row[name] = str(row[name])  # a decimal string: JSON numbers are floats
    return json.dumps(row, separators=(",", ":"))


def _decode(line: str) -> dict[str, Any]:
    row = json.loads(line)
    row["id"] = uuid.UUID(row["id"])
    row["created_at"] = datetime.fromisoformat(row["created_at"])
    for name in _MONEY_COLUMNS:
        if row.get(name) is not None:
            row[name] = Decimal(row[name])
    if "price_source" not in row:
        # Spooled by a version that did not price rows: price it now, at its created_at.
        row.update(get_pricer().price(row))
    return row


@dataclass
class ReplayResult:
    written: int = 0
    duplicates: int = 0
    remaining: int = 0
    error: str | None = None


class Spool:
    """An append-only JSONL file of rows the database refused, fsynced line by line.

    ``flock`` serialises appends and replays across threads and worker processes.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    @contextmanager
    def _locked(self, mode: str) -> Iterator[IO[str]]:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, mode, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def append(self, values: Mapping[str, Any]) -> None:
        """Add one row durably."""
        line = _encode(values) + "\n"
        try:
            with self._locked("a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            # Last resort: the row is in the log, so an operator can still recover it.
            logger.exception("llm_tracker: could not spool row, row follows: %s", line)

    def rows(self) -> list[dict[str, Any]]:
        """The rows waiting, oldest first."""
        if not os.path.exists(self.path):
            return []
        with self._locked("r") as f:
            return [_decode(line) for line in f if line.strip()]

    def replay(self) -> ReplayResult:
        """Write every spooled row (skipping run ids already stored) and empty the spool."""
        result = ReplayResult()
        if not os.path.exists(self.path):
            return result
        with self._locked("r+") as f:
            lines = [line for line in f if line.strip()]
            pending = list(lines)
            try:
                with db.engine.begin() as conn:
                    for line in lines:
                        if insert_row(conn, _decode(line)):
                            result.written += 1
                        else:
                            result.duplicates += 1
                pending = []
            except Exception as exc:  # database still down: keep everything for next time
                result.written = result.duplicates = 0
                result.error = str(exc)
            f.seek(0)
            f.truncate()
            f.writelines(pending)
            f.flush()
            os.fsync(f.fileno())
            result.remaining = len(pending)
        return result


def get_spool(app: Flask | None = None) -> Spool:
    """The spool configured for ``app`` (default: the current app)."""
    app = app or current_app
    return Spool(app.config["LLM_TRACKER_SPOOL_PATH"])
