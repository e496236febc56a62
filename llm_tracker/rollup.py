"""The rollup tables: sums of the raw usage rows per 15-minute and per UTC-day bucket.

``record_usage`` (through ``insert_row``) adds each new row to its rollup row of both
levels in the same transaction, with an ``INSERT ... ON CONFLICT DO UPDATE SET x = x +
excluded.x`` upsert, so concurrent writers never lose an increment; ``reprice`` applies its
cost changes the same way; ``rebuild`` recomputes any range from the raw rows. Readers
cover a range with whole days, then whole 15-minute buckets, then raw rows (``pieces``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from typing import cast as typed

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, FromClause

from .database import MONEY_SCALE, as_utc, db
from .latency import latency_bin, latency_bin_sql
from .models import (
    MONEY_COLUMNS,
    NO_PROVIDER,
    NO_SOURCE,
    NO_USER,
    TOKEN_COLUMNS,
    LLMLatencyRollup,
    LLMLatencyRollupDay,
    LLMLatencySliceDay,
    LLMUsage,
    LLMUsageRollup,
    LLMUsageRollupDay,
    LLMUsageSliceDay,
)

_RAW = typed(Table, LLMUsage.__table__)
_ROLLUP = typed(Table, LLMUsageRollup.__table__)
# The key is the primary key (bucket first); every other column is a sum.
KEY_COLUMNS = tuple(col.key for col in _ROLLUP.primary_key.columns)
SUM_COLUMNS = tuple(col.key for col in _ROLLUP.c if not col.primary_key)
# The latency histogram's key: the rollup key and a bin; its one sum is calls.
LATENCY_KEY_COLUMNS = (*KEY_COLUMNS, "bin")
# The one-dimension daily rollups ("slices"): dimension -> the raw column it sums by. The
# full rollups' key is every dimension at once, so with many users and nodes nearly every
# call has a key of its own; a slice has one row per day and value of its dimension.
SLICE_DIMENSIONS = {
    "model": "model",
    "user": "user_id",
    "node": "node_name",
    "source_type": "source_type",
    "provider": "provider",
}
_SLICE = typed(Table, LLMUsageSliceDay.__table__)
_LATENCY_SLICE = typed(Table, LLMLatencySliceDay.__table__)
SLICE_KEY_COLUMNS = tuple(col.key for col in _SLICE.primary_key.columns)
SLICE_SUM_COLUMNS = tuple(col.key for col in _SLICE.c if not col.primary_key)
__all__ = ["KEY_COLUMNS", "MONEY_COLUMNS", "SUM_COLUMNS", "TOKEN_COLUMNS"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Level:
    """One rollup table and the length of its buckets."""

    name: str
    model: type[LLMUsageRollup] | type[LLMUsageRollupDay]
    step: timedelta
    latency_model: type[LLMLatencyRollup] | type[LLMLatencyRollupDay]

    @property
    def table(self) -> Table:
        return self.model.__table__  # type: ignore[return-value]

    @property
    def latency_table(self) -> Table:
        return self.latency_model.__table__  # type: ignore[return-value]

    def floor(self, instant: datetime) -> datetime:
        """The start of the bucket holding ``instant``."""
        return _EPOCH + (as_utc(instant) - _EPOCH) // self.step * self.step

    def ceil(self, instant: datetime) -> datetime:
        """The first bucket start at or after ``instant``."""
        floor = self.floor(instant)
        return floor if floor == as_utc(instant) else floor + self.step

    def sql(self, created_at: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
        """SQL for the bucket of ``created_at``; the same instant ``floor`` gives."""
        seconds: ColumnElement[Any] = literal_column(str(int(self.step.total_seconds())))
        if dialect == "postgresql":
            # Epoch arithmetic, not date_trunc: date_trunc on timestamptz follows the
            # session's time zone, and a +05:45 session would shift the edges.
            epoch = func.extract("epoch", created_at)
            return func.to_timestamp(func.floor(epoch / seconds) * seconds)
        if dialect != "sqlite":
            raise NotImplementedError(f"rollups need SQLite or PostgreSQL, not {dialect}")
        # UTCDateTime stores naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'; the bucket is the
        # same text cut down. Constants are literal so the expression compiles identically
        # in the select list and the GROUP BY.
        if self.step == timedelta(days=1):
            return func.substr(created_at, literal_column("1"), literal_column("10")).op("||")(
                literal_column("' 00:00:00.000000'")
            )
        minute = cast(func.substr(created_at, literal_column("15"), literal_column("2")), Integer)
        return (
            func.substr(created_at, literal_column("1"), literal_column("14"))
            .op("||")(
                func.printf(
                    literal_column("'%02d'"), minute // literal_column("15") * literal_column("15")
                )
            )
            .op("||")(literal_column("':00.000000'"))
        )


QUARTER = Level("15 minutes", LLMUsageRollup, timedelta(minutes=15), LLMLatencyRollup)
DAY = Level("day", LLMUsageRollupDay, timedelta(days=1), LLMLatencyRollupDay)
LEVELS = (DAY, QUARTER)  # coarsest first


def lock_writers(conn: Connection) -> None:
    """PostgreSQL: hold every writer back until ``conn`` commits; call it first thing.

    Rebuild and reprice rewrite rollup rows from raw rows, so no writer may add a row and
    its rollup increments in between. They take SHARE ROW EXCLUSIVE on the raw table as
    their transaction's first lock. A writer's only lock that conflicts is the ROW
    EXCLUSIVE its insert statement takes on the raw table, and PostgreSQL takes a
    statement's table locks before it touches any row. So a writer waiting here holds no
    row lock and no table lock that the rebuild needs (ROW EXCLUSIVE on a rollup table
    does not conflict with the rebuild's own), and the rebuild waits only for writers that
    are already past it: no cycle, whatever order a writer's statement locks its tables in
    (it differs between a freshly parsed statement and a cached plan, which is why locking
    the rollup tables instead deadlocked). SQLite serialises writers anyway.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"LOCK TABLE {_RAW.name} IN SHARE ROW EXCLUSIVE MODE"))


