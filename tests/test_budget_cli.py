"""``flask budget add | list | remove``: exact output, one-line errors, never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from llm_tracker import db, flush, record_usage
from llm_tracker.budgets import period_bounds
from llm_tracker.models import BudgetCounter

NOW = datetime.now(UTC)
MONTH_START, MONTH_END = period_bounds("month", UTC, NOW)
# The middle of this month: a month budget's projection is then exactly twice its spend.
MIDDLE = MONTH_START + (MONTH_END - MONTH_START) / 2


def invoke(runner, *args: str):
    """The result of ``flask budget <args>``; a failure must be click's, not a traceback."""
    result = runner.invoke(args=["budget", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def ok(runner, *args: str) -> str:
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    return result.output


def error(runner, *args: str) -> str:
    result = invoke(runner, *args)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def middle_of_month(monkeypatch):
    monkeypatch.setattr("llm_tracker.budget_admin.utcnow", lambda: MIDDLE)


def test_add_list_remove_with_the_status_per_scope_key(app, runner, regular_user, middle_of_month):
    with app.app_context():
        record_usage("gpt-4o-mini", 1_000_000, 0, provider="openai", user_id=regular_user)
        record_usage("gpt-4o-mini", 1_000_000, 0, provider="openai", user_id=7)  # $0.15 each
        flush()
    assert ok(runner, "list") == "no budgets (flask budget add adds one)\n"

    assert ok(
        runner,
        *("add", "seven", "--scope", "user", "--value", "7", "--period", "month"),
        *("--limit-usd", "5", "--limit-tokens", "3000000", "--webhook", "https://hooks.example/x"),
    ) == (
        "added budget 'seven' (id 1): user 7, per month (UTC), limit 5.00 USD, 3000000 tokens, "
        "action block, thresholds 0.8,1, webhook https://hooks.example/x\n"
    )
    assert ok(
        runner,
        *("add", "per-user", "--scope", "user", "--period", "month", "--limit-usd", "0.2"),
        *("--action", "alert", "--thresholds", "0.5, 1", "--tz", "UTC"),
    ) == (
        "added budget 'per-user' (id 2): each user, per month (UTC), limit 0.20 USD, "
        "action alert, thresholds 0.5,1\n"
    )
    assert ok(
        runner,
        *("add", "team", "--scope", "global", "--period", "month", "--limit-tokens", "100"),
        *("--thresholds", ""),
    ) == (
        "added budget 'team' (id 3): global, per month (UTC), limit 100 tokens, action block, "
        "thresholds none\n"
    )
    with app.app_context():  # counted by the budgets as it is recorded
        record_usage("gpt-4o-mini", 0, 1_000_000, provider="openai", user_id=7)  # $0.60
        flush()

    resets = MONTH_END.isoformat()
    assert ok(runner, "list").splitlines() == [
        "budget 'per-user' (id 2): each user, per month (UTC), limit 0.20 USD, action alert, "
        "thresholds 0.5,1; state exceeded",
        "  user 7: spent 0.75 USD, 2000000 tokens; reserved 0.00 USD, 0 tokens; "
        f"remaining 0.00 USD; resets at {resets}; state exceeded; "
        "projected 1.50 USD, 4000000 tokens",
        f"  user {regular_user} (alice): spent 0.15 USD, 1000000 tokens; "
        "reserved 0.00 USD, 0 tokens; "
        f"remaining 0.05 USD; resets at {resets}; state warning; "
        "projected 0.30 USD, 2000000 tokens",
        "budget 'seven' (id 1): user 7, per month (UTC), limit 5.00 USD, 3000000 tokens, "
        "action block, thresholds 0.8,1, webhook https://hooks.example/x; state ok",
        "  user 7: spent 0.75 USD, 2000000 tokens; reserved 0.00 USD, 0 tokens; "
        f"remaining 4.25 USD, 1000000 tokens; resets at {resets}; state ok; "
        "projected 1.50 USD, 4000000 tokens",
        "budget 'team' (id 3): global, per month (UTC), limit 100 tokens, action block, "
        "thresholds none; state exceeded",
        "  global: spent 0.90 USD, 3000000 tokens; reserved 0.00 USD, 0 tokens; "
        f"remaining 0 tokens; resets at {resets}; state exceeded; "
        "projected 1.80 USD, 6000000 tokens",
    ]

    assert ok(runner, "remove", "team") == "removed budget 'team' (id 3)\n"
    assert error(runner, "remove", "team") == (
        "Error: no budget named 'team' (flask budget list shows them)"
    )
    # By name only: "1" is not the id of 'seven'.
    assert (
        error(runner, "remove", "1") == "Error: no budget named '1' (flask budget list shows them)"
    )
    assert ok(runner, "remove", "per-user") == "removed budget 'per-user' (id 2)\n"
    assert ok(runner, "list").splitlines()[0].startswith("budget 'seven' (id 1)")
    assert len(ok(runner, "list").splitlines()) == 2


def test_a_day_in_new_york_on_the_day_clocks_go_forward(runner, monkeypatch):
    # 2026-03-08 is 23 hours long in New York; at 12:00 UTC, 7 of them have passed.
    monkeypatch.setattr(
        "llm_tracker.budget_admin.utcnow", lambda: datetime(2026, 3, 8, 12, tzinfo=UTC)
    )
    assert ok(
        runner,
        *("add", "nyc", "--scope", "node", "--value", "summarize", "--period", "day"),
        *("--limit-usd", "2.5", "--tz", "America/New_York"),
    ) == (
        "added budget 'nyc' (id 1): node 'summarize', per day (America/New_York), "
        "limit 2.50 USD, action block, thresholds 0.8,1\n"
    )
    assert ok(runner, "list").splitlines() == [
        "budget 'nyc' (id 1): node 'summarize', per day (America/New_York), limit 2.50 USD, "
        "action block, thresholds 0.8,1; state ok",
        "  node 'summarize': spent 0.00 USD, 0 tokens; reserved 0.00 USD, 0 tokens; "
        "remaining 2.50 USD; resets at 2026-03-09T04:00:00+00:00; state ok; "
        "projected 0.00 USD, 0 tokens",
    ]


def test_each_value_budget_without_spend_says_so(runner, middle_of_month):
    ok(runner, "add", "models", "--scope", "model", "--period", "week", "--limit-usd", "1")
    assert ok(runner, "list").splitlines() == [
        "budget 'models' (id 1): each model, per week (UTC), limit 1.00 USD, action block, "
        "thresholds 0.8,1; state ok",
        "  nothing spent this period",
    ]


BASE = ("--scope", "user", "--period", "week", "--limit-usd", "1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("x", "--scope", "team", "--period", "week", "--limit-usd", "1"),
            "invalid budget: scope: Must be one of: global, user, node, source_type, model.",
        ),
        (
            ("x", "--scope", "user", "--period", "year", "--limit-usd", "1"),
            "invalid budget: period: Must be one of: day, week, month.",
        ),
        (("x", *BASE, "--action", "warn"), "invalid budget: action: Must be one of: block, alert."),
        (
            ("x", *BASE, "--tz", "Mars/Olympus"),
            "invalid budget: tz: unknown time zone 'Mars/Olympus': use an IANA name such as "
            "'Asia/Shanghai' or 'UTC'",
        ),
        (
            ("x", "--scope", "user", "--period", "week", "--limit-usd", "-1"),
            "invalid budget: limit_usd: Must be greater than or equal to 0 and less than or "
            "equal to 10000000.",
        ),
        (("x", *BASE[:4], "--limit-usd", "five"), "invalid budget: limit_usd: Not a valid number."),
        (
            ("x", *BASE, "--limit-tokens", "1.5"),
            "invalid budget: limit_tokens: Not a valid integer.",
        ),
        (
            ("x", "--scope", "user", "--period", "week"),
            "invalid budget: limit_usd: a budget needs limit_usd, limit_tokens or both",
        ),
        (
            ("x", "--scope", "global", "--value", "7", "--period", "week", "--limit-usd", "1"),
            "invalid budget: scope_value: a global budget has no scope_value",
        ),
        (
            ("x", *BASE, "--value", "bob"),
            "invalid budget: scope_value: a user budget's scope_value is a user id",
        ),
        (
            ("x", *BASE, "--thresholds", "0.5,0"),
            "invalid budget: thresholds: 1: Must be greater than 0 and less than or equal to 100.",
        ),
        (
            ("x", *BASE, "--thresholds", "0.5,,1"),
            "invalid budget: thresholds: 1: Not a valid number.",
        ),
        (
            ("x", *BASE, "--webhook", "ftp://hooks.example"),
            "invalid budget: webhook_url: Not a valid URL.",
        ),
        (("", *BASE), "invalid budget: name: Length must be between 1 and 200."),
        (("\udcff", *BASE), "invalid budget: name: must not contain lone surrogates"),
    ],
)
def test_invalid_input_is_one_line_and_adds_nothing(runner, args, message):
    assert error(runner, "add", *args) == f"Error: {message}"
    assert ok(runner, "list") == "no budgets (flask budget add adds one)\n"


