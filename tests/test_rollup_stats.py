"""Statistics read rollups for whole 15-minute buckets and raw rows for the ragged edges:
on random data, ranges, users and time zones their results equal a raw scan's exactly."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import captured_statements, clear_usage, utc

from llm_tracker import flush, record_usage
from llm_tracker.llm_usage_stats import (
    get_stats_by_model,
    get_summary_stats,
    get_time_series_stats,
    get_token_stats_from_query,
    raw_scan,
)

ZONES = [
    "UTC",
    "Asia/Kathmandu",
    "Asia/Kolkata",
    "America/New_York",
    # Not 15-minute aligned: every hour's edge is ragged.
    timezone(timedelta(minutes=7)),
]
# Two windows of four days: New York's spring-forward (8 March) and fall-back (1 November).
BASES = [datetime(2026, 3, 6, 20, tzinfo=UTC), datetime(2026, 10, 30, 20, tzinfo=UTC)]
WINDOW_MINUTES = 4 * 24 * 60


micros = st.sampled_from([0, 1, 999_999, 500_000]) | st.integers(0, 999_999)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "minute": st.integers(0, WINDOW_MINUTES),
            "second": st.sampled_from([0, 59]) | st.integers(0, 59),
            "micro": micros,
            "model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "acme-x", "Acme-Y"]),
            "provider": st.sampled_from([None, "openai", "azure"]),
            "user_id": st.sampled_from([None, 1, 2]),
            "node": st.sampled_from(["n1", "n2"]),
            "source": st.sampled_from([None, "api", "batch"]),
            "success": st.booleans(),
            # Bin edges and their neighbours, and anything up to the column's limit.
            "latency": st.none()
            | st.sampled_from([0, 1, 11, 12, 13, 1000, 2**31 - 1])
            | st.integers(0, 2**31 - 1),
            "prompt": st.integers(0, 5000),
            "completion": st.integers(0, 500),
            "cached": st.integers(0, 100),
        }
    ),
    max_size=30,
)
bound = st.none() | st.fixed_dictionaries(
    {
        "minute": st.integers(-60, WINDOW_MINUTES + 60),
        "micro": micros,
        # aware UTC, naive (read in the zone), a date-only string, or exactly a row's instant
        "form": st.sampled_from(["aware", "naive", "date", "row"]),
        "row": st.integers(0, 29),
    }
)
queries = st.lists(
    st.fixed_dictionaries(
        {
            "start": bound,
            "end": bound,
            "user_id": st.sampled_from([None, 1, 2, 3]),
            "tz": st.sampled_from(ZONES),
            "granularity": st.sampled_from(["day", "month"]),
        }
    ),
    min_size=1,
    max_size=3,
)


def _instant(base: datetime, row) -> datetime:
    return base + timedelta(minutes=row["minute"], seconds=row["second"], microseconds=row["micro"])


def _bound(spec, base: datetime, zone, data):
    if spec is None:
        return None
    instant = base + timedelta(minutes=spec["minute"], microseconds=spec["micro"])
    if spec["form"] == "row" and data:
        return _instant(base, data[spec["row"] % len(data)])
    if spec["form"] in ("aware", "row"):
        return instant
    if isinstance(zone, str):
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(zone)
    local = instant.astimezone(zone)
    if spec["form"] == "date":
        return local.date().isoformat()
    return local.replace(tzinfo=None)


def _stats(start, end, user_id, tz, granularity):
    args = {"start_date": start, "end_date": end, "user_id": user_id, "tz": tz}
    try:
        summary = get_summary_stats(**args)
    except ValueError as exc:  # start after end: both ways must say so
        return ("error", str(exc))
    combined = get_token_stats_from_query({**args, "granularity": granularity})
    return (
        summary,
        get_stats_by_model(**args),
        get_time_series_stats(granularity, **args),
        combined,
    )


def record_rows(base: datetime, data) -> None:
    """Replace every usage row with the rows ``data`` describes (in an app context)."""
    clear_usage()
    for r in data:
        record_usage(
            r["model"],
            r["prompt"],
            r["completion"],
            cached_tokens=min(r["cached"], r["prompt"]),
            user_id=r["user_id"],
            provider=r["provider"],
            node_name=r["node"],
            source_type=r["source"],
            success=r["success"],
            created_at=_instant(base, r),
            latency_ms=r["latency"],
        )
    flush()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(base=st.sampled_from(BASES), data=rows, asked=queries)
def test_rollup_stats_equal_raw_scan(app, base, data, asked):
    with app.app_context():
        record_rows(base, data)
        for q in asked:
            if q["end"] is None and q["granularity"] == "day":
                # Without an end a series runs to now: keep hourly ones small.
                q = {**q, "granularity": "month"}
            start = _bound(q["start"], base, q["tz"], data)
            end = _bound(q["end"], base, q["tz"], data)
            args = (start, end, q["user_id"], q["tz"], q["granularity"])
            with raw_scan():
                expected = _stats(*args)
            assert _stats(*args) == expected


def seed() -> None:
    record_usage("gpt-4o-mini", 1000, 100, user_id=1, created_at=utc(2026, 1, 10, 10, 0))
    record_usage("gpt-4o-mini", 2000, 200, user_id=1, created_at=utc(2026, 1, 10, 10, 6))
    record_usage("acme-x", 30, 3, created_at=utc(2026, 1, 10, 10, 7))  # unpriced
    record_usage("gpt-4o", 400, 40, success=False, created_at=utc(2026, 1, 10, 10, 20))
    record_usage("gpt-4o-mini", 5, 5, user_id=2, created_at=utc(2026, 1, 10, 11, 59, 59))
    flush()


def test_ragged_start_reads_raw_rows_for_the_edge(app_ctx):
    seed()
    # 10:07 .. 12:00: raw rows 10:07-10:15, rollups from 10:15 on.
    summary = get_summary_stats("2026-01-10T10:07:00Z", "2026-01-10T12:00:00Z")
    assert summary["total_calls"] == 3
    assert summary["total_tokens"] == 33 + 440 + 10
    assert summary["unpriced_calls"] == 1
    assert summary["failed_calls"] == 1
    # gpt-4o: 400 x $2.50 + 40 x $10 per Mtok; gpt-4o-mini: 5 x 0.15 + 5 x 0.60.
    assert summary["total_cost_usd"] == "0.001403750"
    with raw_scan():
        assert get_summary_stats("2026-01-10T10:07:00Z", "2026-01-10T12:00:00Z") == summary


def test_only_unpriced_calls_cost_null_and_no_calls_cost_zero(app_ctx):
    seed()
    by_model = {r["model"]: r for r in get_stats_by_model("2026-01-10", "2026-01-10")}
    assert by_model["acme-x"]["total_cost_usd"] is None
    assert by_model["gpt-4o-mini"]["total_calls"] == 3
    empty = get_summary_stats("2026-02-01", "2026-02-02")
    assert (empty["total_calls"], empty["total_cost_usd"]) == (0, "0.000000000")


def test_whole_buckets_are_read_from_the_rollup_table(app_ctx):
    seed()
    with captured_statements() as statements:
        aligned = get_summary_stats("2026-01-10T10:00:00Z", "2026-01-10T11:59:59.999999Z")
        ragged = get_summary_stats("2026-01-10T10:07:00Z", "2026-01-10T11:59:59.999999Z")
    assert aligned["total_calls"] == 5 and ragged["total_calls"] == 3
    raw_table = re.compile(r"FROM llm_tracker_usage\b(?!_rollup)")
    # Per summary: one statement for the sums, one for the latency histogram.
    assert len(statements) == 4
    for sums, rollup in ((0, "llm_tracker_usage_rollup"), (1, "llm_tracker_latency_rollup")):
        # Whole buckets only: the rollup table alone.
        assert f"FROM {rollup}" in statements[sums]
        assert not raw_table.search(statements[sums])
        # 10:07-10:15 from raw rows, the rest from rollups, in one statement.
        assert f"FROM {rollup}" in statements[sums + 2]
        assert raw_table.search(statements[sums + 2])


@pytest.mark.parametrize("tz", ["Asia/Kathmandu", "America/New_York"])
def test_series_across_dst_and_quarter_hour_zones(app_ctx, tz):
    start = utc(2026, 3, 7)
    for i in range(0, 3 * 24 * 60, 37):
        record_usage(
            ("gpt-4o-mini", "acme-x")[i % 2],
            i % 1000,
            7,
            user_id=(None, 1)[i % 2],
            created_at=start + timedelta(minutes=i, seconds=i % 60),
        )
    flush()
    for granularity, lo, hi in (
        ("day", "2026-03-08", "2026-03-08"),
        ("month", "2026-03-07T05:10:00", "2026-03-09T19:22:00"),
    ):
        args = {"start_date": lo, "end_date": hi, "tz": tz}
        series = get_time_series_stats(granularity, **args)
        with raw_scan():
            assert series == get_time_series_stats(granularity, **args)
        assert sum(b["total_calls"] for b in series) == get_summary_stats(**args)["total_calls"]