Piece = tuple[Level | None, datetime | None, datetime | None]


def within(column: Any, lo: datetime | None, hi: datetime | None) -> list[ColumnElement[bool]]:
    """Conditions putting ``column`` (a time or a bucket) in ``[lo, hi)``; None: open."""
    found = []
    if lo is not None:
        found.append(column >= lo)
    if hi is not None:
        found.append(column < hi)
    return found


def pieces(lo: datetime | None, hi: datetime | None) -> list[Piece]:
    """``[lo, hi)`` (None: open) as whole days, whole 15-minute buckets and raw spans.

    Each piece is ``(level, start, end)``, end exclusive; level None means raw rows. Raises
    ``OverflowError`` for a bound within a day of datetime's limits.
    """
    found: list[Piece] = []

    def cover(lo: datetime | None, hi: datetime | None, depth: int) -> None:
        if depth == len(LEVELS):
            found.append((None, lo, hi))
            return
        level = LEVELS[depth]
        start = level.ceil(lo) if lo is not None else None
        end = level.floor(hi) if hi is not None else None
        if start is not None and end is not None and start >= end:
            cover(lo, hi, depth + 1)
            return
        found.append((level, start, end))
        if lo is not None and start is not None and lo < start:
            cover(lo, start, depth + 1)
        if hi is not None and end is not None and end < hi:
            cover(end, hi, depth + 1)

    cover(lo, hi, 0)
    return found


def _key_sql(source: FromClause, dialect: str, level: Level) -> tuple[Any, ...]:
    # A raw row's rollup key in SQL, NULLs as the key columns' sentinels.
    c = source.c
    return (
        level.sql(c.created_at, dialect),
        c.model,
        func.coalesce(c.provider, literal_column(f"'{NO_PROVIDER}'")),
        func.coalesce(c.user_id, literal_column(str(NO_USER))),
        c.node_name,
        func.coalesce(c.source_type, literal_column(f"'{NO_SOURCE}'")),
        c.success,
    )


def rollup_select(source: FromClause, dialect: str, level: Level, *where: Any) -> Select[Any]:
    """The ``level`` rollup rows of the raw rows in ``source`` (the raw table or a CTE)."""
    c = source.c
    zero: ColumnElement[Any] = literal_column("0")
    keys = _key_sql(source, dialect, level)
    sums = (
        func.count(),
        *(func.sum(c[name]) for name in TOKEN_COLUMNS),
        func.sum(case((c.cost_usd.is_(None), literal_column("1")), else_=zero)),
        *(func.coalesce(func.sum(c[name]), zero) for name in MONEY_COLUMNS),
    )
    # SQLite needs a WHERE before ON CONFLICT to parse an INSERT ... SELECT upsert.
    return select(*keys, *sums).select_from(source).where(*(where or (true(),))).group_by(*keys)


