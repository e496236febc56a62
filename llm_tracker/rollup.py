"""The rollup table: per 15-minute UTC bucket sums of the raw usage rows.

``record_usage`` (through ``insert_row``) adds each new row to its rollup row in the same
transaction, with an ``INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x`` upsert,
so concurrent writers never lose an increment; ``reprice`` applies its cost changes the
same way; ``rebuild`` recomputes any range from the raw rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, FromClause

from .database import as_utc, db
from .models import NO_PROVIDER, NO_USER, LLMUsage, LLMUsageRollup

BUCKET = timedelta(minutes=15)
_BUCKET_SECONDS = 900
_RAW = LLMUsage.__table__
ROLLUP = LLMUsageRollup.__table__
KEY_COLUMNS = ("bucket", "model", "provider", "user_id", "node_name", "success")
TOKEN_COLUMNS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
                 "cache_write_tokens", "reasoning_tokens")
MONEY_COLUMNS = ("cost_usd", "input_cost_usd", "output_cost_usd", "cache_savings_usd")
SUM_COLUMNS = ("calls", *TOKEN_COLUMNS, "unpriced_calls", *MONEY_COLUMNS)


def bucket_floor(instant: datetime) -> datetime:
    """The start of the 15-minute UTC bucket holding ``instant``."""
    instant = as_utc(instant)
    return instant.replace(minute=instant.minute - instant.minute % 15, second=0,
                           microsecond=0)


def bucket_ceil(instant: datetime) -> datetime:
    """The first bucket start at or after ``instant``."""
    floor = bucket_floor(instant)
    return floor if floor == as_utc(instant) else floor + BUCKET


def bucket_sql(created_at: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """SQL for the bucket of ``created_at``; the same instant ``bucket_floor`` gives."""
    if dialect == "postgresql":
        # Epoch arithmetic, not date_trunc: date_trunc on timestamptz follows the
        # session's time zone, and a +05:45 session would shift the edges.
        epoch = func.extract("epoch", created_at)
        return func.to_timestamp(
            func.floor(epoch / literal_column(str(_BUCKET_SECONDS)))
            * literal_column(str(_BUCKET_SECONDS)))
    if dialect == "sqlite":
        # UTCDateTime stores naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'; the bucket is the
        # same text with the minute floored and the seconds zeroed. Constants are literal
        # so the expression compiles identically in the select list and the GROUP BY.
        minute = cast(func.substr(created_at, literal_column("15"), literal_column("2")),
                      Integer)
        return (func.substr(created_at, literal_column("1"), literal_column("14"))
                .op("||")(func.printf(literal_column("'%02d'"),
                                      minute // literal_column("15") * literal_column("15")))
                .op("||")(literal_column("':00.000000'")))
    raise NotImplementedError(f"rollups need SQLite or PostgreSQL, not {dialect}")


def rollup_select(source: FromClause, dialect: str, *where: Any) -> Select[Any]:
    """The rollup rows of the raw rows in ``source`` (the raw table or a CTE of its columns)."""
    c = source.c
    zero = literal_column("0")
    keys = (
        bucket_sql(c.created_at, dialect),
        c.model,
        func.coalesce(c.provider, literal_column(f"'{NO_PROVIDER}'")),
        func.coalesce(c.user_id, literal_column(str(NO_USER))),
        c.node_name,
        c.success,
    )
    sums = (
        func.count(),
        *(func.sum(c[name]) for name in TOKEN_COLUMNS),
        func.sum(case((c.cost_usd.is_(None), literal_column("1")), else_=zero)),
        *(func.coalesce(func.sum(c[name]), zero) for name in MONEY_COLUMNS),
    )
    # SQLite needs a WHERE before ON CONFLICT to parse an INSERT ... SELECT upsert.
    return (select(*keys, *sums).select_from(source).where(*(where or (true(),)))
            .group_by(*keys))


def _upsert(dialect: str, rows: Select[Any]) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(ROLLUP).from_select([*KEY_COLUMNS, *SUM_COLUMNS], rows)
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: ROLLUP.c[name] + stmt.excluded[name] for name in SUM_COLUMNS},
    )


# Raw columns a rollup row is computed from.
_SOURCE_COLUMNS = ("created_at", "model", "provider", "user_id", "node_name", "success",
                   *TOKEN_COLUMNS, *MONEY_COLUMNS)


def insert_with_rollup_statement(dialect: str) -> Any:
    """PostgreSQL: one statement that inserts the raw row unless its run_id exists and, only
    if it did insert, adds it to its rollup row; returns a row exactly when it inserted."""
    values = {col.key: bindparam(col.key, type_=col.type) for col in _RAW.c}
    ins = (postgresql.insert(_RAW).values(values)
           .on_conflict_do_nothing(index_elements=["run_id"])
           .returning(*(_RAW.c[name] for name in _SOURCE_COLUMNS))
           .cte("ins"))
    return _upsert(dialect, rollup_select(ins, dialect)).add_cte(ins).returning(ROLLUP.c.calls)


def add_row_statement(dialect: str) -> Any:
    """An upsert adding the raw row with id ``:row_id`` to its rollup row."""
    return _upsert(dialect, rollup_select(_RAW, dialect,
                                          _RAW.c.id == bindparam("row_id", type_=_RAW.c.id.type)))


def raw_columns() -> tuple[str, ...]:
    """The raw table's column names (a PostgreSQL insert binds every one of them)."""
    return tuple(col.key for col in _RAW.c)


