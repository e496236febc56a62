"""``flask reprice`` and ``flask prices missing``: price what was unpriced, idempotently."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select, update
from support.helpers import ACME_RULE, run_cli

import llm_tracker.cli as cli
from llm_tracker import LLMUsage, db, flush, record_usage
from llm_tracker.pricing import GENAI_PRICES_VERSION
from llm_tracker.reprice import reprice

V = GENAI_PRICES_VERSION


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 2, day, hour, tzinfo=UTC)


def costs(app) -> list[tuple[str, Decimal | None, str | None]]:
    """(model, cost, source) of every row, oldest first."""
    with app.app_context():
        rows = db.session.scalars(select(LLMUsage).order_by(LLMUsage.created_at, LLMUsage.id)).all()
        return [(r.model, r.cost_usd, r.price_source) for r in rows]


def seed(app) -> None:
    """Three calls of an unknown model, one priced call, one row stored before pricing."""
    with app.app_context():
        for day in (1, 2, 3):
            record_usage(
                "acme-llm-7",
                prompt_tokens=10_000,
                cached_tokens=4000,
                cache_write_tokens=1000,
                completion_tokens=2000,
                created_at=at(day),
            )
        record_usage("gpt-4o-mini", provider="openai", prompt_tokens=1010, created_at=at(4))
        legacy = record_usage(
            "gpt-4o-mini", provider="openai", prompt_tokens=2020, created_at=at(5)
        )
        flush()  # committed, so the update below finds the row
        with db.engine.begin() as conn:  # as the cost migration leaves older rows
            conn.execute(
                update(LLMUsage)
                .where(LLMUsage.id == legacy.id)
                .values(
                    cost_usd=None,
                    input_cost_usd=None,
                    output_cost_usd=None,
                    cache_savings_usd=None,
                    price_source=None,
                )
            )


def test_prices_missing_then_rule_then_reprice(make_app):
    before = make_app()
    seed(before)
    assert run_cli(before, "prices", "missing") == (
        "calls  provider  model        deployment  first seen  last seen   priced now\n"
        "3      -         acme-llm-7   -           2026-02-01  2026-02-03  no\n"
        "1      openai    gpt-4o-mini  -           2026-02-05  2026-02-05  yes: run reprice\n"
        "\n"
        "4 unpriced call(s). Add a rule to LLM_TRACKER_CUSTOM_PRICES (or map the Azure "
        "deployment in LLM_TRACKER_AZURE_DEPLOYMENTS), then run: "
        "flask --app wsgi reprice --since 2026-02-01\n"
    )

    app = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    unchanged = costs(app)
    dry = run_cli(app, "reprice", "--since", "2026-02-01", "--dry-run")
    # 5000 x $1 + 4000 cached x $0.10 + 1000 written x $1.25 + 2000 x $2 = $0.01065 a call;
    # the legacy row: 2020 x $0.15.
    assert dry == (
        f"rows 2026-02-01T00:00:00+00:00 .. now: 5 (genai-prices {V})\n"
        "rows changed: 4 (dry run: nothing written)\n"
        "total cost: 0.000151500 USD -> 0.032404500 USD\n"
        "unpriced rows: 4 -> 0\n"
        "per model (models with changed rows):\n"
        # A model no source priced has no cost yet: "unpriced", not 0 USD.
        "  acme-llm-7   3/3 rows changed  unpriced -> 0.031950000 USD  unpriced 3 -> 0\n"
        "  gpt-4o-mini  1/2 rows changed  0.000151500 USD -> 0.000454500 USD  unpriced 1 -> 0\n"
    )
    assert costs(app) == unchanged

    wet = run_cli(app, "reprice", "--since", "2026-02-01")
    assert wet == dry.replace(" (dry run: nothing written)", "")
    assert costs(app) == [
        ("acme-llm-7", Decimal("0.01065"), "custom: acme-llm-.* from 2026-01-01"),
        ("acme-llm-7", Decimal("0.01065"), "custom: acme-llm-.* from 2026-01-01"),
        ("acme-llm-7", Decimal("0.01065"), "custom: acme-llm-.* from 2026-01-01"),
        ("gpt-4o-mini", Decimal("0.0001515"), f"genai-prices {V}: openai/gpt-4o-mini"),
        ("gpt-4o-mini", Decimal("0.000303"), f"genai-prices {V}: openai/gpt-4o-mini"),
    ]
    with app.app_context():
        row = db.session.scalars(select(LLMUsage).filter_by(model="acme-llm-7")).first()
        assert (row.input_cost_usd, row.output_cost_usd, row.cache_savings_usd) == (
            Decimal("0.00665"),
            Decimal("0.004"),
            Decimal("0.0036"),
        )

    again = run_cli(app, "reprice", "--since", "2026-02-01")
    assert again == (
        f"rows 2026-02-01T00:00:00+00:00 .. now: 5 (genai-prices {V})\n"
        "rows changed: 0\n"
        "total cost: 0.032404500 USD -> 0.032404500 USD\n"
        "unpriced rows: 0 -> 0\n"
    )
    assert run_cli(app, "prices", "missing") == "every recorded call is priced\n"


def test_a_fixed_rule_reprices_priced_rows(make_app):
    first = make_app(LLM_TRACKER_CUSTOM_PRICES=[{**ACME_RULE, "output_per_mtok": "20"}])
    with first.app_context():
        record_usage("acme-llm-7", prompt_tokens=1000, completion_tokens=1000, created_at=at(1))
        flush()
    fixed = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    out = run_cli(fixed, "reprice", "--since", "2026-02-01", "--until", "2026-02-01")
    assert out.splitlines()[1:4] == [
        "rows changed: 1",
        "total cost: 0.021000000 USD -> 0.003000000 USD",
        "unpriced rows: 0 -> 0",
    ]
    assert costs(fixed) == [("acme-llm-7", Decimal("0.003"), "custom: acme-llm-.* from 2026-01-01")]


def test_a_dropped_rule_leaves_rows_unpriced_and_says_so(make_app):
    first = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    with first.app_context():
        record_usage("acme-llm-7", prompt_tokens=1000, completion_tokens=1000, created_at=at(1))
        flush()
    out = run_cli(make_app(), "reprice", "--since", "2026-02-01", "--until", "2026-02-01")
    assert out.splitlines()[1:] == [
        "rows changed: 1",
        "total cost: 0.003000000 USD -> unpriced",
        "unpriced rows: 0 -> 1",
        "per model (models with changed rows):",
        "  acme-llm-7  1/1 rows changed  0.003000000 USD -> unpriced  unpriced 0 -> 1",
    ]


def test_range_bounds(make_app):
    plain = make_app()
    with plain.app_context():
        for when in (
            datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 2, 1, 0, 0, tzinfo=UTC),
            datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC),
            datetime(2026, 3, 1, 0, 0, tzinfo=UTC),
        ):
            record_usage("acme-llm-7", prompt_tokens=1_000_000, created_at=when)
        flush()
    app = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    # --until DATE includes that whole (UTC) day.
    out = run_cli(app, "reprice", "--since", "2026-02-01", "--until", "2026-02-28")
    assert out.splitlines()[:2] == [
        f"rows 2026-02-01T00:00:00+00:00 .. 2026-03-01T00:00:00+00:00: 2 (genai-prices {V})",
        "rows changed: 2",
    ]
    assert [c for _, c, _ in costs(app)] == [None, Decimal(1), Decimal(1), None]
    # Instants work too; --until is then excluded.
    out = run_cli(
        app, "reprice", "--since", "2026-01-31T23:59:59+00:00", "--until", "2026-03-01T00:00:00Z"
    )
    assert out.splitlines()[1] == "rows changed: 1"
    assert [c for _, c, _ in costs(app)] == [Decimal(1), Decimal(1), Decimal(1), None]


def test_bad_ranges_are_refused(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reprice", "--since", "2026-02-02", "--until", "2026-02-01"])
    assert result.exit_code == 2
    assert "--until must be after --since" in result.output
    result = runner.invoke(args=["reprice", "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "'last tuesday' is not a date (YYYY-MM-DD) or ISO datetime" in result.output
    result = runner.invoke(args=["reprice"])
    assert result.exit_code == 2
    assert "Missing option '--since'" in result.output


def test_batches_walk_every_row_once(make_app):
    plain = make_app()
    with plain.app_context():
        # Three rows share one created_at: the (created_at, id) key still splits them.
        for when in (at(1), at(1), at(1), at(2), at(3)):
            record_usage("acme-llm-7", prompt_tokens=1_000_000, created_at=when)
        flush()
    app = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    batches: list[int] = []
    with app.app_context():
        report = reprice(datetime(2026, 2, 1, tzinfo=UTC), batch_size=2, on_batch=batches.append)
    assert batches == [2, 2, 1]
    assert (report.total.rows, report.total.changed, report.total.after) == (5, 5, Decimal(5))
    assert [c for _, c, _ in costs(app)] == [Decimal(1)] * 5


def test_progress_bar_on_large_ranges(make_app, monkeypatch):
    plain = make_app()
    with plain.app_context():
        for day in (1, 2, 3):
            record_usage("acme-llm-7", prompt_tokens=1_000_000, created_at=at(day))
        flush()
    app = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    monkeypatch.setattr(cli, "PROGRESS_MIN_ROWS", 2)
    result = app.test_cli_runner().invoke(
        args=["reprice", "--since", "2026-02-01", "--batch-size", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "repricing" in result.stderr
    assert "rows changed: 3" in result.stdout