def latency_select(source: FromClause, dialect: str, level: Level, *where: Any) -> Select[Any]:
    """The ``level`` latency histogram rows of the raw rows in ``source`` that have a latency."""
    keys = (*_key_sql(source, dialect, level), latency_bin_sql(source.c.latency_ms))
    return (
        select(*keys, func.count())
        .select_from(source)
        .where(source.c.latency_ms.is_not(None), *where)
        .group_by(*keys)
    )


def slice_value(value: Any) -> str:
    """A dimension's value as a slice stores it: text, "" for none."""
    return "" if value is None else str(value)


def _slice_value_sql(column: ColumnElement[Any]) -> ColumnElement[Any]:
    # The same text slice_value gives: CAST of a bigint is its decimal digits on both.
    text_value = column if isinstance(column.type, String) else cast(column, String)
    return func.coalesce(text_value, literal_column("''"))


def slice_select(source: FromClause, dialect: str, *where: Any) -> Any:
    """The slice rows of the raw rows in ``source``: one SELECT per dimension, UNION ALL."""
    c = source.c
    zero: ColumnElement[Any] = literal_column("0")
    parts = []
    for dimension, column in SLICE_DIMENSIONS.items():
        keys = (DAY.sql(c.created_at, dialect), _slice_value_sql(c[column]))
        sums = {
            "successful_calls": func.sum(
                case((c.success.is_(True), literal_column("1")), else_=zero)
            ),
            "calls": func.count(),
            **{name: func.sum(c[name]) for name in TOKEN_COLUMNS},
            "unpriced_calls": func.sum(
                case((c.cost_usd.is_(None), literal_column("1")), else_=zero)
            ),
            **{name: func.coalesce(func.sum(c[name]), zero) for name in MONEY_COLUMNS},
        }
        parts.append(
            select(literal_column(f"'{dimension}'"), *keys, *(sums[n] for n in SLICE_SUM_COLUMNS))
            .select_from(source)
            .where(*(where or (true(),)))
            .group_by(*keys)
        )
    return union_all(*parts)


def latency_slice_select(source: FromClause, dialect: str, *where: Any) -> Any:
    """The latency slice rows of the raw rows in ``source`` that have a latency."""
    c = source.c
    parts = []
    for dimension, column in SLICE_DIMENSIONS.items():
        keys = (
            DAY.sql(c.created_at, dialect),
            _slice_value_sql(c[column]),
            latency_bin_sql(c.latency_ms),
        )
        parts.append(
            select(literal_column(f"'{dimension}'"), *keys, func.count())
            .select_from(source)
            .where(c.latency_ms.is_not(None), *where)
            .group_by(*keys)
        )
    return union_all(*parts)


def _upsert(dialect: str, table: Table, rows: Any = None) -> Any:
    """Add rows (``rows``' result, else the statement's parameters) to ``table``'s sums."""
    module = postgresql if dialect == "postgresql" else sqlite
    keys = [col.key for col in table.primary_key.columns]
    sums = [col.key for col in table.c if not col.primary_key]
    stmt = module.insert(table)
    if rows is not None:
        stmt = stmt.from_select([*keys, *sums], rows)
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={name: table.c[name] + stmt.excluded[name] for name in sums}
    )


# Raw columns a rollup row is computed from.
_SOURCE_COLUMNS = (
    "created_at",
    "model",
    "provider",
    "user_id",
    "node_name",
    "source_type",
    "success",
    "latency_ms",
    *TOKEN_COLUMNS,
    *MONEY_COLUMNS,
)


def insert_with_rollup_statement(dialect: str) -> Any:
    """PostgreSQL: one statement that inserts the raw row unless its run_id exists and, only
    if it did insert, adds it to its rollup rows; returns a row exactly when it inserted."""
    values = {col.key: bindparam(col.key, type_=col.type) for col in _RAW.c}
    ins = (
        postgresql.insert(_RAW)
        .values(values)
        .on_conflict_do_nothing(index_elements=["run_id"])
        .returning(*(_RAW.c[name] for name in _SOURCE_COLUMNS))
        .cte("ins")
    )
    # Data-modifying CTEs run whether or not the main statement reads them.
    others = [
        _upsert(dialect, QUARTER.table, rollup_select(ins, dialect, QUARTER))
        .returning(QUARTER.table.c.calls)
        .cte("quarter"),
        _upsert(dialect, _SLICE, slice_select(ins, dialect)).returning(_SLICE.c.calls).cte("slice"),
        _upsert(dialect, _LATENCY_SLICE, latency_slice_select(ins, dialect))
        .returning(_LATENCY_SLICE.c.calls)
        .cte("latency_slice"),
        *(
            _upsert(dialect, level.latency_table, latency_select(ins, dialect, level))
            .returning(level.latency_table.c.calls)
            .cte(f"latency_{n}")
            for n, level in enumerate(LEVELS)
        ),
    ]
    return (
        _upsert(dialect, DAY.table, rollup_select(ins, dialect, DAY))
        .add_cte(ins, *others)
        .returning(DAY.table.c.calls)
    )