def test_duplicate_names_and_missing_options(runner):
    ok(runner, "add", "x", *BASE)
    assert error(runner, "add", "x", *BASE) == (
        "Error: invalid budget: name: a budget named 'x' already exists"
    )
    result = invoke(runner, "add", "y", "--scope", "user", "--limit-usd", "1")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Missing option '--period'."
    assert error(runner, "remove", "\udcff") == (
        "Error: no budget named '\\udcff' (flask budget list shows them)"
    )
    assert len(ok(runner, "list").splitlines()) == 2


def test_blocked_calls_are_shown(app, runner, middle_of_month):
    with app.app_context():
        record_usage("gpt-4o-mini", 1_000_000, 0, provider="openai")  # $0.15
        flush()
    ok(runner, "add", "all", "--scope", "global", "--period", "month", "--limit-usd", "0.15")
    with app.app_context():  # as a refused call leaves it
        db.session.execute(update(BudgetCounter).values(blocked_calls=2))
        db.session.commit()
    assert ok(runner, "list").splitlines()[1] == (
        "  global: spent 0.15 USD, 1000000 tokens; reserved 0.00 USD, 0 tokens; "
        f"remaining 0.00 USD; resets at {MONTH_END.isoformat()}; state exceeded; "
        "projected 0.30 USD, 2000000 tokens; blocked calls 2"
    )
