"""Usage statistics for charts and cost analysis: summary, per model, and time series.

Every figure is one ``query.aggregate`` over a planned range: whole UTC days from the
daily rollups, whole 15-minute buckets from the 15-minute rollups, and only the ragged
edges (a start of 10:07 reads the raw rows of 10:07-10:15) from the raw rows. Only the
bucket edges of a series are computed in Python (``buckets``), where ``zoneinfo`` knows
every zone's DST rules. ``raw_scan()`` makes the same functions aggregate raw rows alone:
the property tests and the benchmark compare both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from .buckets import GRANULARITIES, MAX_BUCKETS, bucket_edges, default_start
from .database import utcnow
from .models import REPORTED_TOKEN_COLUMNS
from .params import DateArg, is_blank, parse_range, parse_tz, parse_user_id
from .pricing import format_money
from .query import Filters, Sums, aggregate, raw_scan

__all__ = [
    "GRANULARITIES",
    "MAX_BUCKETS",
    "get_stats_by_model",
    "get_summary_stats",
    "get_time_series_stats",
    "get_token_stats_from_query",
    "raw_scan",
]


def _stat_key(column: str) -> str:
    return column if column.startswith("total_") else f"total_{column}"


def _token_dict(sums: Sums | None) -> dict[str, Any]:
    """Tokens, calls and cost of one group (None: a bucket with no calls)."""
    sums = sums or Sums()
    result: dict[str, Any] = {_stat_key(c): sums.tokens[c] for c in REPORTED_TOKEN_COLUMNS}
    cost = sums.total_cost_usd
    # No calls cost nothing; calls none of which is priced have no known cost (null),
    # never a silent $0.
    if cost is None and sums.calls == 0:
        cost = Decimal(0)
    result["total_calls"] = sums.calls
    result["total_cost_usd"] = format_money(cost)
    result["unpriced_calls"] = sums.unpriced_calls
    return result


def _summary_dict(sums: Sums | None) -> dict[str, Any]:
    sums = sums or Sums()
    result = _token_dict(sums)
    result.update(
        successful_calls=sums.successful_calls,
        failed_calls=sums.calls - sums.successful_calls,
        cache_savings_usd=format_money(sums.cache_savings_usd),
    )
    return result


def _by_model(found: Mapping[str, Sums]) -> list[dict[str, Any]]:
    result = [{"model": model, **_token_dict(sums)} for model, sums in found.items()]
    # Sorted here rather than in SQL so ties order the same whatever the database collation.
    result.sort(key=lambda r: (-r["total_tokens"], r["model"]))
    return result


def get_summary_stats(
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    *,
    tz: str | tzinfo | None = None,
) -> dict[str, Any]:
    """Totals of tokens, calls (all, successful, failed) and cost in the range.

    ``total_cost_usd`` sums the priced calls (null when there are calls and none is
    priced); ``unpriced_calls`` counts the others; ``cache_savings_usd`` is what the cached
    input would have cost at the uncached rate, minus what it cost.
    """
    span = parse_range(start_date, end_date, tz)
    found = aggregate([span], Filters(user_id=parse_user_id(user_id)))
    return _summary_dict(found.get((0, None)))


def get_stats_by_model(
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    *,
    tz: str | tzinfo | None = None,
) -> list[dict[str, Any]]:
    """Calls, tokens and cost per model, most tokens first (ties by model name)."""
    span = parse_range(start_date, end_date, tz)
    found = aggregate([span], Filters(user_id=parse_user_id(user_id)), "model")
    return _by_model({model: sums for (_, model), sums in found.items()})


def _series_spans(
    granularity: str, start_date: DateArg, end_date: DateArg, tz: str | tzinfo | None
) -> tuple[list[datetime], list[tuple[datetime, datetime]], tzinfo]:
    """A series' bucket edges, its spans (bucket i clipped to the range) and its zone."""
    unit = GRANULARITIES.get(granularity) if isinstance(granularity, str) else None
    if unit is None:
        raise ValueError(
            f"unsupported granularity {granularity!r}: use one of 'day', 'month', 'year'"
        )
    zone = parse_tz(tz)
    start, end = parse_range(start_date, end_date, zone)
    try:
        if end is None:
            now = utcnow()
            end = (
                max(now, start) + timedelta(microseconds=1)
                if start is not None
                else (now + timedelta(microseconds=1))
            )
        if start is None:
            start = default_start(end - timedelta(microseconds=1), unit, zone)
        edges = bucket_edges(start, end, unit, zone)
    except OverflowError:
        raise ValueError("the date range is outside the supported range") from None
    # Bucket i is [edges[i], edges[i+1]); the outer two are clipped to the range itself, so
    # the pieces alone decide which rows count. The edges are exact UTC instants, so every
    # zone and DST day is exact.
    spans = [(max(edges[i], start), min(edges[i + 1], end)) for i in range(len(edges) - 1)]
    return edges, spans, zone


def _series(edges: list[datetime], zone: tzinfo, found: Mapping[int, Sums]) -> list[dict[str, Any]]:
    return [
        {"bucket": edges[i].astimezone(zone).isoformat(), **_token_dict(found.get(i))}
        for i in range(len(edges) - 1)
    ]


def get_time_series_stats(
    granularity: str,
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    *,
    tz: str | tzinfo | None = None,
) -> list[dict[str, Any]]:
    """Calls, tokens and cost per local hour (``day``), day (``month``) or month (``year``).

    Every bucket of the range is present, zero-filled; ``bucket`` is the ISO 8601 local
    start of the bucket with its UTC offset. Without a range: the current hour and the 23
    before it (``day``), today and the 30 days before (``month``), this month and the 11
    before (``year``); with only one bound the other is now / that window before the end.
    """
    edges, spans, zone = _series_spans(granularity, start_date, end_date, tz)
    found = aggregate(spans, Filters(user_id=parse_user_id(user_id)))
    return _series(edges, zone, {i: sums for (i, _), sums in found.items()})


def get_token_stats_from_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """``summary``, ``by_model`` and ``series`` (None without ``granularity``) from a query.

    Reads ``start_date``, ``end_date``, ``user_id``, ``granularity`` and ``tz``; empty
    values count as absent. Bad values raise ``ValueError``.
    """
    args = {key: params.get(key) for key in ("start_date", "end_date", "user_id")}
    tz = parse_tz(params.get("tz"))
    granularity: Any = params.get("granularity")
    if is_blank(granularity):
        return {
            "summary": get_summary_stats(**args, tz=tz),
            "by_model": get_stats_by_model(**args, tz=tz),
            "series": None,
        }
    if is_blank(args["start_date"]) or is_blank(args["end_date"]):
        # The series' default window is not the summary's range (all time).
        return {
            "summary": get_summary_stats(**args, tz=tz),
            "by_model": get_stats_by_model(**args, tz=tz),
            "series": get_time_series_stats(granularity, **args, tz=tz),
        }
    # With both dates the series' buckets tile the summary's range exactly, so one
    # aggregate grouped by bucket and model gives all three.
    edges, spans, zone = _series_spans(granularity, args["start_date"], args["end_date"], tz)
    found = aggregate(spans, Filters(user_id=parse_user_id(args["user_id"])), "model")
    per_bucket: dict[int, Sums] = {}
    per_model: dict[str, Sums] = {}
    total = Sums()
    for (i, model), sums in found.items():
        per_bucket.setdefault(i, Sums()).add(sums)
        per_model.setdefault(model, Sums()).add(sums)
        total.add(sums)
    return {
        "summary": _summary_dict(total),
        "by_model": _by_model(per_model),
        "series": _series(edges, zone, per_bucket),
    }
