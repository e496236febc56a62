"""Usage statistics for charts and cost analysis: summary, per model, and time series.

Every figure is one ``query.aggregate`` over a planned range: whole UTC days from the
daily rollups, whole 15-minute buckets from the 15-minute rollups, and only the ragged
edges (a start of 10:07 reads the raw rows of 10:07-10:15) from the raw rows. Only the
bucket edges of a series are computed in Python (``buckets``), where ``zoneinfo`` knows
every zone's DST rules. Latency percentiles come the same way from the latency
histogram rollups (``latency``). ``raw_scan()`` makes the same functions aggregate raw rows alone:
the property tests and the benchmark compare both.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from .buckets import GRANULARITIES, MAX_BUCKETS, bucket_edges, default_start
from .database import db, utcnow
from .latency import percentile
from .models import REPORTED_TOKEN_COLUMNS, User
from .params import DateArg, is_blank, parse_int, parse_range, parse_text, parse_tz, parse_user_id
from .pricing import format_money
from .query import Filters, Sums, aggregate, latency_histograms, raw_scan

__all__ = [
    "DIMENSIONS",
    "GRANULARITIES",
    "MAX_BUCKETS",
    "MAX_GROUPS",
    "get_stats_by_dimension",
    "get_stats_by_model",
    "get_summary_stats",
    "get_time_series_stats",
    "get_token_stats_from_query",
    "raw_scan",
]


# A breakdown's dimension -> the column of the raw rows and the rollups it groups by.
DIMENSIONS = {
    "user": "user_id",
    "node": "node_name",
    "source_type": "source_type",
    "provider": "provider",
    "model": "model",
}
MAX_GROUPS = 1000
# Keyword filters every statistic takes, beside the seed's user_id.
FILTER_NAMES = ("node_name", "source_type", "provider", "model", "model_exact")


def _filters(
    user_id: int | str | None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    model_exact: str | None = None,
) -> Filters:
    """The calls a statistic counts; bad values raise ``ValueError``."""
    return Filters(
        user_id=parse_user_id(user_id),
        node_name=parse_text(node_name, "node_name"),
        source_type=parse_text(source_type, "source_type"),
        provider=parse_text(provider, "provider"),
        model=parse_text(model, "model"),
        model_exact=parse_text(model_exact, "model_exact"),
    )


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


def _latency_dict(histogram: Mapping[int, int] | None) -> dict[str, int | None]:
    histogram = histogram or {}
    return {
        "latency_ms_p50": percentile(histogram, 50),
        "latency_ms_p95": percentile(histogram, 95),
    }


def _summary_dict(sums: Sums | None) -> dict[str, Any]:
    sums = sums or Sums()
    result = _token_dict(sums)
    result.update(
        successful_calls=sums.successful_calls,
        failed_calls=sums.calls - sums.successful_calls,
        cache_savings_usd=format_money(sums.cache_savings_usd),
    )
    return result


def _by_model(
    found: Mapping[str, Sums], latency: Mapping[str, Mapping[int, int]]
) -> list[dict[str, Any]]:
    result = [
        {"model": model, **_token_dict(sums), **_latency_dict(latency.get(model))}
        for model, sums in found.items()
    ]
    # Sorted here rather than in SQL so ties order the same whatever the database collation.
    result.sort(key=lambda r: (-r["total_tokens"], r["model"]))
    return result


def get_summary_stats(
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    *,
    tz: str | tzinfo | None = None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    model_exact: str | None = None,
) -> dict[str, Any]:
    """Totals of tokens, calls (all, successful, failed), cost and latency in the range.

    ``total_cost_usd`` sums the priced calls (null when there are calls and none is
    priced); ``unpriced_calls`` counts the others; ``cache_savings_usd`` is what the cached
    input would have cost at the uncached rate, minus what it cost; ``latency_ms_p50`` /
    ``latency_ms_p95`` come from the latency histogram (within 10 %). Keyword filters:
    ``node_name``, ``source_type``, ``provider``, ``model_exact`` (exact) and ``model``
    (a case-insensitive substring).
    """
    span = parse_range(start_date, end_date, tz)
    where = _filters(user_id, node_name, source_type, provider, model, model_exact)
    found = aggregate([span], where)
    latency = latency_histograms([span], where)
    return {**_summary_dict(found.get((0, None))), **_latency_dict(latency.get((0, None)))}


def get_stats_by_model(
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    *,
    tz: str | tzinfo | None = None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    model_exact: str | None = None,
) -> list[dict[str, Any]]:
    """Calls, tokens, cost and latency per model, most tokens first (ties by model name);
    the same keyword filters as ``get_summary_stats``."""
    span = parse_range(start_date, end_date, tz)
    where = _filters(user_id, node_name, source_type, provider, model, model_exact)
    found = aggregate([span], where, "model")
    latency = latency_histograms([span], where, "model")
    return _by_model(
        {model: sums for (_, model), sums in found.items()},
        {model: histogram for (_, model), histogram in latency.items()},
    )


def _dimension(dimension: Any, name: str = "dimension") -> str:
    column = DIMENSIONS.get(dimension) if isinstance(dimension, str) else None
    if column is None:
        raise ValueError(
            f"unknown {name} {dimension!r}: use one of {', '.join(map(repr, DIMENSIONS))}"
        )
    return column


def _ranked(found: Mapping[Any, Sums]) -> list[tuple[Any, Sums]]:
    # Most priced cost first, then most tokens, then by key (no key last): a stable order.
    return sorted(
        found.items(),
        key=lambda item: (
            -item[1].priced_cost,
            -item[1].tokens["total_tokens"],
            item[0] is None,
            item[0] if item[0] is not None else "",
        ),
    )


def _labels(dimension: str, keys: list[Any]) -> dict[Any, str | None]:
    """What the dashboard shows for each key: the username for users, else the key."""
    labels: dict[Any, str | None] = {key: None if key is None else str(key) for key in keys}
    if dimension == "user":
        # users.id is 32-bit; a usage row may name any 64-bit id (no account: its number).
        ids = [key for key in keys if key is not None and -(2**31) <= key < 2**31]
        if ids:
            stmt = select(User.id, User.username).where(User.id.in_(ids))
            labels.update({uid: name for uid, name in db.session.execute(stmt)})
    return labels


def _fold(found: Mapping[Any, Sums], limit: int) -> list[tuple[Any, Sums, int]]:
    """The top ``limit`` ``(key, sums, 0)`` and, when more, ``(OTHERS, sums, count)``."""
    ranked = _ranked(found)
    head = [(key, sums, 0) for key, sums in ranked[:limit]]
    if len(ranked) > limit:
        rest = Sums()
        for _, sums in ranked[limit:]:
            rest.add(sums)
        head.append((_OTHERS, rest, len(ranked) - limit))
    return head


_OTHERS = object()


def _describe_key(key: Any, labels: Mapping[Any, str | None], count: int) -> dict[str, Any]:
    if key is _OTHERS:
        return {"key": None, "label": "others", "others": True, "group_count": count}
    return {"key": None if key is None else str(key), "label": labels[key]}


def get_stats_by_dimension(
    dimension: str,
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    tz: str | tzinfo | None = None,
    limit: int | str | None = 10,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
    *,
    model: str | None = None,
    model_exact: str | None = None,
) -> list[dict[str, Any]]:
    """The range's calls grouped by ``dimension`` (``user``, ``node``, ``source_type``,
    ``provider``, ``model``), most cost first (ties: most tokens).

    Each group has ``key`` (a string; None for calls without a value), ``label`` (the
    username for users, else the key), ``cost_share`` (0..1 of the range's priced cost)
    and the summary's sums. Beyond ``limit`` groups the rest are folded into one last
    group ``{"key": None, "label": "others", "others": True, "group_count": N, ...}``, so
    the groups add up to the summary exactly. Bad values raise ``ValueError``.
    """
    column = _dimension(dimension)
    top = parse_int(limit, "limit", 10, 1, MAX_GROUPS)
    span = parse_range(start_date, end_date, tz)
    where = _filters(user_id, node_name, source_type, provider, model, model_exact)
    found = {key: sums for (_, key), sums in aggregate([span], where, column).items()}
    total = sum((sums.priced_cost for sums in found.values()), Decimal(0))
    folded = _fold(found, top)
    labels = _labels(dimension, [key for key, _, _ in folded if key is not _OTHERS])
    return [
        {
            **_describe_key(key, labels, count),
            "cost_share": float(sums.priced_cost / total) if total else 0.0,
            **_summary_dict(sums),
        }
        for key, sums, count in folded
    ]


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


def _bucket(edges: list[datetime], zone: tzinfo, i: int) -> str:
    return edges[i].astimezone(zone).isoformat()


def _series(edges: list[datetime], zone: tzinfo, found: Mapping[int, Sums]) -> list[dict[str, Any]]:
    return [
        {"bucket": _bucket(edges, zone, i), **_token_dict(found.get(i))}
        for i in range(len(edges) - 1)
    ]


def get_time_series_stats(
    granularity: str,
    start_date: DateArg = None,
    end_date: DateArg = None,
    user_id: int | str | None = None,
    *,
    tz: str | tzinfo | None = None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    model_exact: str | None = None,
) -> list[dict[str, Any]]:
    """Calls, tokens and cost per local hour (``day``), day (``month``) or month (``year``).

    Every bucket of the range is present, zero-filled; ``bucket`` is the ISO 8601 local
    start of the bucket with its UTC offset. Without a range: the current hour and the 23
    before it (``day``), today and the 30 days before (``month``), this month and the 11
    before (``year``); with only one bound the other is now / that window before the end.
    The same keyword filters as ``get_summary_stats``.
    """
    where = _filters(user_id, node_name, source_type, provider, model, model_exact)
    edges, spans, zone = _series_spans(granularity, start_date, end_date, tz)
    found = aggregate(spans, where)
    return _series(edges, zone, {i: sums for (i, _), sums in found.items()})


def _stacked(
    dimension: str,
    edges: list[datetime],
    zone: tzinfo,
    spans: list[Any],
    where: Filters,
    limit: int,
) -> dict[str, Any]:
    """Per bucket, the calls, tokens and cost of each of the top ``limit`` keys (others
    folded): a stacked chart's data."""
    found = aggregate(spans, where, DIMENSIONS[dimension])
    totals: dict[Any, Sums] = {}
    for (_, key), sums in found.items():
        totals.setdefault(key, Sums()).add(sums)
    folded = _fold(totals, limit)
    labels = _labels(dimension, [key for key, _, _ in folded if key is not _OTHERS])
    column = {key: n for n, (key, _, _) in enumerate(folded)}
    others = column.get(_OTHERS)
    cells = [[Sums() for _ in folded] for _ in spans]
    for (i, key), sums in found.items():
        cells[i][column.get(key, others)].add(sums)  # type: ignore[index]
    return {
        "dimension": dimension,
        "keys": [_describe_key(key, labels, count) for key, _, count in folded],
        "series": [
            {
                "bucket": _bucket(edges, zone, i),
                "groups": [_cell(sums) for sums in row],
            }
            for i, row in enumerate(cells)
        ],
    }


def _cell(sums: Sums) -> dict[str, Any]:
    full = _token_dict(sums)
    return {key: full[key] for key in ("total_calls", "total_tokens", "total_cost_usd")}


def get_token_stats_from_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """``summary``, ``by_model`` and ``series`` (None without ``granularity``) from a query.

    Reads ``start_date``, ``end_date``, ``user_id``, ``granularity``, ``tz``, the filters
    ``node_name``, ``source_type``, ``provider``, ``model`` and ``model_exact``, and
    ``group_by`` / ``series_by`` (a dimension, with ``limit``) which add ``breakdown`` /
    ``series_breakdown``; empty values count as absent. Bad values raise ``ValueError``.
    """
    args = {key: params.get(key) for key in ("start_date", "end_date", "user_id")}
    filters = {name: params.get(name) for name in FILTER_NAMES}
    where = _filters(args["user_id"], **filters)
    tz = parse_tz(params.get("tz"))
    granularity: Any = params.get("granularity")
    group_by: Any = params.get("group_by")
    series_by: Any = params.get("series_by")
    limit = parse_int(params.get("limit"), "limit", 10, 1, MAX_GROUPS)
    if not is_blank(group_by):
        _dimension(group_by, "group_by")
    if not is_blank(series_by):
        _dimension(series_by, "series_by")
        if is_blank(granularity):
            raise ValueError("series_by needs a granularity ('day', 'month' or 'year')")
    result: dict[str, Any]
    if is_blank(granularity):
        result = {
            "summary": get_summary_stats(**args, tz=tz, **filters),
            "by_model": get_stats_by_model(**args, tz=tz, **filters),
            "series": None,
        }
    elif is_blank(args["start_date"]) or is_blank(args["end_date"]):
        # The series' default window is not the summary's range (all time).
        result = {
            "summary": get_summary_stats(**args, tz=tz, **filters),
            "by_model": get_stats_by_model(**args, tz=tz, **filters),
            "series": get_time_series_stats(granularity, **args, tz=tz, **filters),
        }
    else:
        result = _tiled(granularity, args["start_date"], args["end_date"], tz, where)
    if not is_blank(group_by):
        result["breakdown"] = {
            "dimension": group_by,
            "groups": get_stats_by_dimension(
                group_by,
                args["start_date"],
                args["end_date"],
                args["user_id"],
                tz,
                limit,
                **filters,
            ),
        }
    if not is_blank(series_by):
        edges, spans, zone = _series_spans(granularity, args["start_date"], args["end_date"], tz)
        result["series_breakdown"] = _stacked(series_by, edges, zone, spans, where, limit)
    return result


def _tiled(
    granularity: str, start_date: DateArg, end_date: DateArg, tz: tzinfo, where: Filters
) -> dict[str, Any]:
    # With both dates the series' buckets tile the summary's range exactly, so one
    # aggregate grouped by bucket and model gives all three (and one latency read both
    # latencies).
    edges, spans, zone = _series_spans(granularity, start_date, end_date, tz)
    found = aggregate(spans, where, "model")
    per_bucket: dict[int, Sums] = {}
    per_model: dict[str, Sums] = {}
    total = Sums()
    for (i, model), sums in found.items():
        per_bucket.setdefault(i, Sums()).add(sums)
        per_model.setdefault(model, Sums()).add(sums)
        total.add(sums)
    model_latency: dict[str, dict[int, int]] = {}
    all_latency: dict[int, int] = {}
    # The buckets tile the range: one span gives the same histograms in fewer rows.
    whole = [(spans[0][0], spans[-1][1])] if spans else []
    for (_, model), histogram in latency_histograms(whole, where, "model").items():
        for target in (model_latency.setdefault(model, {}), all_latency):
            for k, calls in histogram.items():
                target[k] = target.get(k, 0) + calls
    return {
        "summary": {**_summary_dict(total), **_latency_dict(all_latency)},
        "by_model": _by_model(per_model, model_latency),
        "series": _series(edges, zone, per_bucket),
    }
