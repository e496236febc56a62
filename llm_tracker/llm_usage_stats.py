"""Usage statistics for charts and cost analysis: summary, per model, and time series.

Every figure is aggregated by the database (``GROUP BY``); only the bucket edges of a time
series are computed in Python, where ``zoneinfo`` knows every zone's DST rules.

The whole UTC days of a range are read from the daily rollups, the whole 15-minute buckets
left from the 15-minute rollups (``llm_tracker.rollup``), and only the ragged edges (a
start of 10:07 reads the raw rows of 10:07-10:15) from the raw rows. ``raw_scan()`` makes
the same functions aggregate the raw rows alone: the property tests and the benchmark
compare both.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    column,
    func,
    null,
    select,
    union_all,
    values,
)

from .database import UTCDateTime, db, utcnow
from .models import LLMUsage
from .pricing import format_money
from .rollup import LEVELS, Level, bucket_span, pieces

__all__ = [
    "GRANULARITIES",
    "MAX_BUCKETS",
    "get_stats_by_model",
    "get_summary_stats",
    "get_time_series_stats",
    "get_token_stats_from_query",
    "raw_scan",
]

# granularity -> the unit of one bucket.
GRANULARITIES = {"day": "hour", "month": "day", "year": "month"}
# A series is one SQL statement with three parameters per bucket; this keeps it under
# SQLite's 32766-parameter limit (10,000 hourly buckets are more than a year).
MAX_BUCKETS = 10_000
# 64-bit ids, as stored; -(2**63) is the rollups' "no user" key (models.NO_USER).
_USER_ID_MIN, _USER_ID_MAX = -(2**63) + 1, 2**63 - 1
_UTC = ZoneInfo("UTC")
_ONE_MICROSECOND = timedelta(microseconds=1)
_DATE_HINT = "use an ISO 8601 date or datetime such as 2026-11-27 or 2026-11-27T08:00:00+08:00"

# (result key, column) pairs shared by every statistic.
_TOKEN_SUMS = (
    ("total_prompt_tokens", LLMUsage.prompt_tokens),
    ("total_completion_tokens", LLMUsage.completion_tokens),
    ("total_tokens", LLMUsage.total_tokens),
    ("total_cached_tokens", LLMUsage.cached_tokens),
    ("total_reasoning_tokens", LLMUsage.reasoning_tokens),
)

DateArg = datetime | date | str | None
# SQLite allows 32766 parameters in a statement; a series beyond this (only in zones whose
# hours are not 15-minute aligned, with thousands of buckets) is read from raw rows alone.
_MAX_SERIES_PARAMS = 30_000
_RAW_SCAN: ContextVar[bool] = ContextVar("llm_tracker_raw_scan", default=False)


@contextmanager
def raw_scan() -> Iterator[None]:
    """Within this block the statistics aggregate raw rows only, never the rollups."""
    token = _RAW_SCAN.set(True)
    try:
        yield
    finally:
        _RAW_SCAN.reset(token)


# --- argument parsing (llm_usage reuses these) ------------------------------------------


def _parse_tz(tz: str | tzinfo | None) -> tzinfo:
    """The zone named by ``tz`` (an IANA name or a tzinfo); UTC when empty."""
    if tz is None or tz == "":
        return _UTC
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ValueError(f"tz must be an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz.strip())
    except (ValueError, KeyError, OSError, TypeError, UnicodeError):
        raise ValueError(
            f"unknown time zone {tz!r}: use an IANA name such as 'Asia/Shanghai' or 'UTC'"
        ) from None


def _to_datetime(value: DateArg, name: str) -> datetime | date | None:
    # A date (not a datetime) for date-only input: its meaning depends on start or end.
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a date or an ISO 8601 string, got {value!r}")
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid {name} {value!r}: {_DATE_HINT}") from None


def _aware_utc(value: datetime, tz: tzinfo) -> datetime:
    # Naive values are wall-clock times in ``tz``.
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def _parse_date(value: DateArg, tz: str | tzinfo | None = None, *,
                name: str = "start_date") -> datetime | None:
    """A start bound as aware UTC: a date means its first instant; naive means ``tz``."""
    zone = _parse_tz(tz)
    parsed = _to_datetime(value, name)
    if parsed is None:
        return None
    try:
        if not isinstance(parsed, datetime):
            return _wall_edge(datetime(parsed.year, parsed.month, parsed.day), zone)
        return _aware_utc(parsed, zone)
    except (OverflowError, ValueError):
        raise ValueError(f"{name} {value!r} is out of the supported range") from None


def _parse_end_date(value: DateArg, tz: str | tzinfo | None = None, *,
                    name: str = "end_date") -> datetime | None:
    """An inclusive end bound as aware UTC: a date-only value covers that whole day."""
    zone = _parse_tz(tz)
    parsed = _to_datetime(value, name)
    if parsed is None:
        return None
    try:
        if not isinstance(parsed, datetime):
            next_day = datetime(parsed.year, parsed.month, parsed.day) + timedelta(days=1)
            return _wall_edge(next_day, zone) - _ONE_MICROSECOND
        return _aware_utc(parsed, zone)
    except (OverflowError, ValueError):
        raise ValueError(f"{name} {value!r} is out of the supported range") from None


def _parse_user_id(value: Any) -> int | None:
    """``user_id`` as an int (a digit string is accepted); None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"user_id must be an integer, got {value!r}")
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]+", value.strip()):
            raise ValueError(f"user_id must be an integer, got {value!r}")
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValueError(f"user_id must be an integer, got {value!r}")
    if not _USER_ID_MIN <= value <= _USER_ID_MAX:
        raise ValueError(f"user_id {value} is out of range")
    return value


