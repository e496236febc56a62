"""The read path: which calls (``Filters``), over which spans of time, summed how (``Sums``).

Every statistic and the list's total are one call of ``aggregate``: it plans each
half-open span once — whole UTC days from the daily rollups, whole 15-minute buckets from
the 15-minute rollups, the ragged edges from raw rows (``rollup.pieces``), or raw rows
alone under ``raw_scan()`` — and sums every piece in one ``UNION ALL`` statement. A new
filter is a line in ``Filters.conditions``; a new dimension is a column both the raw
table and the rollups have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    column,
    func,
    literal_column,
    null,
    select,
    union_all,
    values,
)

from .database import UTCDateTime, db
from .latency import latency_bin_sql
from .models import (
    NO_PROVIDER,
    NO_SOURCE,
    NO_USER,
    LLMLatencySliceDay,
    LLMUsage,
    LLMUsageSliceDay,
)
from .rollup import DAY, SLICE_DIMENSIONS, TOKEN_COLUMNS, Level, pieces, within

__all__ = ["Filters", "Span", "Sums", "aggregate", "latency_histograms", "raw_scan"]

Span = tuple[datetime | None, datetime | None]  # [lo, hi) in UTC; None: open
# SQLite allows 32766 parameters in a statement; a plan needing more (thousands of series
# buckets in a zone whose hours are not 15-minute aligned) reads raw rows alone.
_MAX_SPAN_PARAMS = 30_000
_RAW_SCAN: ContextVar[bool] = ContextVar("llm_tracker_raw_scan", default=False)


@contextmanager
def raw_scan() -> Iterator[None]:
    """Within this block every aggregate reads raw rows only, never the rollups."""
    token = _RAW_SCAN.set(True)
    try:
        yield
    finally:
        _RAW_SCAN.reset(token)


@dataclass(frozen=True)
class Filters:
    """Which calls count; None means any. Raw rows and both rollup levels have the key
    columns under the same names, so one set of conditions serves all three."""

    user_id: int | None = None
    node_name: str | None = None
    source_type: str | None = None
    provider: str | None = None
    model: str | None = None  # case-insensitive substring
    models: tuple[str, ...] | None = None  # ``model`` resolved to exact names
    model_exact: str | None = None
    success: bool | None = None
    # Priced or not: a condition on raw rows; on rollups it picks which calls are counted,
    # so ``aggregate`` reads raw rows alone when it needs more than the count.
    priced: bool | None = None

    def conditions(self, source: Any) -> list[ColumnElement[bool]]:
        """WHERE conditions on ``source``: ``LLMUsage`` or a rollup model."""
        found: list[ColumnElement[bool]] = []
        if self.user_id is not None:
            # The rollups' NULL-user sentinel never equals a filtered id.
            found.append(source.user_id == self.user_id)
        # Exact values; a filter is never blank, so the rollups' "" sentinels never match.
        for name in ("node_name", "source_type", "provider"):
            value = getattr(self, name)
            if value is not None:
                found.append(getattr(source, name) == value)
        if self.models is not None:
            found.append(source.model.in_(self.models))
        elif self.model is not None:
            found.append(source.model.icontains(self.model, autoescape=True))
        if self.model_exact is not None:
            # Beside the substring, not instead of it: both given means both must hold.
            found.append(source.model == self.model_exact)
        if self.success is not None:
            found.append(source.success.is_(self.success))
        if self.priced is not None and source is LLMUsage:
            found.append(
                LLMUsage.cost_usd.is_not(None) if self.priced else LLMUsage.cost_usd.is_(None)
            )
        return found

    def slice_dimension(self, group: str | None) -> str | None:
        """The slice (``rollup.SLICE_DIMENSIONS``) that can answer these filters grouped by
        the column ``group``: the one dimension they name, or None when they name more."""
        if self.success is not None:
            return None  # slices sum successes but are not keyed by them
        named = {
            "model": self.model is not None
            or self.models is not None
            or self.model_exact is not None,
            "user": self.user_id is not None,
            "node": self.node_name is not None,
            "source_type": self.source_type is not None,
            "provider": self.provider is not None,
        }
        used = {dimension for dimension, given in named.items() if given}
        if group is not None:
            used.add(_DIMENSION_OF[group])
        if len(used) > 1:
            return None
        # Any slice sums every call; providers are the fewest rows.
        return used.pop() if used else "provider"


_DIMENSION_OF = {column: dimension for dimension, column in SLICE_DIMENSIONS.items()}


class _SliceColumns:
    """A slice table seen as a rollup with one dimension: its ``value`` stands for that
    dimension's column (a user id converted back from text; "" is the rollups' NULL
    sentinel, as for provider and source type), every other name is the table's."""

    def __init__(self, model: Any, dimension: str) -> None:
        # Underscored: "model" is a column name this object answers for.
        self._table = model
        self._column = SLICE_DIMENSIONS[dimension]
        value = model.value
        if self._column == "user_id":
            value = case(
                (value == literal_column("''"), literal_column(str(NO_USER))),
                else_=cast(value, BigInteger),
            )
        self._value = value
        self.dimension_sql = model.dimension == dimension

    def __getattr__(self, name: str) -> Any:
        if name == self._column:
            return self._value
        if name in _DIMENSION_OF:
            raise AttributeError(f"a {self._column} slice has no {name}")
        return getattr(self._table, name)


