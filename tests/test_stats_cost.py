"""Cost in the statistics and the list: exact sums, unpriced calls, the priced filter."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from support.helpers import utc

from llm_tracker import LLMUsage, db, flush, record_usage
from llm_tracker.llm_usage import get_llm_usage_list
from llm_tracker.llm_usage_stats import (
    get_stats_by_model,
    get_summary_stats,
    get_time_series_stats,
)
from llm_tracker.pricing import format_money

USAGE = "/api/v1/admin/llm-usage/"
STATS = "/api/v1/admin/token-stats/"

pytestmark = pytest.mark.contract


def test_unpriced_calls_are_null_never_zero(app_ctx):
    record_usage("gpt-4o-mini", 1000, 100, provider="openai", created_at=utc(2026, 3, 1, 10))
    record_usage("acme-llm-7", 500, 50, created_at=utc(2026, 3, 1, 10, 30))
    record_usage("acme-llm-7", 500, 50, created_at=utc(2026, 3, 1, 12))
    flush()

    summary = get_summary_stats()
    # Only the priced call is summed (1000 * 0.15 + 100 * 0.60 micro-USD); two are unpriced.
    assert (summary["total_calls"], summary["total_cost_usd"], summary["unpriced_calls"]) == (
        3,
        "0.000210000",
        2,
    )
    by_model = {m["model"]: m for m in get_stats_by_model()}
    assert (by_model["acme-llm-7"]["total_cost_usd"], by_model["acme-llm-7"]["unpriced_calls"]) == (
        None,
        2,
    )
    assert (
        by_model["gpt-4o-mini"]["total_cost_usd"],
        by_model["gpt-4o-mini"]["unpriced_calls"],
    ) == ("0.000210000", 0)

    series = get_time_series_stats("day", "2026-03-01", "2026-03-01")
    # 10:00 mixes a priced and an unpriced call; 12:00 has only an unpriced one; 11:00 none.
    assert [(b["total_cost_usd"], b["unpriced_calls"]) for b in series[10:13]] == [
        ("0.000210000", 1),
        ("0.000000000", 0),
        (None, 1),
    ]

    only_unpriced = get_summary_stats(start_date="2026-03-01T11:00:00")
    assert (
        only_unpriced["total_calls"],
        only_unpriced["total_cost_usd"],
        only_unpriced["unpriced_calls"],
    ) == (1, None, 1)


def test_priced_filter_finds_the_unpriced_rows(app_ctx):
    record_usage("gpt-4o-mini", 10, 1, created_at=utc(2026, 3, 1))
    record_usage("acme-llm-7", 10, 1, created_at=utc(2026, 3, 2))
    record_usage("mystery-model", 10, 1, created_at=utc(2026, 3, 3))
    flush()

    unpriced = get_llm_usage_list(priced_filter="false")
    assert [r["model"] for r in unpriced["results"]] == ["mystery-model", "acme-llm-7"]
    assert [r["cost_usd"] for r in unpriced["results"]] == [None, None]
    assert [r["price_source"] for r in unpriced["results"]] == [None, None]
    priced = get_llm_usage_list(priced_filter=True)
    assert [(r["model"], r["cost_usd"]) for r in priced["results"]] == [
        ("gpt-4o-mini", "0.000002100")
    ]
    assert get_llm_usage_list(priced_filter="")["total"] == 3
    with pytest.raises(ValueError, match="priced must be 'true' or 'false', got 'no'"):
        get_llm_usage_list(priced_filter="no")


def test_priced_filter_over_the_api(app, client, auth, admin_user):
    with app.app_context():
        record_usage("gpt-4o-mini", 10, 1, created_at=utc(2026, 3, 1))
        record_usage("acme-llm-7", 10, 1, created_at=utc(2026, 3, 2))
        flush()
    assert auth.login().status_code == 200
    data = client.get(USAGE, query_string={"priced": "false"}).get_json()
    assert (data["total"], [r["model"] for r in data["results"]]) == (1, ["acme-llm-7"])
    data = client.get(USAGE, query_string={"priced": "true"}).get_json()
    assert (data["total"], [r["cost_usd"] for r in data["results"]]) == (1, ["0.000002100"])
    summary = client.get(STATS).get_json()["summary"]
    assert (summary["total_cost_usd"], summary["unpriced_calls"]) == ("0.000002100", 1)


MODELS = [
    ("gpt-4o-mini", "openai"),
    ("gpt-4o", "openai"),
    ("o3-mini", "openai"),
    ("gemini-2.5-flash", "google_genai"),
    ("gemini-2.5-pro", "google_genai"),
    ("acme-llm-7", None),
]


def test_totals_equal_the_sum_of_row_costs_exactly(app_ctx):
    rng = random.Random(20261129)
    start = utc(2026, 2, 1)
    for _ in range(120):
        model, provider = rng.choice(MODELS)
        prompt = rng.randrange(0, 300_000)
        cached = rng.randrange(0, prompt + 1) if rng.random() < 0.5 else 0
        completion = rng.randrange(0, 5000)
        reasoning = rng.randrange(0, completion + 1) if rng.random() < 0.3 else 0
        record_usage(
            model,
            prompt,
            completion,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            provider=provider,
            user_id=rng.choice([None, 1, 2]),
            created_at=start + timedelta(minutes=rng.randrange(0, 28 * 24 * 60)),
        )
    flush()

    rows = db.session.execute(select(LLMUsage)).scalars().all()
    priced = [r for r in rows if r.cost_usd is not None]
    assert 0 < len(priced) < len(rows)  # both kinds are present

    def total(items, attr="cost_usd"):
        return format_money(
            sum((getattr(r, attr) for r in items if getattr(r, attr) is not None), Decimal(0))
        )

    summary = get_summary_stats()
    assert summary["total_cost_usd"] == total(rows)
    assert summary["cache_savings_usd"] == total(rows, "cache_savings_usd")
    assert summary["unpriced_calls"] == len(rows) - len(priced)

    per_model = defaultdict(list)
    for row in rows:
        per_model[row.model].append(row)
    for entry in get_stats_by_model():
        group = per_model[entry["model"]]
        expected = total(group) if any(r.cost_usd is not None for r in group) else None
        assert entry["total_cost_usd"] == expected, entry["model"]

    user_rows = [r for r in rows if r.user_id == 1]
    assert get_summary_stats(user_id=1)["total_cost_usd"] == total(user_rows)

    # Kathmandu's February is 2026-01-31T18:15Z to 2026-02-28T18:15Z.
    series = get_time_series_stats("month", "2026-02-01", "2026-02-28", tz="Asia/Kathmandu")
    in_range = [
        r for r in rows if utc(2026, 1, 31, 18, 15) <= r.created_at < utc(2026, 2, 28, 18, 15)
    ]
    assert format_money(sum(Decimal(b["total_cost_usd"] or 0) for b in series)) == total(in_range)