def _sqlite_upsert_sql(table: Table) -> str:
    keys = [col.key for col in table.primary_key.columns]
    sum_names = [col.key for col in table.c if not col.primary_key]
    marks = ", ".join("?" * (len(keys) + len(sum_names)))
    sums = ", ".join(f"{name} = {name} + excluded.{name}" for name in sum_names)
    return (
        f"INSERT INTO {table.name} ({', '.join((*keys, *sum_names))}) VALUES ({marks}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sums}"
    )


_SQLITE_UPSERTS = [
    (_sqlite_upsert_sql(level.table), _sqlite_upsert_sql(level.latency_table), level)
    for level in LEVELS
]
_SQLITE_SLICE_UPSERTS = (_sqlite_upsert_sql(_SLICE), _sqlite_upsert_sql(_LATENCY_SLICE))


def _units(value: Decimal | None) -> int:
    # Money's SQLite storage, as Money.process_bind_param computes it: 1e-12 USD units.
    return 0 if value is None else int(value.scaleb(MONEY_SCALE).to_integral_value())


def _sqlite_bucket(b: datetime) -> str:
    # UTCDateTime's SQLite text (SQLAlchemy's format): naive UTC, six decimals.
    return f"{b.year:04d}-{b.month:02d}-{b.day:02d} {b.hour:02d}:{b.minute:02d}:00.000000"