@dataclass
class Sums:
    """The sums of one group of calls, gathered from rollup and raw pieces."""

    calls: int = 0
    successful_calls: int = 0
    unpriced_calls: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_COLUMNS, 0))
    priced_cost: Decimal = Decimal(0)  # of the priced calls only
    cache_savings_usd: Decimal = Decimal(0)

    def add(self, other: Sums) -> None:
        """Add ``other``'s sums to these."""
        self.calls += other.calls
        self.successful_calls += other.successful_calls
        self.unpriced_calls += other.unpriced_calls
        for name, value in other.tokens.items():
            self.tokens[name] += value
        self.priced_cost += other.priced_cost
        self.cache_savings_usd += other.cache_savings_usd

    @property
    def total_cost_usd(self) -> Decimal | None:
        """As ``SUM(cost_usd)`` over the raw rows: None exactly when no call is priced."""
        return self.priced_cost if self.calls > self.unpriced_calls else None


def _measures(
    source: Any, raw: bool, priced: bool | None, count_only: bool, sliced: bool = False
) -> list[Any]:
    # The same labelled sums from raw rows (one per call) and from rollup rows.
    calls: ColumnElement[Any]
    if raw:
        calls = func.count()
        unpriced = func.sum(case((LLMUsage.cost_usd.is_(None), 1), else_=0))
        successful = func.sum(case((LLMUsage.success.is_(True), 1), else_=0))
    else:
        calls = {
            None: func.sum(source.calls),
            True: func.sum(source.calls - source.unpriced_calls),
            False: func.sum(source.unpriced_calls),
        }[priced]
        unpriced = func.sum(source.unpriced_calls)
        successful = (
            func.sum(source.successful_calls)
            if sliced
            else func.sum(case((source.success.is_(True), source.calls), else_=0))
        )
    found = [calls.label("calls")]
    if not count_only:
        found += [
            successful.label("successful_calls"),
            unpriced.label("unpriced_calls"),
            *(func.sum(getattr(source, name)).label(name) for name in TOKEN_COLUMNS),
            func.sum(source.cost_usd).label("priced_cost"),
            func.sum(source.cache_savings_usd).label("cache_savings_usd"),
        ]
    return found


def _plan(spans: Sequence[Span], raw_only: bool) -> dict[Level | None, list[tuple[int, Any, Any]]]:
    """Each span as pieces per level (None: raw rows): ``level -> [(span index, lo, hi)]``."""
    by_level: dict[Level | None, list[tuple[int, Any, Any]]] = {}
    for i, (lo, hi) in enumerate(spans):
        try:
            found = [(None, lo, hi)] if raw_only else pieces(lo, hi)
        except OverflowError:  # a bound within a day of datetime's limits
            found = [(None, lo, hi)]
        for level, a, b in found:
            by_level.setdefault(level, []).append((i, a, b))
    if not raw_only and 3 * sum(map(len, by_level.values())) > _MAX_SPAN_PARAMS:
        return _plan(spans, raw_only=True)
    return by_level


