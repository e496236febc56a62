"""Where the money goes: breakdowns by user, node, source type, provider and model, the
filters every statistic takes, the stacked series, and the property that a breakdown
equals a raw scan and adds up to the summary exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import create_test_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import captured_statements, utc
from test_rollup_stats import BASES, _bound, queries, record_rows, rows

from llm_tracker import flush, record_usage
from llm_tracker.llm_usage_stats import (
    DIMENSIONS,
    get_stats_by_dimension,
    get_stats_by_model,
    get_summary_stats,
    get_time_series_stats,
    get_token_stats_from_query,
    raw_scan,
)

STATS = "/api/v1/admin/token-stats/"
SUM_KEYS = (
    "total_calls",
    "successful_calls",
    "failed_calls",
    "total_prompt_tokens",
    "total_completion_tokens",
    "total_tokens",
    "total_cached_tokens",
    "total_reasoning_tokens",
    "unpriced_calls",
)
# micro-USD at genai-prices' rates: gpt-4o 2.50 / 10.00, gpt-4o-mini 0.15 / 0.60 per Mtok.
COST = {"a": 3500, "b": 750, "c": 300, "e": 15}
PRICED = sum(COST.values())  # 4565


def seed(app) -> None:
    """Five calls: admin (1) and alice (2) have accounts, user 3 has none."""
    assert create_test_user(app, "admin", "pw-admin-123", admin=True) == 1
    assert create_test_user(app, "alice", "pw-alice-123") == 2
    common = {"provider": "openai", "created_at": utc(2026, 1, 10, 9)}
    # a: 1000 x 2.50 + 100 x 10.00 = 3500
    record_usage("gpt-4o", 1000, 100, user_id=1, node_name="chat", source_type="api", **common)
    # b: 1000 x 0.15 + 1000 x 0.60 = 750
    record_usage(
        "gpt-4o-mini",
        1000,
        1000,
        user_id=2,
        node_name="chat",
        metadata={"source_type": "api"},  # the first release's way: same column
        **common,
    )
    # c: 2000 x 0.15 = 300
    record_usage(
        "gpt-4o-mini", 2000, 0, user_id=2, node_name="summarise", source_type="batch", **common
    )
    # d: unpriced, no user, provider or source type
    record_usage("acme-x", 10, 10, node_name="summarise", created_at=utc(2026, 1, 10, 12))
    # e: 100 x 0.15 = 15, failed, the next day
    record_usage(
        "gpt-4o-mini",
        100,
        0,
        user_id=3,
        node_name="extract",
        source_type="batch",
        provider="openai",
        success=False,
        error="boom",
        created_at=utc(2026, 1, 11, 3),
    )
    flush()


def money(micro: int) -> str:
    return f"{Decimal(micro) / 10**6:.9f}"


def brief(groups):
    return [(g["key"], g["label"], g["total_calls"], g["total_cost_usd"]) for g in groups]


def test_by_user_most_cost_first_with_usernames_and_shares(app_ctx):
    seed(app_ctx)
    groups = get_stats_by_dimension("user")
    assert brief(groups) == [
        ("1", "admin", 1, money(3500)),
        ("2", "alice", 2, money(1050)),
        ("3", "3", 1, money(15)),  # no account: the id
        (None, None, 1, None),  # no user; its one call is unpriced
    ]
    assert [g["cost_share"] for g in groups] == [3500 / PRICED, 1050 / PRICED, 15 / PRICED, 0.0]
    alice = groups[1]
    assert {k: alice[k] for k in SUM_KEYS} == {
        "total_calls": 2,
        "successful_calls": 2,
        "failed_calls": 0,
        "total_prompt_tokens": 3000,
        "total_completion_tokens": 1000,
        "total_tokens": 4000,
        "total_cached_tokens": 0,
        "total_reasoning_tokens": 0,
        "unpriced_calls": 0,
    }
    assert "others" not in alice


def test_the_tail_beyond_limit_is_one_others_group(app_ctx):
    seed(app_ctx)
    groups = get_stats_by_dimension("user", limit=2)
    assert brief(groups) == [
        ("1", "admin", 1, money(3500)),
        ("2", "alice", 2, money(1050)),
        (None, "others", 2, money(15)),
    ]
    others = groups[-1]
    assert (others["others"], others["group_count"]) == (True, 2)
    assert (others["unpriced_calls"], others["failed_calls"], others["total_tokens"]) == (1, 1, 120)
    assert others["cost_share"] == 15 / PRICED
    summary = get_summary_stats()
    for key in SUM_KEYS:
        assert sum(g[key] for g in groups) == summary[key]


def test_every_dimension(app_ctx):
    seed(app_ctx)
    assert brief(get_stats_by_dimension("node")) == [
        ("chat", "chat", 2, money(4250)),
        ("summarise", "summarise", 2, money(300)),
        ("extract", "extract", 1, money(15)),
    ]
    assert brief(get_stats_by_dimension("source_type")) == [
        ("api", "api", 2, money(4250)),
        ("batch", "batch", 2, money(315)),
        (None, None, 1, None),
    ]
    assert brief(get_stats_by_dimension("provider")) == [
        ("openai", "openai", 4, money(4565)),
        (None, None, 1, None),
    ]
    assert brief(get_stats_by_dimension("model")) == [
        ("gpt-4o", "gpt-4o", 1, money(3500)),
        ("gpt-4o-mini", "gpt-4o-mini", 3, money(1065)),
        ("acme-x", "acme-x", 1, None),
    ]
    with pytest.raises(ValueError, match="unknown dimension 'team'"):
        get_stats_by_dimension("team")
    with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
        get_stats_by_dimension("user", limit=0)


def test_breakdown_takes_the_range_and_every_filter(app_ctx):
    seed(app_ctx)
    # Positional as SPEC §8 lists them: dimension, start, end, user_id, tz, limit, node...
    day = get_stats_by_dimension("node", "2026-01-10", "2026-01-10", None, "UTC", 10)
    assert [g["key"] for g in day] == ["chat", "summarise"]
    assert brief(get_stats_by_dimension("user", node_name="summarise")) == [
        ("2", "alice", 1, money(300)),
        (None, None, 1, None),
    ]
    assert brief(get_stats_by_dimension("node", source_type="batch", provider="openai")) == [
        ("summarise", "summarise", 1, money(300)),
        ("extract", "extract", 1, money(15)),
    ]
    assert brief(get_stats_by_dimension("node", user_id=2, model_exact="gpt-4o-mini")) == [
        ("chat", "chat", 1, money(750)),
        ("summarise", "summarise", 1, money(300)),
    ]
    # A user's share is of the filtered range's cost.
    assert [g["cost_share"] for g in get_stats_by_dimension("model", user_id=2)] == [1.0]


def test_filters_on_every_statistic(app_ctx):
    seed(app_ctx)

    def calls_and_cost(**filters):
        s = get_summary_stats(**filters)
        return s["total_calls"], s["total_cost_usd"]

    assert calls_and_cost(node_name="chat") == (2, money(4250))
    assert calls_and_cost(source_type="batch") == (2, money(315))
    assert calls_and_cost(provider="openai") == (4, money(4565))
    assert calls_and_cost(model_exact="gpt-4o-mini") == (3, money(1065))
    assert calls_and_cost(model="GPT-4O") == (4, money(4565))  # the seed's substring
    assert calls_and_cost(model="gpt", model_exact="gpt-4o") == (1, money(3500))
    assert calls_and_cost(node_name="chat", user_id=2) == (1, money(750))
    assert calls_and_cost(node_name="Chat") == (0, money(0))  # exact values
    assert [m["model"] for m in get_stats_by_model(node_name="summarise")] == [
        "gpt-4o-mini",
        "acme-x",
    ]
    series = get_time_series_stats("month", "2026-01-10", "2026-01-11", source_type="batch")
    assert [(b["total_calls"], b["total_cost_usd"]) for b in series] == [
        (1, money(300)),
        (1, money(15)),
    ]
    query = {"start_date": "2026-01-10", "end_date": "2026-01-11", "provider": "openai"}
    both = get_token_stats_from_query({**query, "granularity": "month"})
    assert both["summary"]["total_calls"] == 4
    assert both["by_model"][0]["model"] == "gpt-4o-mini"
    assert get_token_stats_from_query(query)["summary"] == both["summary"]


def test_api_group_by_and_series_by(app, client, auth):
    with app.app_context():
        seed(app)
    assert auth.login("admin", "pw-admin-123").status_code == 200
    query = {
        "start_date": "2026-01-10",
        "end_date": "2026-01-11",
        "granularity": "month",
        "group_by": "user",
        "series_by": "node",
        "limit": "2",
        "tz": "UTC",
    }
    data = client.get(STATS, query_string=query).get_json()
    assert data["breakdown"]["dimension"] == "user"
    assert brief(data["breakdown"]["groups"]) == [
        ("1", "admin", 1, money(3500)),
        ("2", "alice", 2, money(1050)),
        (None, "others", 2, money(15)),
    ]
    stacked = data["series_breakdown"]
    assert stacked["dimension"] == "node"
    assert stacked["keys"] == [
        {"key": "chat", "label": "chat"},
        {"key": "summarise", "label": "summarise"},
        {"key": None, "label": "others", "others": True, "group_count": 1},
    ]
    assert [b["bucket"] for b in stacked["series"]] == [
        "2026-01-10T00:00:00+00:00",
        "2026-01-11T00:00:00+00:00",
    ]
    cells = [
        [(g["total_calls"], g["total_cost_usd"]) for g in b["groups"]] for b in stacked["series"]
    ]
    assert cells == [
        [(2, money(4250)), (2, money(300)), (0, money(0))],
        [(0, money(0)), (0, money(0)), (1, money(15))],
    ]
    assert stacked["series"][0]["groups"][1]["total_tokens"] == 2020
    # Each bucket's stack is that bucket of the plain series.
    for bucket, stack in zip(data["series"], stacked["series"], strict=True):
        assert sum(g["total_calls"] for g in stack["groups"]) == bucket["total_calls"]
    plain = client.get(STATS, query_string={"start_date": "2026-01-10"}).get_json()
    assert "breakdown" not in plain and "series_breakdown" not in plain
    drilled = client.get(STATS, query_string={**query, "user_id": "2", "node_name": "chat"})
    assert drilled.get_json()["summary"]["total_cost_usd"] == money(750)


# --- the property -----------------------------------------------------------------------

FILTERS = [
    {},
    {"node_name": "n1"},
    {"source_type": "api"},
    {"provider": "openai"},
    {"model_exact": "gpt-4o"},
    {"model": "acme", "node_name": "n2"},
]


def _breakdowns(start, end, user_id, tz, granularity, dimension, limit, filters):
    args = {"start_date": start, "end_date": end, "user_id": user_id, "tz": tz}
    try:
        groups = get_stats_by_dimension(dimension, start, end, user_id, tz, limit, **filters)
    except ValueError as exc:  # start after end: both ways must say so
        return ("error", str(exc))
    combined = get_token_stats_from_query(
        {
            **args,
            **filters,
            "granularity": granularity,
            "group_by": dimension,
            "series_by": dimension,
            "limit": limit,
        }
    )
    return groups, get_summary_stats(**args, **filters), combined


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.sampled_from(BASES),
    data=rows,
    asked=queries,
    dimension=st.sampled_from(list(DIMENSIONS)),
    limit=st.integers(1, 4),
    filters=st.sampled_from(FILTERS),
)
def test_breakdown_equals_raw_scan_and_adds_up(app, base, data, asked, dimension, limit, filters):
    with app.app_context():
        record_rows(base, data)
        for q in asked:
            if q["end"] is None and q["granularity"] == "day":
                q = {**q, "granularity": "month"}  # a series without an end runs to now
            start = _bound(q["start"], base, q["tz"], data)
            end = _bound(q["end"], base, q["tz"], data)
            args = (start, end, q["user_id"], q["tz"], q["granularity"], dimension, limit, filters)
            found = _breakdowns(*args)
            with raw_scan():
                assert found == _breakdowns(*args)
            if found[0] == "error":
                continue
            groups, summary, combined = found
            assert combined["breakdown"] == {"dimension": dimension, "groups": groups}
            # The groups add up to the summary exactly, most cost first.
            for key in SUM_KEYS:
                assert sum(g[key] for g in groups) == summary[key]
            costs = [Decimal(g["total_cost_usd"] or 0) for g in groups]
            assert sum(costs) == Decimal(summary["total_cost_usd"] or 0)
            named = [c for g, c in zip(groups, costs, strict=True) if not g.get("others")]
            assert named == sorted(named, reverse=True)
            assert len(groups) <= limit + 1
            if groups and groups[-1].get("others"):
                assert len(groups) == limit + 1 and groups[-1]["group_count"] >= 1
            # Each bucket's stack adds up to that bucket of the series.
            stacked = combined["series_breakdown"]["series"]
            for bucket, stack in zip(combined["series"], stacked, strict=True):
                assert bucket["bucket"] == stack["bucket"]
                for key in ("total_calls", "total_tokens"):
                    assert sum(g[key] for g in stack["groups"]) == bucket[key]


def test_whole_days_read_the_one_dimension_slices(app_ctx):
    seed(app_ctx)
    with captured_statements() as statements:
        by_user = get_stats_by_dimension("user", "2026-01-10", "2026-01-11")
        by_user_of_a_node = get_stats_by_dimension(
            "user", "2026-01-10", "2026-01-11", node_name="chat"
        )
        one_user = get_summary_stats("2026-01-10", "2026-01-11", user_id=2)
    assert [g["key"] for g in by_user] == ["1", "2", "3", None]
    assert [g["key"] for g in by_user_of_a_node] == ["1", "2"]
    assert one_user["total_calls"] == 2
    # One dimension named (grouped or filtered): the slice; two: the full daily rollup.
    assert "FROM llm_tracker_usage_slice_day" in statements[0]
    assert "llm_tracker_usage_rollup_day" not in statements[0]
    assert "FROM llm_tracker_usage_rollup_day" in statements[2]
    assert "slice" not in statements[2]
    assert "FROM llm_tracker_usage_slice_day" in statements[-2]
    assert "FROM llm_tracker_latency_slice_day" in statements[-1]