# --- reprice --------------------------------------------------------------------------

_APPLY_DELTAS = (
    update(ROLLUP)
    .where(*(ROLLUP.c[name] == bindparam(f"k_{name}") for name in KEY_COLUMNS))
    .values({name: ROLLUP.c[name] + bindparam(f"d_{name}", type_=ROLLUP.c[name].type)
             for name in ("unpriced_calls", *MONEY_COLUMNS)})
)


def rollup_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The rollup key of one raw row (a mapping of its columns)."""
    provider = row["provider"]
    user_id = row["user_id"]
    return (bucket_floor(row["created_at"]), row["model"],
            NO_PROVIDER if provider is None else provider,
            NO_USER if user_id is None else user_id, row["node_name"], bool(row["success"]))


def cost_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What moving a raw row from ``old`` to ``new`` price columns adds to its rollup."""
    delta: dict[str, Any] = {
        "unpriced_calls": int(new["cost_usd"] is None) - int(old["cost_usd"] is None)}
    for name in MONEY_COLUMNS:
        delta[name] = (new[name] or Decimal(0)) - (old[name] or Decimal(0))
    return delta


def apply_deltas(conn: Connection, deltas: Mapping[tuple[Any, ...], Mapping[str, Any]]) -> None:
    """Add per-key deltas (from ``cost_delta``) to the rollup rows, in ``conn``'s transaction."""
    if not deltas:
        return
    params = []
    # Sorted keys: two transactions updating the same rows lock them in the same order.
    for key in sorted(deltas, key=repr):
        entry = {f"k_{name}": value for name, value in zip(KEY_COLUMNS, key, strict=True)}
        entry.update({f"d_{name}": value for name, value in deltas[key].items()})
        params.append(entry)
    conn.execute(_APPLY_DELTAS, params)


def add_delta(total: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Accumulate ``delta`` into ``total``."""
    for name, value in delta.items():
        total[name] = total.get(name, 0) + value


# --- rebuild --------------------------------------------------------------------------


def rebuild_windows(since: datetime | None, step: timedelta) -> list[tuple[datetime | None,
                                                                          datetime | None]]:
    """The ``[lo, hi)`` windows ``rebuild`` works through; the first lo / last hi are open."""
    with db.engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(_RAW.c.created_at), func.max(_RAW.c.created_at))).one()
    start = bucket_floor(since) if since is not None else None
    if last is None or (start is not None and as_utc(last) < start):
        return [(start, None)]  # no raw rows in range: one window clears the rollups
    lo = start if start is not None else bucket_floor(as_utc(first))
    edges: list[datetime | None] = [lo]
    end = bucket_floor(as_utc(last))
    while edges[-1] is not None and edges[-1] + step <= end:
        edges.append(edges[-1] + step)
    edges.append(None)
    windows = list(zip(edges[:-1], edges[1:], strict=True))
    # Without --since the first window also clears rollups older than any raw row.
    if since is None:
        windows[0] = (None, windows[0][1])
    return windows


def rebuild(since: datetime | None = None, *, step: timedelta = timedelta(days=1),
            on_batch: Callable[[int], None] | None = None,
            windows: list[tuple[datetime | None, datetime | None]] | None = None) -> int:
    """Recompute the rollups from the bucket of ``since`` on (all when None); rollup rows written.

    One short transaction per ``step`` of time: it deletes that window's rollup rows and
    inserts them again from a GROUP BY over the window's raw rows. Writers may keep
    recording meanwhile: a row committed before a window's transaction is counted by its
    GROUP BY, a later one adds itself to the rebuilt rollup row (on PostgreSQL a table lock
    makes writers wait for the window's transaction; SQLite serialises writers). ``windows``
    (from ``rebuild_windows``) saves computing them again.
    """
    if step < BUCKET or step % BUCKET:
        raise ValueError("step must be a positive multiple of 15 minutes")
    written = 0
    for lo, hi in windows if windows is not None else rebuild_windows(since, step):
        written += rebuild_window(lo, hi)
        if on_batch is not None:
            on_batch(1)
    return written


def rebuild_window(lo: datetime | None, hi: datetime | None) -> int:
    """Recompute the rollup rows of buckets in ``[lo, hi)`` (bounds 15-minute aligned)."""
    where_raw, where_rollup = [], []
    if lo is not None:
        where_raw.append(_RAW.c.created_at >= lo)
        where_rollup.append(ROLLUP.c.bucket >= lo)
    if hi is not None:
        where_raw.append(_RAW.c.created_at < hi)
        where_rollup.append(ROLLUP.c.bucket < hi)
    with db.engine.begin() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            # Writers' upserts wait for this window's transaction, and it waits for theirs:
            # otherwise a writer committing between the DELETE's snapshot and the GROUP BY's
            # would be counted by both. SQLite serialises writers anyway.
            conn.execute(text(f"LOCK TABLE {ROLLUP.name} IN SHARE ROW EXCLUSIVE MODE"))
        conn.execute(delete(ROLLUP).where(*where_rollup))
        conn.execute(_upsert(dialect, rollup_select(_RAW, dialect, *where_raw)))
        # Counted, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
        return conn.execute(select(func.count()).select_from(ROLLUP).where(*where_rollup)
                            ).scalar_one()