def _part(
    level: Level | None,
    found: list[tuple[int, Any, Any]],
    filters: Filters,
    group: str | None,
    count_only: bool,
    latency: bool = False,
) -> Select[Any]:
    # Whole days read a slice when one dimension answers the question.
    dimension = filters.slice_dimension(group) if level is DAY else None
    if latency:
        table: Any = LLMUsage if level is None else level.latency_model
    else:
        table = LLMUsage if level is None else level.model
    source: Any = table
    if dimension is not None:
        table = LLMLatencySliceDay if latency else LLMUsageSliceDay
        source = _SliceColumns(table, dimension)
    if latency:
        bin_ = latency_bin_sql(LLMUsage.latency_ms) if level is None else source.bin
        measures = [(func.count() if level is None else func.sum(source.calls)).label("calls")]
        groups = [bin_]
        measures.append(bin_.label("bin"))
    else:
        measures = _measures(
            source, level is None, filters.priced, count_only, sliced=dimension is not None
        )
        groups = []
    when = LLMUsage.created_at if level is None else source.bucket
    key = getattr(source, group) if group else null()
    if group:
        groups.insert(0, key)
    where = filters.conditions(source)
    if dimension is not None:
        where.append(source.dimension_sql)
    if latency and level is None:
        where.append(LLMUsage.latency_ms.is_not(None))
    if len(found) == 1:
        # One piece: plain bounds (open ones allowed), no join.
        i, lo, hi = found[0]
        where += within(when, lo, hi)
        stmt = select(literal_column(str(i)).label("i"), key.label("g"), *measures).select_from(
            table
        )
        return stmt.where(*where).group_by(*groups)
    # Many pieces (a series' buckets): joined from a VALUES list, so the database walks
    # its time index once per piece.
    name = f"pieces_{table.__tablename__}"
    cte = (
        values(
            column("idx", Integer),
            column("lo", UTCDateTime()),
            column("hi", UTCDateTime()),
            name=name,
        )
        .data(found)
        .cte(name)
    )
    stmt = select(cte.c.idx.label("i"), key.label("g"), *measures).join_from(
        cte, table, and_(when >= cte.c.lo, when < cte.c.hi, *where)
    )
    return stmt.group_by(cte.c.idx, *groups)


def _unkey(group: str | None, value: Any) -> Any:
    # The rollups store NOT NULL sentinels for a missing provider, source type or user.
    if group == "provider" and value == NO_PROVIDER:
        return None
    if group == "source_type" and value == NO_SOURCE:
        return None
    if group == "user_id" and value == NO_USER:
        return None
    return value


def aggregate(
    spans: Sequence[Span],
    filters: Filters = Filters(),
    group: str | None = None,
    *,
    count_only: bool = False,
) -> dict[tuple[int, Any], Sums]:
    """Sums per ``(span index, group value)`` of the calls ``filters`` select in each span.

    ``group`` names a key column of the raw table and the rollups (``"model"``...), None
    for one group per span; ``count_only`` sums calls alone. Groups without calls are
    absent.
    """
    raw_only = _RAW_SCAN.get() or (filters.priced is not None and not count_only)
    parts = [
        _part(level, found, filters, group, count_only)
        for level, found in _plan(spans, raw_only).items()
    ]
    if not parts:
        return {}
    stmt = union_all(*parts) if len(parts) > 1 else parts[0]
    result: dict[tuple[int, Any], Sums] = {}
    # Core rows on the session's connection: the ORM's result machinery is per-row cost.
    for row in db.session.connection().execute(stmt):
        if not row.calls:  # an aggregate without GROUP BY gives a row over no rows too
            continue
        sums = Sums(calls=int(row.calls))
        if not count_only:
            sums.successful_calls = int(row.successful_calls or 0)
            sums.unpriced_calls = int(row.unpriced_calls or 0)
            sums.tokens = {name: int(getattr(row, name) or 0) for name in TOKEN_COLUMNS}
            sums.priced_cost = row.priced_cost or Decimal(0)
            sums.cache_savings_usd = row.cache_savings_usd or Decimal(0)
        result.setdefault((row.i, _unkey(group, row.g)), Sums()).add(sums)
    return result


def latency_histograms(
    spans: Sequence[Span], filters: Filters = Filters(), group: str | None = None
) -> dict[tuple[int, Any], dict[int, int]]:
    """The latency histogram (``bin -> calls``, calls with a latency only) per ``(span
    index, group value)``, planned like ``aggregate`` over the latency rollups."""
    parts = [
        _part(level, found, filters, group, False, latency=True)
        for level, found in _plan(spans, _RAW_SCAN.get()).items()
    ]
    if not parts:
        return {}
    stmt = union_all(*parts) if len(parts) > 1 else parts[0]
    result: dict[tuple[int, Any], dict[int, int]] = {}
    for row in db.session.connection().execute(stmt):
        if not row.calls:
            continue
        histogram = result.setdefault((row.i, _unkey(group, row.g)), {})
        histogram[int(row.bin)] = histogram.get(int(row.bin), 0) + int(row.calls)
    return result
