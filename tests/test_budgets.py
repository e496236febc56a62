"""Budgets: enforced before the provider is called, settled to the real cost, per period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from langchain_core.messages import HumanMessage
from sqlalchemy import select
from support.fake_provider import openai_completion
from support.sdk_support import openai_model

from llm_tracker import BudgetExceeded, LLMUsage, UsageHandler, db, flush, record_usage
from llm_tracker.budget_admin import budget_json, create_budget, update_budget
from llm_tracker.budgets import estimate_cost, period_bounds, prompt_bytes
from llm_tracker.models import BudgetCounter, BudgetReservation

pytestmark = pytest.mark.filterwarnings(
    r"ignore:unclosed (<socket\.socket |transport <_SelectorSocketTransport ):ResourceWarning"
)

USAGE = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}


def _reply(fake, n=1):
    for _ in range(n):
        fake.enqueue(openai_completion("gpt-4o-mini", "ok", usage=USAGE))


def _rows():
    flush()
    return list(db.session.execute(select(LLMUsage).order_by(LLMUsage.created_at)).scalars())


def test_a_block_budget_stops_the_call_before_the_provider(app_ctx, fake_provider):
    app = app_ctx
    prompt = [HumanMessage("hello")]
    estimate = estimate_cost(
        app, {"model": "gpt-4o-mini", "provider": "openai"}, prompt_bytes(prompt), 100
    )
    real = record_usage.__globals__["get_pricer"](app).price(
        {
            "model": "gpt-4o-mini",
            "provider": "openai",
            "created_at": datetime.now(UTC),
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
        }
    )["cost_usd"]
    assert real < estimate
    # A call goes ahead when its estimate fits: room for the third, not the fourth.
    limit = real * 2 + estimate + real / 2
    create_budget(
        {
            "name": "daily-42",
            "scope": "user",
            "scope_value": "42",
            "period": "day",
            "limit_usd": str(limit),
        }
    )
    llm = openai_model(fake_provider, max_tokens=100)
    handler = UsageHandler({"user_id": 42}, node_name="chat")
    _reply(fake_provider, 10)
    allowed = 0
    with pytest.raises(BudgetExceeded) as caught:
        for _ in range(10):
            llm.invoke(prompt, config={"callbacks": [handler]})
            allowed += 1
            flush()  # settled: the next call sees the real cost, not the estimate
    assert allowed == 3
    assert len(fake_provider.requests) == 3
    exc = caught.value
    assert exc.budget == "daily-42"
    assert exc.scope == "user" and exc.scope_value == "42"
    assert exc.limit_usd == limit
    assert exc.spent_usd == real * 3
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert exc.resets_at == datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)
    assert "daily-42" in str(exc) and tomorrow.isoformat() in str(exc)

    rows = _rows()
    assert [r.success for r in rows] == [True, True, True, False]
    blocked = rows[-1]
    assert blocked.error.startswith("BudgetExceeded: budget 'daily-42'")
    assert blocked.total_tokens == 0 and blocked.cost_usd == 0
    assert blocked.meta["budget"] == "daily-42"
    assert blocked.user_id == 42 and blocked.node_name == "chat"

    # Another user is not covered; the reservations are all released.
    UsageHandler({"user_id": 43})
    llm.invoke(prompt, config={"callbacks": [UsageHandler({"user_id": 43})]})
    flush()
    assert len(fake_provider.requests) == 4
    assert db.session.execute(select(BudgetReservation)).first() is None
    counter = db.session.execute(select(BudgetCounter)).scalar_one()
    assert counter.spent_usd == real * 3 and counter.reserved_usd == 0
    assert counter.spent_tokens == 3 * 42 and counter.blocked_calls == 1
    status = budget_json(_budget())["status"]
    assert status[0]["state"] == "exceeded"


def _budget():
    from llm_tracker.models import Budget

    return db.session.execute(select(Budget)).scalar_one()


def test_a_budget_counts_what_its_scope_spent_before_it_existed(app_ctx):
    record_usage("gpt-4o-mini", 1000, 1000, provider="openai", user_id=7)
    record_usage("gpt-4o-mini", 1000, 1000, provider="openai", user_id=8)
    flush()
    costs = {r.user_id: r.cost_usd for r in _rows()}
    budget = create_budget(
        {"name": "each", "scope": "user", "period": "month", "limit_usd": "1", "action": "alert"}
    )
    status = {s["scope_key"]: s for s in budget_json(budget)["status"]}
    assert set(status) == {"7", "8"}
    assert Decimal(status["7"]["spent_usd"]) == costs[7]
    assert status["7"]["spent_tokens"] == 2000
    record_usage("gpt-4o-mini", 10, 10, provider="openai", user_id=7)
    flush()
    status = {s["scope_key"]: s for s in budget_json(budget)["status"]}
    assert status["7"]["spent_tokens"] == 2020
    update_budget(budget, {"period": "day"})
    status = {s["scope_key"]: s for s in budget_json(budget)["status"]}
    assert status["7"]["spent_tokens"] == 2020


@pytest.mark.parametrize(
    ("zone", "instant", "period", "start", "end"),
    [
        # Shanghai midnight is 16:00 UTC the day before.
        ("Asia/Shanghai", (2026, 12, 4, 15, 59), "day", (2026, 12, 3, 16), (2026, 12, 4, 16)),
        ("Asia/Shanghai", (2026, 12, 4, 16, 0), "day", (2026, 12, 4, 16), (2026, 12, 5, 16)),
        # New York's day of the spring change is 23 hours, of the autumn change 25.
        ("America/New_York", (2026, 3, 8, 12), "day", (2026, 3, 8, 5), (2026, 3, 9, 4)),
        ("America/New_York", (2026, 11, 1, 12), "day", (2026, 11, 1, 4), (2026, 11, 2, 5)),
        # Santiago skips midnight itself (00:00 -> 01:00) on 2026-09-06.
        ("America/Santiago", (2026, 9, 6, 12), "day", (2026, 9, 6, 4), (2026, 9, 7, 3)),
        ("Europe/Berlin", (2026, 3, 29, 12), "week", (2026, 3, 22, 23), (2026, 3, 29, 22)),
        # +05:45: the month starts at 18:15 UTC.
        ("Asia/Kathmandu", (2026, 3, 1), "month", (2026, 2, 28, 18, 15), (2026, 3, 31, 18, 15)),
    ],
)
def test_periods_roll_over_at_the_zone_midnight(zone, instant, period, start, end):
    got = period_bounds(period, ZoneInfo(zone), datetime(*instant, tzinfo=UTC))
    assert got == (datetime(*start, tzinfo=UTC), datetime(*end, tzinfo=UTC))


def test_call_and_track_lets_budget_exceeded_through(make_app, fake_provider, monkeypatch):
    from support.llm_settings import clear_llm_env, provider_config

    from llm_tracker.llm_tracker import LLMTracker

    clear_llm_env(monkeypatch)
    app = make_app(**provider_config("openai", fake_provider.base_url))
    with app.app_context():
        create_budget(
            {
                "name": "nothing",
                "scope": "node",
                "scope_value": "n",
                "period": "day",
                "limit_usd": "0",
            }
        )
        with pytest.raises(BudgetExceeded) as caught:
            LLMTracker.call_and_track([{"role": "user", "content": "hi"}], node_name="n")
        assert caught.value.budget == "nothing" and caught.value.scope_value == "n"
        assert fake_provider.requests == []
        (row,) = _rows()
        assert not row.success and row.meta["budget"] == "nothing" and row.node_name == "n"


def test_an_app_shutting_down_releases_its_budget_connections(make_app):
    from llm_tracker.budgets import _ENGINES, budget_engine, reserve
    from llm_tracker.writer import close_writer

    app = make_app()
    with app.app_context():
        create_budget({"name": "g", "scope": "global", "period": "day", "limit_tokens": 10**6})
    assert reserve(app, "run-1", {"model": "gpt-4o-mini"}, 10, 10) is not None
    engine = budget_engine(app)
    assert engine.pool.checkedin() == 1  # the check's connection, pooled
    close_writer(app)
    assert app not in _ENGINES and engine.pool.checkedin() == 0