def _check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise ValueError(
            f"start_date ({start.isoformat()}) is after end_date ({end.isoformat()})")


def _filters(start: datetime | None, end: datetime | None,
             user_id: int | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(LLMUsage.created_at >= start)
    if end is not None:
        conditions.append(LLMUsage.created_at <= end)
    if user_id is not None:
        conditions.append(LLMUsage.user_id == user_id)
    return conditions


def _bounds(start_date: DateArg, end_date: DateArg, user_id: Any,
            tz: str | tzinfo | None) -> tuple[datetime | None, datetime | None, int | None]:
    start = _parse_date(start_date, tz)
    end = _parse_end_date(end_date, tz)
    _check_range(start, end)
    return start, end, _parse_user_id(user_id)


def _sums() -> list[Any]:
    return [
        *(func.coalesce(func.sum(col), 0).label(key) for key, col in _TOKEN_SUMS),
        func.count(LLMUsage.id).label("total_calls"),
        # SUM skips NULL: the cost of the priced calls; NULL when none is priced.
        func.sum(LLMUsage.cost_usd).label("total_cost_usd"),
        func.coalesce(func.sum(case((LLMUsage.cost_usd.is_(None), 1), else_=0)), 0)
        .label("unpriced_calls"),
    ]


def _token_dict(row: Any) -> dict[str, Any]:
    """Tokens, calls and cost of one aggregate row (None: a bucket with no calls)."""
    result: dict[str, Any] = {key: int(getattr(row, key) or 0) if row else 0
                              for key, _ in _TOKEN_SUMS}
    calls = int(row.total_calls) if row else 0
    cost = row.total_cost_usd if row else None
    # No calls cost nothing; calls none of which is priced have no known cost (null),
    # never a silent $0.
    if cost is None and calls == 0:
        cost = Decimal(0)
    result["total_calls"] = calls
    result["total_cost_usd"] = format_money(cost)
    result["unpriced_calls"] = int(row.unpriced_calls) if row else 0
    return result


# --- the statistics -------------------------------------------------------------------


def get_summary_stats(start_date: DateArg = None, end_date: DateArg = None,
                      user_id: int | str | None = None, *,
                      tz: str | tzinfo | None = None) -> dict[str, Any]:
    """Totals of tokens, calls (all, successful, failed) and cost in the range.

    ``total_cost_usd`` sums the priced calls (null when there are calls and none is
    priced); ``unpriced_calls`` counts the others; ``cache_savings_usd`` is what the cached
    input would have cost at the uncached rate, minus what it cost.
    """
    start, end, uid = _bounds(start_date, end_date, user_id, tz)
    combined = _combined(start, end, uid, None)
    if combined is not None:
        row = combined.get(None) or _Sums()
    else:
        stmt = select(
            *_sums(),
            func.coalesce(func.sum(case((LLMUsage.success.is_(True), 1), else_=0)), 0)
            .label("successful_calls"),
            func.sum(LLMUsage.cache_savings_usd).label("cache_savings_usd"),
        ).where(*_filters(start, end, uid))
        row = db.session.execute(stmt).one()
    return _summary_dict(row)


def _summary_dict(row: Any) -> dict[str, Any]:
    result = _token_dict(row)
    successful = int(row.successful_calls)
    result.update(
        successful_calls=successful,
        failed_calls=result["total_calls"] - successful,
        cache_savings_usd=format_money(row.cache_savings_usd or Decimal(0)),
    )
    return result


def get_stats_by_model(start_date: DateArg = None, end_date: DateArg = None,
                       user_id: int | str | None = None, *,
                       tz: str | tzinfo | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and cost per model, most tokens first (ties by model name)."""
    start, end, uid = _bounds(start_date, end_date, user_id, tz)
    combined = _combined(start, end, uid, "model")
    if combined is not None:
        result = [{"model": model, **_token_dict(row)} for model, row in combined.items()]
    else:
        stmt = (
            select(LLMUsage.model, *_sums())
            .where(*_filters(start, end, uid))
            .group_by(LLMUsage.model)
        )
        result = [{"model": row.model, **_token_dict(row)}
                  for row in db.session.execute(stmt)]
    # Sorted here rather than in SQL so ties order the same whatever the database collation.
    result.sort(key=lambda r: (-r["total_tokens"], r["model"]))
    return result


def get_time_series_stats(granularity: str, start_date: DateArg = None,
                          end_date: DateArg = None, user_id: int | str | None = None, *,
                          tz: str | tzinfo | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and cost per local hour (``day``), day (``month``) or month (``year``).

    Every bucket of the range is present, zero-filled; ``bucket`` is the ISO 8601 local
    start of the bucket with its UTC offset. Without a range: the current hour and the 23
    before it (``day``), today and the 30 days before (``month``), this month and the 11
    before (``year``); with only one bound the other is now / that window before the end.
    """
    edges, spans, uid, zone = _series_plan(granularity, start_date, end_date, user_id, tz)
    found: Mapping[Any, Any] | None = _series_combined(spans, uid)
    if found is None:
        found = _series_raw(spans, uid)
    series = []
    for i in range(len(edges) - 1):
        series.append({"bucket": edges[i].astimezone(zone).isoformat(),
                       **_token_dict(found.get(i))})
    return series


def _series_plan(granularity: str, start_date: DateArg, end_date: DateArg, user_id: Any,
                 tz: str | tzinfo | None) -> tuple[list[datetime],
                                                   list[tuple[int, datetime, datetime]],
                                                   int | None, tzinfo]:
    """A series' bucket edges, its spans (bucket i clipped to the range), user and zone."""
    unit = GRANULARITIES.get(granularity) if isinstance(granularity, str) else None
    if unit is None:
        raise ValueError(
            f"unsupported granularity {granularity!r}: use one of 'day', 'month', 'year'")
    zone = _parse_tz(tz)
    start, end, uid = _bounds(start_date, end_date, user_id, zone)
    try:
        if end is None:
            end = max(utcnow(), start) if start is not None else utcnow()
        if start is None:
            start = _default_start(end, unit, zone)
        edges = _bucket_edges(start, end, unit, zone)
    except OverflowError:
        raise ValueError("the date range is outside the supported range") from None

    # Bucket i is [edges[i], edges[i+1]); the outer two are clipped to the range itself, so
    # the join alone decides which rows count and the database walks the created_at index
    # once per bucket. The edges are exact UTC instants, so every zone and DST day is exact.
    spans = [(i, max(edges[i], start), min(edges[i + 1], end + _ONE_MICROSECOND))
             for i in range(len(edges) - 1)]
    return edges, spans, uid, zone


def _series_raw(spans: list[tuple[int, datetime, datetime]], uid: int | None
                ) -> dict[int, Any]:
    buckets = values(
        column("idx", Integer), column("lo", UTCDateTime()), column("hi", UTCDateTime()),
        name="buckets",
    ).data(spans).cte("buckets")
    conditions = [LLMUsage.created_at >= buckets.c.lo, LLMUsage.created_at < buckets.c.hi]
    if uid is not None:
        conditions.append(LLMUsage.user_id == uid)
    stmt = (
        select(buckets.c.idx, *_sums())
        .join_from(buckets, LLMUsage, and_(*conditions))
        .group_by(buckets.c.idx)
    )
    return {row.idx: row for row in db.session.execute(stmt)}


def get_token_stats_from_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """``summary``, ``by_model`` and ``series`` (None without ``granularity``) from a query.

    Reads ``start_date``, ``end_date``, ``user_id``, ``granularity`` and ``tz``; empty
    values count as absent. Bad values raise ``ValueError``.
    """
    args = {key: params.get(key) for key in ("start_date", "end_date", "user_id")}
    tz = _parse_tz(params.get("tz"))
    granularity = params.get("granularity")
    if (granularity not in (None, "") and _given(args["start_date"])
            and _given(args["end_date"]) and not _RAW_SCAN.get()):
        # With both dates the series' buckets tile the summary's range exactly, so one
        # statement grouped by bucket and model gives all three (a third of the reading).
        edges, spans, uid, zone = _series_plan(granularity, **args, tz=tz)
        found = _series_combined(spans, uid, by_model=True)
        if found is not None:
            return _from_buckets_and_models(edges, zone, found)
    series = None
    if granularity not in (None, ""):
        series = get_time_series_stats(granularity, **args, tz=tz)
    return {
        "summary": get_summary_stats(**args, tz=tz),
        "by_model": get_stats_by_model(**args, tz=tz),
        "series": series,
    }


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _from_buckets_and_models(edges: list[datetime], zone: tzinfo,
                             found: Mapping[tuple[int, str], _Sums]) -> dict[str, Any]:
    per_bucket: dict[int, _Sums] = {}
    per_model: dict[str, _Sums] = {}
    total = _Sums()
    for (i, model), sums in found.items():
        per_bucket.setdefault(i, _Sums()).add(sums)
        per_model.setdefault(model, _Sums()).add(sums)
        total.add(sums)
    by_model = [{"model": model, **_token_dict(sums)} for model, sums in per_model.items()]
    by_model.sort(key=lambda r: (-r["total_tokens"], r["model"]))
    series = [{"bucket": edges[i].astimezone(zone).isoformat(),
               **_token_dict(per_bucket.get(i))} for i in range(len(edges) - 1)]
    return {"summary": _summary_dict(total), "by_model": by_model, "series": series}


# --- rollups for whole days and 15-minute buckets, raw rows for the ragged edges ---------

_SUM_KEYS = ("total_prompt_tokens", "total_completion_tokens", "total_tokens",
             "total_cached_tokens", "total_reasoning_tokens", "total_calls",
             "unpriced_calls", "successful_calls")
_MONEY_KEYS = ("priced_cost", "cache_savings_usd")


class _Sums:
    """One group's sums gathered from rollup and raw parts, read like an aggregate row."""

    def __init__(self) -> None:
        for key in _SUM_KEYS:
            setattr(self, key, 0)
        self.priced_cost = Decimal(0)
        self.cache_savings_usd = Decimal(0)

    def add(self, row: Any) -> None:
        for key in _SUM_KEYS:
            setattr(self, key, getattr(self, key) + int(getattr(row, key) or 0))
        for key in _MONEY_KEYS:
            value = getattr(row, key)
            if value is not None:
                setattr(self, key, getattr(self, key) + value)

    @property
    def total_cost_usd(self) -> Decimal | None:
        # As SUM(cost_usd) over the raw rows: NULL exactly when no call is priced.
        return self.priced_cost if self.total_calls > self.unpriced_calls else None


def _raw_part(key: Any, *where: Any) -> Select[Any]:
    """Aggregates of raw rows under the labels _Sums reads."""
    u = LLMUsage
    return select(
        key.label("k"),
        *(func.sum(col).label(label) for label, col in _TOKEN_SUMS),
        func.count(u.id).label("total_calls"),
        func.sum(case((u.cost_usd.is_(None), 1), else_=0)).label("unpriced_calls"),
        func.sum(case((u.success.is_(True), 1), else_=0)).label("successful_calls"),
        func.sum(u.cost_usd).label("priced_cost"),
        func.sum(u.cache_savings_usd).label("cache_savings_usd"),
    ).where(*where)


def _rollup_part(key: Any, level: Level, *where: Any) -> Select[Any]:
    """The same aggregates from the rollup rows of ``level``."""
    r = level.model
    return select(
        key.label("k"),
        *(func.sum(getattr(r, col.key)).label(label) for label, col in _TOKEN_SUMS),
        func.sum(r.calls).label("total_calls"),
        func.sum(r.unpriced_calls).label("unpriced_calls"),
        func.sum(case((r.success.is_(True), r.calls), else_=0)).label("successful_calls"),
        func.sum(r.cost_usd).label("priced_cost"),
        func.sum(r.cache_savings_usd).label("cache_savings_usd"),
    ).where(*where)


def _merge(stmt: Any, by_model: bool = False) -> dict[Any, _Sums]:
    found: dict[Any, _Sums] = {}
    for row in db.session.execute(stmt):
        if row.total_calls:  # an aggregate without GROUP BY gives a row over no rows too
            found.setdefault((row.k, row.m) if by_model else row.k, _Sums()).add(row)
    return found


def _combined(start: datetime | None, end: datetime | None, uid: int | None,
              group: str | None) -> dict[Any, _Sums] | None:
    """Sums per ``group`` (None: one group) over the inclusive range; None: scan raw rows.

    Whole days come from the daily rollups, whole 15-minute buckets from the 15-minute
    ones, the rest from raw rows: one UNION ALL statement.
    """
    if _RAW_SCAN.get():
        return None
    try:
        found = pieces(start, end + _ONE_MICROSECOND if end is not None else None)
    except OverflowError:  # a bound within a day of datetime's limits
        return None
    parts = []
    for level, lo, hi in found:
        if level is None:
            where = [LLMUsage.created_at >= lo, LLMUsage.created_at < hi]
            if uid is not None:
                where.append(LLMUsage.user_id == uid)
            part = _raw_part(LLMUsage.model if group else null(), *where)
            parts.append(part.group_by(LLMUsage.model) if group else part)
            continue
        r = level.model
        where = bucket_span(level, lo, hi)
        if uid is not None:
            where.append(r.user_id == uid)
        part = _rollup_part(r.model if group else null(), level, *where)
        parts.append(part.group_by(r.model) if group else part)
    if not parts:
        return {}
    return _merge(union_all(*parts) if len(parts) > 1 else parts[0])


def _series_combined(spans: list[tuple[int, datetime, datetime]], uid: int | None,
                     by_model: bool = False) -> dict[Any, _Sums] | None:
    """Sums per series bucket index (and model) in one statement; None: scan raw rows."""
    if _RAW_SCAN.get():
        return None
    by_level: dict[Level | None, list[tuple[int, datetime, datetime]]] = {}
    try:
        for i, lo, hi in spans:
            for level, a, b in pieces(lo, hi):
                by_level.setdefault(level, []).append((i, a, b))  # type: ignore[arg-type]
    except OverflowError:
        return None
    if 3 * sum(len(v) for v in by_level.values()) > _MAX_SERIES_PARAMS:
        return None
    parts = []
    for level in LEVELS:
        if level in by_level:
            r = level.model
            cte = _spans_cte(by_level[level], f"spans_{level.table.name}")
            on = [r.bucket >= cte.c.lo, r.bucket < cte.c.hi]
            if uid is not None:
                on.append(r.user_id == uid)
            part = _rollup_part(cte.c.idx, level).join_from(cte, r, and_(*on))
            if by_model:
                part = part.add_columns(r.model.label("m")).group_by(r.model)
            parts.append(part.group_by(cte.c.idx))
    if None in by_level:
        cte = _spans_cte(by_level[None], "raw_spans")
        on = [LLMUsage.created_at >= cte.c.lo, LLMUsage.created_at < cte.c.hi]
        if uid is not None:
            on.append(LLMUsage.user_id == uid)
        part = _raw_part(cte.c.idx).join_from(cte, LLMUsage, and_(*on))
        if by_model:
            part = part.add_columns(LLMUsage.model.label("m")).group_by(LLMUsage.model)
        parts.append(part.group_by(cte.c.idx))
    if not parts:
        return {}
    return _merge(union_all(*parts) if len(parts) > 1 else parts[0], by_model)


def _spans_cte(spans: list[tuple[int, datetime, datetime]], name: str) -> Any:
    return values(
        column("idx", Integer), column("lo", UTCDateTime()), column("hi", UTCDateTime()),
        name=name,
    ).data(spans).cte(name)


# --- bucket edges ---------------------------------------------------------------------


def _floor_wall(wall: datetime, unit: str) -> datetime:
    wall = wall.replace(minute=0, second=0, microsecond=0)
    if unit in ("day", "month"):
        wall = wall.replace(hour=0)
    if unit == "month":
        wall = wall.replace(day=1)
    return wall


def _step_wall(wall: datetime, unit: str, steps: int) -> datetime:
    if unit == "hour":
        return wall + timedelta(hours=steps)
    if unit == "day":
        return wall + timedelta(days=steps)
    months = wall.year * 12 + wall.month - 1 + steps
    return wall.replace(year=months // 12, month=months % 12 + 1)


def _wall_edges(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The UTC instants at which the local wall-clock time ``wall`` begins.

    Two when the clock goes back over it (both are bucket edges: the 25-hour day), one
    normally, and for a time the clock skips, the instant the gap ends.
    """
    found = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    if found:
        return found
    return [_gap_end(wall, zone)]


def _wall_edge(wall: datetime, zone: tzinfo) -> datetime:
    """The first UTC instant whose local time is ``wall`` or later."""
    return _wall_edges(wall, zone)[0]


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    # ``wall`` was skipped: with the offset after the jump it maps before the transition,
    # with the offset before it maps after; bisect the seconds between for the transition.
    lo = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    hi = int(wall.replace(tzinfo=zone, fold=0).astimezone(UTC).timestamp())
    if lo > hi:
        lo, hi = hi, lo
    while lo < hi:
        mid = (lo + hi) // 2
        local = datetime.fromtimestamp(mid, UTC).astimezone(zone).replace(tzinfo=None)
        if local >= wall:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(hi, UTC)


def _units_between(start_wall: datetime, end_wall: datetime, unit: str) -> int:
    if unit == "hour":
        return int((end_wall - start_wall).total_seconds() // 3600)
    if unit == "day":
        return (end_wall - start_wall).days
    return (end_wall.year - start_wall.year) * 12 + end_wall.month - start_wall.month


def _bucket_edges(start: datetime, end: datetime, unit: str, zone: tzinfo) -> list[datetime]:
    """Sorted UTC edges: bucket i is [edges[i], edges[i+1]), from start's bucket to end's."""
    first = _floor_wall(start.astimezone(zone).replace(tzinfo=None), unit)
    last = _floor_wall(end.astimezone(zone).replace(tzinfo=None), unit)
    if _units_between(first, last, unit) >= MAX_BUCKETS:
        raise ValueError(
            f"the range holds more than {MAX_BUCKETS} {unit}ly buckets: "
            "narrow the dates or use a coarser granularity")
    edges: set[datetime] = set()
    wall = _step_wall(first, unit, -1)
    stop = _step_wall(last, unit, 2)
    while wall < stop:
        edges.update(_wall_edges(wall, zone))
        wall = _step_wall(wall, unit, 1)
    ordered = sorted(edges)
    lo = max(bisect.bisect_right(ordered, start) - 1, 0)
    hi = max(bisect.bisect_right(ordered, end) - 1, lo)
    return ordered[lo:hi + 2]


def _bucket_start(instant: datetime, unit: str, zone: tzinfo) -> datetime:
    """The first instant of the bucket that holds ``instant``."""
    wall = _floor_wall(instant.astimezone(zone).replace(tzinfo=None), unit)
    edges = [edge for edge in _wall_edges(wall, zone) if edge <= instant]
    return max(edges) if edges else instant


def _default_start(end: datetime, unit: str, zone: tzinfo) -> datetime:
    # Whole buckets ending with the one that holds ``end``: 24 hours, 31 days, 12 months.
    if unit == "hour":
        return _bucket_start(end - timedelta(hours=23), unit, zone)
    wall = _floor_wall(end.astimezone(zone).replace(tzinfo=None), unit)
    return _wall_edge(_step_wall(wall, unit, -30 if unit == "day" else -11), zone)
