"""llm_usage_stats: summary, by model, time series (time zones, DST) on SQLite and PostgreSQL.

``add`` records in the app's write mode (background by default); each test calls ``flush()``
once it has recorded what it reads (``seed_rows`` does).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from support.helpers import captured_statements, utc
from werkzeug.datastructures import MultiDict

from llm_tracker import flush, llm_usage_stats, record_usage
from llm_tracker.llm_usage_stats import (
    get_stats_by_model,
    get_summary_stats,
    get_time_series_stats,
    get_token_stats_from_query,
)
from llm_tracker.params import parse_range, parse_when

TOKEN_KEYS = (
    "total_prompt_tokens",
    "total_completion_tokens",
    "total_tokens",
    "total_cached_tokens",
    "total_reasoning_tokens",
)

pytestmark = pytest.mark.contract


def add(
    when,
    model="gpt-4o-mini",
    prompt=0,
    completion=0,
    *,
    cached=0,
    reasoning=0,
    success=True,
    user_id=None,
    latency=None,
):
    record_usage(
        model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        success=success,
        error=None if success else "RateLimitError: 429",
        user_id=user_id,
        created_at=when,
        latency_ms=latency,
    )


def seed_rows():
    """Six rows around 2026-01-10 (UTC); expected figures are worked out in each test.

    Costs at genai-prices' rates (USD per million input / cached input / output):
    gpt-4o-mini 0.15 / 0.075 / 0.60, gpt-4o 2.50 / 1.25 / 10.00, o3-mini 1.10 / 0.55 / 4.40.
    Latencies (ms) fall in the histogram bins (see llm_tracker.latency) 113-132 (reported
    as 122), 813-958 (883), 2585-3049 (2807), 44-50 (47) and 217-255 (235); one row has none.
    """
    add(utc(2026, 1, 10, 8, 0), "gpt-4o-mini", 100, 50, cached=10, user_id=1, latency=120)
    add(utc(2026, 1, 10, 9, 30), "gpt-4o", 1000, 200, user_id=2, latency=900)
    add(
        utc(2026, 1, 10, 23, 59, 59, 999999),
        "o3-mini",
        300,
        400,
        reasoning=250,
        user_id=1,
        latency=3000,
    )
    add(utc(2026, 1, 11, 0, 0), "gpt-4o-mini", 20, 0, success=False, user_id=1, latency=45)
    add(utc(2026, 1, 12, 12, 0), "gpt-4o", 5, 5)
    add(utc(2026, 1, 9, 23, 59, 59), "o3-mini", 1, 2, user_id=2, latency=250)
    flush()


def nonzero(series):
    """{index: (calls, total_tokens)} of the buckets that have calls."""
    return {
        i: (b["total_calls"], b["total_tokens"]) for i, b in enumerate(series) if b["total_calls"]
    }


# --- summary ----------------------------------------------------------------------------


def test_summary_all_eight_keys(app_ctx):
    seed_rows()
    assert get_summary_stats() == {
        "total_prompt_tokens": 1426,
        "total_completion_tokens": 657,
        "total_tokens": 2083,
        "total_cached_tokens": 10,
        "total_reasoning_tokens": 250,
        "total_calls": 6,
        "successful_calls": 5,
        "failed_calls": 1,
        # 44.25 (90 + 10 cached in, 50 out) + 4500 + 2090 + 3 + 62.5 + 9.9 micro-USD
        "total_cost_usd": "0.006709650",
        "unpriced_calls": 0,
        # 10 cached tokens at 0.15 instead of 0.075 per million
        "cache_savings_usd": "0.000000750",
        # Nearest rank of 45, 120, 250, 900, 3000: the 3rd (250) and the 5th (3000).
        "latency_ms_p50": 235,
        "latency_ms_p95": 2807,
    }


def test_summary_empty_database_is_zeros(app_ctx):
    assert get_summary_stats() == {
        **{
            key: 0
            for key in (
                *TOKEN_KEYS,
                "total_calls",
                "successful_calls",
                "failed_calls",
                "unpriced_calls",
            )
        },
        "total_cost_usd": "0.000000000",
        "cache_savings_usd": "0.000000000",
        "latency_ms_p50": None,
        "latency_ms_p95": None,
    }


def test_summary_user_filter(app_ctx):
    seed_rows()
    assert get_summary_stats(user_id=1) == {
        "total_prompt_tokens": 420,
        "total_completion_tokens": 450,
        "total_tokens": 870,
        "total_cached_tokens": 10,
        "total_reasoning_tokens": 250,
        "total_calls": 3,
        "successful_calls": 2,
        "failed_calls": 1,
        "total_cost_usd": "0.002137250",  # 44.25 + 2090 + 3 micro-USD
        "unpriced_calls": 0,
        "cache_savings_usd": "0.000000750",
        "latency_ms_p50": 122,  # 45, 120, 3000: the 2nd and the 3rd
        "latency_ms_p95": 2807,
    }
    assert get_summary_stats(user_id="2")["total_calls"] == 2
    assert get_summary_stats(user_id=99)["total_calls"] == 0


def test_summary_date_only_end_covers_the_whole_day(app_ctx):
    seed_rows()
    day = get_summary_stats(start_date="2026-01-10", end_date="2026-01-10")
    assert (
        day["total_calls"],
        day["total_tokens"],
        day["total_prompt_tokens"],
        day["total_completion_tokens"],
    ) == (3, 2050, 1400, 650)
    # A datetime end is inclusive to the microsecond: 23:59:59 leaves out 23:59:59.999999.
    assert (
        get_summary_stats(start_date="2026-01-10", end_date="2026-01-10T23:59:59")["total_calls"]
        == 2
    )


def test_summary_start_is_inclusive_with_offsets_and_tz(app_ctx):
    seed_rows()
    assert get_summary_stats(start_date="2026-01-10T09:30:00")["total_calls"] == 4
    assert get_summary_stats(start_date="2026-01-10T17:30:00+08:00")["total_calls"] == 4
    assert get_summary_stats(start_date="2026-01-10T09:30:00Z")["total_calls"] == 4
    assert get_summary_stats(start_date=datetime(2026, 1, 10, 9, 30))["total_calls"] == 4
    assert get_summary_stats(start_date="2026-01-10T09:30:00.000001")["total_calls"] == 3
    # Naive dates are read in tz: 17:30 in Shanghai is 09:30 UTC.
    assert (
        get_summary_stats(start_date="2026-01-10T17:30:00", tz="Asia/Shanghai")["total_calls"] == 4
    )
    # A Shanghai day is 16:00 UTC the day before to 16:00 UTC: 23:59:59 on the 9th is in.
    assert (
        get_summary_stats(start_date="2026-01-10", end_date="2026-01-10", tz="Asia/Shanghai")[
            "total_calls"
        ]
        == 3
    )


# --- by model ---------------------------------------------------------------------------


def test_by_model_sorted_by_total_tokens(app_ctx):
    seed_rows()
    assert get_stats_by_model() == [
        {
            "model": "gpt-4o",
            "total_calls": 2,
            "total_prompt_tokens": 1005,
            "total_completion_tokens": 205,
            "total_tokens": 1210,
            "total_cached_tokens": 0,
            "total_reasoning_tokens": 0,
            "total_cost_usd": "0.004562500",
            "unpriced_calls": 0,
            # 900 (the other call has no latency)
            "latency_ms_p50": 883,
            "latency_ms_p95": 883,
        },
        {
            "model": "o3-mini",
            "total_calls": 2,
            "total_prompt_tokens": 301,
            "total_completion_tokens": 402,
            "total_tokens": 703,
            "total_cached_tokens": 0,
            "total_reasoning_tokens": 250,
            "total_cost_usd": "0.002099900",
            "unpriced_calls": 0,
            "latency_ms_p50": 235,  # 250, 3000
            "latency_ms_p95": 2807,
        },
        {
            "model": "gpt-4o-mini",
            "total_calls": 2,
            "total_prompt_tokens": 120,
            "total_completion_tokens": 50,
            "total_tokens": 170,
            "total_cached_tokens": 10,
            "total_reasoning_tokens": 0,
            "total_cost_usd": "0.000047250",
            "unpriced_calls": 0,
            "latency_ms_p50": 47,  # 45, 120
            "latency_ms_p95": 122,
        },
    ]


def test_by_model_filters_and_ties(app_ctx):
    seed_rows()
    assert [(m["model"], m["total_tokens"]) for m in get_stats_by_model(user_id=1)] == [
        ("o3-mini", 700),
        ("gpt-4o-mini", 170),
    ]
    assert [m["model"] for m in get_stats_by_model("2026-01-11", "2026-01-31")] == [
        "gpt-4o-mini",
        "gpt-4o",
    ]
    add(utc(2026, 2, 1), "b-model", 7)
    add(utc(2026, 2, 1), "a-model", 7)
    flush()
    assert [m["model"] for m in get_stats_by_model(start_date="2026-02-01")] == [
        "a-model",
        "b-model",
    ]


# --- time series (UTC) ------------------------------------------------------------------


def test_series_hourly_day_is_24_zero_filled_buckets(app_ctx):
    seed_rows()
    series = get_time_series_stats("day", "2026-01-10", "2026-01-10")
    assert len(series) == 24
    assert series[0]["bucket"] == "2026-01-10T00:00:00+00:00"
    assert series[23]["bucket"] == "2026-01-10T23:00:00+00:00"
    assert nonzero(series) == {8: (1, 150), 9: (1, 1200), 23: (1, 700)}
    assert series[8] == {
        "bucket": "2026-01-10T08:00:00+00:00",
        "total_calls": 1,
        "total_prompt_tokens": 100,
        "total_completion_tokens": 50,
        "total_tokens": 150,
        "total_cached_tokens": 10,
        "total_reasoning_tokens": 0,
        "total_cost_usd": "0.000044250",
        "unpriced_calls": 0,
    }
    assert series[0] == {
        "bucket": "2026-01-10T00:00:00+00:00",
        "total_calls": 0,
        **{key: 0 for key in TOKEN_KEYS},
        "total_cost_usd": "0.000000000",
        "unpriced_calls": 0,
    }


def test_series_daily_month_and_monthly_year(app_ctx):
    seed_rows()
    month = get_time_series_stats("month", "2026-01-01", "2026-01-31")
    assert len(month) == 31
    assert month[0]["bucket"] == "2026-01-01T00:00:00+00:00"
    assert month[30]["bucket"] == "2026-01-31T00:00:00+00:00"
    assert nonzero(month) == {8: (1, 3), 9: (3, 2050), 10: (1, 20), 11: (1, 10)}

    year = get_time_series_stats("year", "2026-01-01", "2026-12-31")
    assert [b["bucket"] for b in year] == [f"2026-{m:02d}-01T00:00:00+00:00" for m in range(1, 13)]
    assert nonzero(year) == {0: (6, 2083)}


def test_series_user_filter_and_partial_range(app_ctx):
    seed_rows()
    month = get_time_series_stats("month", "2026-01-01", "2026-01-31", user_id=1)
    assert nonzero(month) == {9: (2, 850), 10: (1, 20)}
    # The outer buckets are clipped to the range: 08:00 is before the start, 09:30 is the end.
    part = get_time_series_stats("day", "2026-01-10T08:30:00", "2026-01-10T09:30:00")
    assert [(b["bucket"], b["total_calls"], b["total_tokens"]) for b in part] == [
        ("2026-01-10T08:00:00+00:00", 0, 0),
        ("2026-01-10T09:00:00+00:00", 1, 1200),
    ]


def test_series_is_one_group_by_statement(app_ctx):
    seed_rows()
    with captured_statements() as statements:
        series = get_time_series_stats("month", "2026-01-01", "2026-01-31")
    assert len(series) == 31
    assert len(statements) == 1
    assert "GROUP BY" in statements[0]


# --- time zones -------------------------------------------------------------------------


def test_series_shanghai_day(app_ctx):
    add(utc(2026, 1, 9, 15, 59, 59), prompt=1)  # 2026-01-09 23:59:59 local
    add(utc(2026, 1, 9, 16, 0), prompt=10)  # 2026-01-10 00:00 local
    add(utc(2026, 1, 10, 1, 30), prompt=100)  # 09:30 local
    add(utc(2026, 1, 10, 15, 59, 59), prompt=1000)  # 23:59:59 local
    add(utc(2026, 1, 10, 16, 0), prompt=10000)  # 2026-01-11 00:00 local
    flush()
    series = get_time_series_stats("day", "2026-01-10", "2026-01-10", tz="Asia/Shanghai")
    assert len(series) == 24
    assert series[0]["bucket"] == "2026-01-10T00:00:00+08:00"
    assert series[23]["bucket"] == "2026-01-10T23:00:00+08:00"
    assert nonzero(series) == {0: (1, 10), 9: (1, 100), 23: (1, 1000)}
    month = get_time_series_stats("month", "2026-01-01", "2026-01-31", tz="Asia/Shanghai")
    assert month[0]["bucket"] == "2026-01-01T00:00:00+08:00"
    assert nonzero(month) == {8: (1, 1), 9: (3, 1110), 10: (1, 10000)}
    summary = get_summary_stats("2026-01-10", "2026-01-10", tz="Asia/Shanghai")
    assert (summary["total_calls"], summary["total_tokens"]) == (3, 1110)


def test_series_new_york_spring_forward_has_23_hours(app_ctx):
    add(utc(2026, 3, 8, 4, 59, 59), prompt=100000)  # 2026-03-07 23:59:59 EST
    add(utc(2026, 3, 8, 5, 0), prompt=1000)  # 00:00 EST
    add(utc(2026, 3, 8, 6, 59, 59), prompt=1)  # 01:59:59 EST
    add(utc(2026, 3, 8, 7, 0), prompt=10)  # 03:00 EDT: 02:00 never happened
    add(utc(2026, 3, 9, 3, 59, 59), prompt=100)  # 23:59:59 EDT
    add(utc(2026, 3, 9, 4, 0), prompt=10000)  # 2026-03-09 00:00 EDT
    flush()
    series = get_time_series_stats("day", "2026-03-08", "2026-03-08", tz="America/New_York")
    assert len(series) == 23
    assert [b["bucket"] for b in series[:4]] == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]
    assert series[22]["bucket"] == "2026-03-08T23:00:00-04:00"
    assert nonzero(series) == {0: (1, 1000), 1: (1, 1), 2: (1, 10), 22: (1, 100)}
    # The daily series has a 23-hour 8 March.
    month = get_time_series_stats("month", "2026-03-01", "2026-03-31", tz="America/New_York")
    assert len(month) == 31
    assert month[7]["bucket"] == "2026-03-08T00:00:00-05:00"
    assert month[8]["bucket"] == "2026-03-09T00:00:00-04:00"
    assert nonzero(month) == {6: (1, 100000), 7: (4, 1111), 8: (1, 10000)}


def test_series_new_york_fall_back_has_25_hours(app_ctx):
    add(utc(2026, 11, 1, 3, 59, 59), prompt=100000)  # 2026-10-31 23:59:59 EDT
    add(utc(2026, 11, 1, 4, 0), prompt=1)  # 00:00 EDT
    add(utc(2026, 11, 1, 5, 30), prompt=10)  # 01:30 EDT
    add(utc(2026, 11, 1, 6, 30), prompt=100)  # 01:30 EST, the second time
    add(utc(2026, 11, 1, 7, 0), prompt=1000)  # 02:00 EST
    add(utc(2026, 11, 2, 4, 59, 59), prompt=10000)  # 23:59:59 EST
    add(utc(2026, 11, 2, 5, 0), prompt=1000000)  # 2026-11-02 00:00 EST
    flush()
    series = get_time_series_stats("day", "2026-11-01", "2026-11-01", tz="America/New_York")
    assert len(series) == 25
    assert [b["bucket"] for b in series[:4]] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    assert series[24]["bucket"] == "2026-11-01T23:00:00-05:00"
    assert nonzero(series) == {0: (1, 1), 1: (1, 10), 2: (1, 100), 3: (1, 1000), 24: (1, 10000)}
    summary = get_summary_stats("2026-11-01", "2026-11-01", tz="America/New_York")
    assert (summary["total_calls"], summary["total_tokens"]) == (5, 11111)


def test_series_kathmandu_quarter_hour_offset(app_ctx):
    add(utc(2026, 1, 9, 18, 14, 59), prompt=1)  # 2026-01-09 23:59:59 +05:45
    add(utc(2026, 1, 9, 18, 15), prompt=10)  # 2026-01-10 00:00
    add(utc(2026, 1, 9, 19, 14, 59), prompt=100)  # 00:59:59
    add(utc(2026, 1, 9, 19, 15), prompt=1000)  # 01:00
    add(utc(2026, 1, 10, 18, 14, 59), prompt=10000)  # 23:59:59
    add(utc(2026, 1, 10, 18, 15), prompt=100000)  # 2026-01-11 00:00
    flush()
    series = get_time_series_stats("day", "2026-01-10", "2026-01-10", tz="Asia/Kathmandu")
    assert len(series) == 24
    assert series[0]["bucket"] == "2026-01-10T00:00:00+05:45"
    assert series[1]["bucket"] == "2026-01-10T01:00:00+05:45"
    assert nonzero(series) == {0: (2, 110), 1: (1, 1000), 23: (1, 10000)}
    month = get_time_series_stats("month", "2026-01-01", "2026-01-31", tz="Asia/Kathmandu")
    assert nonzero(month) == {8: (1, 1), 9: (4, 11110), 10: (1, 100000)}


def test_series_kolkata_half_hour_offset_month(app_ctx):
    add(utc(2025, 12, 31, 18, 29, 59), prompt=1)  # 2025-12-31 23:59:59 +05:30
    add(utc(2025, 12, 31, 18, 30), prompt=10)  # 2026-01-01 00:00
    add(utc(2026, 1, 31, 18, 29, 59), prompt=100)  # 2026-01-31 23:59:59
    add(utc(2026, 1, 31, 18, 30), prompt=1000)  # 2026-02-01 00:00
    flush()
    month = get_time_series_stats("month", "2026-01-01", "2026-01-31", tz="Asia/Kolkata")
    assert len(month) == 31
    assert month[0]["bucket"] == "2026-01-01T00:00:00+05:30"
    assert nonzero(month) == {0: (1, 10), 30: (1, 100)}
    year = get_time_series_stats("year", "2026-01-01", "2026-02-28", tz="Asia/Kolkata")
    assert [(b["bucket"], b["total_tokens"]) for b in year] == [
        ("2026-01-01T00:00:00+05:30", 110),
        ("2026-02-01T00:00:00+05:30", 1000),
    ]


# --- default ranges ---------------------------------------------------------------------


@pytest.fixture
def now(monkeypatch):
    fixed = utc(2026, 1, 10, 9, 15)
    monkeypatch.setattr(llm_usage_stats, "utcnow", lambda: fixed)
    return fixed


def test_default_ranges(app_ctx, now):
    seed_rows()
    day = get_time_series_stats("day")
    assert len(day) == 24
    assert (day[0]["bucket"], day[23]["bucket"]) == (
        "2026-01-09T10:00:00+00:00",
        "2026-01-10T09:00:00+00:00",
    )
    # 09:30 is after "now"; 23:59:59 on the 9th and 08:00 on the 10th are in.
    assert nonzero(day) == {13: (1, 3), 22: (1, 150)}

    month = get_time_series_stats("month")
    assert len(month) == 31
    assert (month[0]["bucket"], month[30]["bucket"]) == (
        "2025-12-11T00:00:00+00:00",
        "2026-01-10T00:00:00+00:00",
    )
    assert nonzero(month) == {29: (1, 3), 30: (1, 150)}

    year = get_time_series_stats("year")
    assert len(year) == 12
    assert (year[0]["bucket"], year[11]["bucket"]) == (
        "2025-02-01T00:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
    )
    assert nonzero(year) == {11: (2, 153)}

    local = get_time_series_stats("day", tz="Asia/Shanghai")
    assert (len(local), local[0]["bucket"], local[23]["bucket"]) == (
        24,
        "2026-01-09T18:00:00+08:00",
        "2026-01-10T17:00:00+08:00",
    )


def test_one_bound_given(app_ctx, now):
    seed_rows()
    # Only an end: the default window before it, whole buckets.
    day = get_time_series_stats("day", end_date="2026-01-10")
    assert (len(day), day[0]["bucket"]) == (24, "2026-01-10T00:00:00+00:00")
    assert nonzero(day) == {8: (1, 150), 9: (1, 1200), 23: (1, 700)}
    year = get_time_series_stats("year", end_date="2026-12-31")
    assert (len(year), year[0]["bucket"]) == (12, "2026-01-01T00:00:00+00:00")
    # Only a start: up to now.
    since = get_time_series_stats("day", start_date="2026-01-10T05:00:00")
    assert [b["bucket"][11:13] for b in since] == ["05", "06", "07", "08", "09"]
    assert nonzero(since) == {3: (1, 150)}


# --- errors and parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_time_series_stats("week"), "unsupported granularity 'week'"),
        (lambda: get_time_series_stats(""), "unsupported granularity ''"),
        (lambda: get_summary_stats(start_date="garbage"), "invalid start_date 'garbage'"),
        (lambda: get_summary_stats(end_date="2026-13-45"), "invalid end_date '2026-13-45'"),
        (lambda: get_stats_by_model(start_date=12), "start_date must be a date"),
        (lambda: get_summary_stats(tz="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (lambda: get_summary_stats(user_id="abc"), "user_id must be an integer"),
        (lambda: get_summary_stats(user_id=2**63), f"user_id {2**63} is out of range"),
        (lambda: get_summary_stats("2026-02-01", "2026-01-01"), "is after end_date"),
        (lambda: get_summary_stats("0001-01-01", tz="Asia/Shanghai"), "out of the supported"),
        (lambda: get_summary_stats(end_date="9999-12-31"), "out of the supported range"),
        (lambda: get_time_series_stats("day", "2020-01-01", "2026-01-01"), "more than 10000"),
    ],
)
def test_bad_arguments_raise_value_error(app_ctx, call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


def test_date_helpers():
    assert parse_when("2026-11-27") == utc(2026, 11, 27)
    assert parse_when("2026-11-27T08:00:00+08:00") == utc(2026, 11, 27, 0)
    assert parse_when("2026-11-27T08:00:00", "Asia/Shanghai") == utc(2026, 11, 27, 0)
    assert parse_when("2026-11-27", "Asia/Kathmandu") == utc(2026, 11, 26, 18, 15)
    assert parse_when(None) is None
    assert parse_when("  ") is None
    # Ends are exclusive: a date-only end covers its whole day, a datetime end is included.
    assert parse_range(None, "2026-11-27") == (None, utc(2026, 11, 28))
    assert parse_range(None, "2026-11-27T08:00:00") == (None, utc(2026, 11, 27, 8, 0, 0, 1))
    # 2026-03-08 has 23 hours in New York: the day ends at 04:00 UTC.
    assert parse_range(None, "2026-03-08", "America/New_York") == (None, utc(2026, 3, 9, 4))


# --- from a query -----------------------------------------------------------------------


def test_token_stats_from_query(app_ctx):
    seed_rows()
    data = get_token_stats_from_query(
        MultiDict(
            {
                "start_date": "2026-01-10",
                "end_date": "2026-01-10",
                "user_id": "1",
                "granularity": "day",
            }
        )
    )
    assert set(data) == {"summary", "by_model", "series"}
    assert (data["summary"]["total_calls"], data["summary"]["total_tokens"]) == (2, 850)
    assert [m["model"] for m in data["by_model"]] == ["o3-mini", "gpt-4o-mini"]
    assert nonzero(data["series"]) == {8: (1, 150), 23: (1, 700)}

    no_series = get_token_stats_from_query({"granularity": "", "start_date": ""})
    assert no_series["series"] is None
    assert no_series["summary"]["total_calls"] == 6
    assert get_token_stats_from_query({})["series"] is None
    with pytest.raises(ValueError, match="unsupported granularity 'week'"):
        get_token_stats_from_query({"granularity": "week"})