def sqlite_upserts(values: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """SQLite: (SQL, parameters) adding one raw row's values to its rollup rows."""
    created = as_utc(values["created_at"])
    cost = values.get("cost_usd")
    key = _dimensions(values)
    sums = (
        1,
        *(values[name] for name in TOKEN_COLUMNS),
        int(cost is None),
        *(_units(values.get(name)) for name in MONEY_COLUMNS),
    )
    latency = values.get("latency_ms")
    result = []
    for sql, latency_sql, level in _SQLITE_UPSERTS:
        bucket = _sqlite_bucket(level.floor(created))
        result.append((sql, (bucket, *key, *sums)))
        if latency is not None:
            result.append((latency_sql, (bucket, *key, latency_bin(latency), 1)))
    # The slices, daily; successful_calls is their first sum column.
    sql, latency_sql = _SQLITE_SLICE_UPSERTS
    bucket = _sqlite_bucket(DAY.floor(created))
    for dimension, column in SLICE_DIMENSIONS.items():
        value = slice_value(values.get(column))
        result.append((sql, (dimension, bucket, value, int(bool(values["success"])), *sums)))
        if latency is not None:
            result.append((latency_sql, (dimension, bucket, value, latency_bin(latency), 1)))
    return result


def _dimensions(row: Mapping[str, Any]) -> tuple[Any, ...]:
    # A raw row's rollup key after the bucket, NULLs as the key columns' sentinels.
    provider, user_id, source = row.get("provider"), row.get("user_id"), row.get("source_type")
    return (
        row["model"],
        NO_PROVIDER if provider is None else provider,
        NO_USER if user_id is None else user_id,
        row["node_name"],
        NO_SOURCE if source is None else source,
        bool(row["success"]),
    )


def _zero_sums(names: Sequence[str] = SUM_COLUMNS) -> dict[str, Any]:
    return {name: Decimal(0) if name in MONEY_COLUMNS else 0 for name in names}


def _add_row(total: dict[str, Any], row: Mapping[str, Any]) -> None:
    # One raw row into a rollup or slice row's sums.
    total["calls"] += 1
    if "successful_calls" in total:
        total["successful_calls"] += bool(row["success"])
    for name in TOKEN_COLUMNS:
        total[name] += row[name]
    total["unpriced_calls"] += row.get("cost_usd") is None
    for name in MONEY_COLUMNS:
        total[name] += row.get(name) or 0


def _upsert_sums(
    conn: Connection,
    table: Table,
    names: Sequence[str],
    sums: Mapping[tuple[Any, ...], Any],
    column: str | None = None,
) -> None:
    # Sorted keys: writers adding to the same hot rows lock them in the same order.
    params = [
        {
            **dict(zip(names, key, strict=True)),
            **(total if column is None else {column: total}),
        }
        for key, total in sorted(sums.items())
    ]
    if params:
        conn.execute(_upsert(conn.dialect.name, table), params)


def add_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add raw rows (just inserted, in ``conn``'s transaction) to both rollup levels.

    Summed in Python first: one upsert row per distinct key of the batch, however many
    calls share it. Keys go in a fixed order (daily level first, then sorted), so two
    writers adding to the same hot rows always lock them in the same order.
    """
    keys = [_dimensions(row) for row in rows]
    for level in LEVELS:
        sums: dict[tuple[Any, ...], dict[str, Any]] = {}
        bins: dict[tuple[Any, ...], int] = {}
        for row, dimensions in zip(rows, keys, strict=True):
            key = (level.floor(row["created_at"]), *dimensions)
            latency = row.get("latency_ms")
            if latency is not None:
                at = (*key, latency_bin(latency))
                bins[at] = bins.get(at, 0) + 1
            total = sums.get(key)
            if total is None:
                total = sums[key] = _zero_sums()
            _add_row(total, row)
        _upsert_sums(conn, level.table, KEY_COLUMNS, sums)
        _upsert_sums(conn, level.latency_table, LATENCY_KEY_COLUMNS, bins, "calls")
    slices: dict[tuple[Any, ...], dict[str, Any]] = {}
    slice_bins: dict[tuple[Any, ...], int] = {}
    for row in rows:
        day = DAY.floor(row["created_at"])
        latency = row.get("latency_ms")
        for dimension, column in SLICE_DIMENSIONS.items():
            key = (dimension, day, slice_value(row.get(column)))
            total = slices.get(key)
            if total is None:
                total = slices[key] = _zero_sums(SLICE_SUM_COLUMNS)
            _add_row(total, row)
            if latency is not None:
                at = (*key, latency_bin(latency))
                slice_bins[at] = slice_bins.get(at, 0) + 1
    _upsert_sums(conn, _SLICE, SLICE_KEY_COLUMNS, slices)
    _upsert_sums(conn, _LATENCY_SLICE, (*SLICE_KEY_COLUMNS, "bin"), slice_bins, "calls")


def raw_columns() -> tuple[str, ...]:
    """The raw table's column names (a PostgreSQL insert binds every one of them)."""
    return tuple(col.key for col in _RAW.c)


# --- reprice --------------------------------------------------------------------------


def _apply_statement(table: Table) -> Any:
    return (
        update(table)
        .where(*(col == bindparam(f"k_{col.key}") for col in table.primary_key.columns))
        .values(
            {
                name: table.c[name] + bindparam(f"d_{name}", type_=table.c[name].type)
                for name in ("unpriced_calls", *MONEY_COLUMNS)
            }
        )
    )


_APPLY_DELTAS = {level.name: (_apply_statement(level.table), KEY_COLUMNS) for level in LEVELS}
_APPLY_DELTAS["slice"] = (_apply_statement(_SLICE), SLICE_KEY_COLUMNS)


def rollup_keys(row: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rollup keys of one raw row (a mapping of its columns): one per level, then one
    per slice dimension (``"slice"``, dimension, day, value)."""
    rest = _dimensions(row)
    keys = [(level.name, level.floor(row["created_at"]), *rest) for level in LEVELS]
    day = DAY.floor(row["created_at"])
    keys += [
        ("slice", dimension, day, slice_value(row[column]))
        for dimension, column in SLICE_DIMENSIONS.items()
    ]
    return keys


def cost_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What moving a raw row from ``old`` to ``new`` price columns adds to its rollup."""
    delta: dict[str, Any] = {
        "unpriced_calls": int(new["cost_usd"] is None) - int(old["cost_usd"] is None)
    }
    for name in MONEY_COLUMNS:
        delta[name] = (new[name] or Decimal(0)) - (old[name] or Decimal(0))
    return delta


def apply_deltas(conn: Connection, deltas: Mapping[tuple[Any, ...], Mapping[str, Any]]) -> None:
    """Add per-key deltas (keys from ``rollup_keys``, values from ``cost_delta``) to the
    rollup rows, in ``conn``'s transaction (which holds ``lock_writers``)."""
    for name, (statement, columns) in _APPLY_DELTAS.items():
        params = []
        for key in sorted((k for k in deltas if k[0] == name), key=repr):
            entry = {f"k_{col}": value for col, value in zip(columns, key[1:], strict=True)}
            entry.update({f"d_{col}": value for col, value in deltas[key].items()})
            params.append(entry)
        if params:
            conn.execute(statement, params)


def add_delta(total: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Accumulate ``delta`` into ``total``."""
    for name, value in delta.items():
        total[name] = total.get(name, 0) + value


# --- rebuild --------------------------------------------------------------------------


def rebuild_windows(
    since: datetime | None, step: timedelta
) -> list[tuple[datetime | None, datetime | None]]:
    """The ``[lo, hi)`` windows ``rebuild`` works through; the first lo / last hi are open."""
    with db.engine.connect() as conn:
        first, last = typed(
            "tuple[datetime | None, datetime | None]",
            tuple(
                conn.execute(select(func.min(_RAW.c.created_at), func.max(_RAW.c.created_at))).one()
            ),
        )
    start = DAY.floor(since) if since is not None else None
    if first is None or last is None or (start is not None and as_utc(last) < start):
        return [(start, None)]  # no raw rows in range: one window clears the rollups
    lo = start if start is not None else DAY.floor(as_utc(first))
    edges: list[datetime | None] = [lo]
    end = DAY.floor(as_utc(last))
    while edges[-1] is not None and edges[-1] + step <= end:
        edges.append(edges[-1] + step)
    edges.append(None)
    windows = list(zip(edges[:-1], edges[1:], strict=True))
    # Without --since the first window also clears rollups older than any raw row.
    if since is None:
        windows[0] = (None, windows[0][1])
    return windows


def rebuild(
    since: datetime | None = None,
    *,
    step: timedelta = timedelta(days=1),
    on_batch: Callable[[int], None] | None = None,
    windows: list[tuple[datetime | None, datetime | None]] | None = None,
) -> int:
    """Recompute both rollup levels, their latency histograms and the slices from the UTC
    day of ``since`` on (all when None).

    One short transaction per ``step`` (whole days) of time: it deletes that window's
    rollup rows and inserts them again from a GROUP BY over the window's raw rows. Writers
    may keep recording meanwhile: a row committed before a window's transaction is counted
    by its GROUP BY, a later one adds itself to the rebuilt rollup rows (on PostgreSQL
    ``lock_writers`` makes writers wait for the window's transaction; SQLite serialises
    writers).
    ``windows`` (from ``rebuild_windows``) saves computing them again. Returns the number
    of 15-minute rollup rows written.
    """
    if step < DAY.step or step % DAY.step:
        raise ValueError("step must be a whole number of days")
    written = 0
    for lo, hi in windows if windows is not None else rebuild_windows(since, step):
        written += rebuild_window(lo, hi)
        if on_batch is not None:
            on_batch(1)
    return written


def rebuild_window(lo: datetime | None, hi: datetime | None) -> int:
    """Recompute the rollup rows of buckets in ``[lo, hi)`` (bounds at UTC midnights)."""
    where_raw = within(_RAW.c.created_at, lo, hi)
    with db.engine.begin() as conn:
        dialect = conn.dialect.name
        # Writers wait for this window's transaction, and it for theirs: otherwise a writer
        # committing between the DELETE's snapshot and the GROUP BY's would count twice.
        lock_writers(conn)
        written = 0
        for level in LEVELS:
            table = level.table
            where = within(table.c.bucket, lo, hi)
            conn.execute(delete(table).where(*where))
            conn.execute(_upsert(dialect, table, rollup_select(_RAW, dialect, level, *where_raw)))
            latency = level.latency_table
            conn.execute(delete(latency).where(*within(latency.c.bucket, lo, hi)))
            conn.execute(
                _upsert(dialect, latency, latency_select(_RAW, dialect, level, *where_raw))
            )
            # Counted, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
            if level is QUARTER:
                written = conn.execute(
                    select(func.count()).select_from(table).where(*where)
                ).scalar_one()
        for table, select_rows in (
            (_SLICE, slice_select),
            (_LATENCY_SLICE, latency_slice_select),
        ):
            conn.execute(delete(table).where(*within(table.c.bucket, lo, hi)))
            conn.execute(_upsert(dialect, table, select_rows(_RAW, dialect, *where_raw)))
        return written
