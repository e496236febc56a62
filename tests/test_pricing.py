"""Every row priced at write time, exactly, at the price of its own day (SPEC §5)."""

from __future__ import annotations

import itertools
import json
import warnings
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.caches import InMemoryCache
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from sqlalchemy import func, select
from support.helpers import ACME_RULE, bundled_prices

import llm_tracker.recording as recording
import llm_tracker.writer as writer
from llm_tracker import LLMUsage, UsageHandler, db, flush, get_spool, record_usage
from llm_tracker.pricing import (
    CACHE_HIT_SOURCE,
    GENAI_PRICES_VERSION,
    TokenSplit,
    format_money,
    price_with_model_price,
)

pytestmark = pytest.mark.contract

V = GENAI_PRICES_VERSION


def record(app, model: str, **kwargs) -> LLMUsage:
    """record_usage, then the row as the database gives it back (money round trip)."""
    with app.app_context():
        returned = record_usage(model, **kwargs)
        flush()
        stored = db.session.get(LLMUsage, returned.id)
        db.session.expunge(stored)
    for column in (
        "cost_usd",
        "input_cost_usd",
        "output_cost_usd",
        "cache_savings_usd",
        "price_source",
    ):
        assert getattr(returned, column) == getattr(stored, column), column
    return stored


def genai(
    model: str,
    provider: str | None,
    at: datetime,
    prompt: int,
    completion: int,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    **context: str,
):
    """genai_prices.calc_price for the same usage, at the same moment."""
    usage = Usage(
        input_tokens=prompt,
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=completion,
        output_reasoning_tokens=reasoning,
    )
    return calc_price(
        usage,
        model,
        provider_id=provider,
        genai_request_timestamp=at,
        price_context=context or None,
    )


def assert_priced_like(row: LLMUsage, calc, source: str) -> None:
    # Exact: 1e-9 USD would do, these prices need no rounding at all.
    assert row.cost_usd == calc.total_price
    assert row.input_cost_usd == calc.input_price
    assert row.output_cost_usd == calc.output_price
    assert row.price_source == source


# --- the acceptance matrix ------------------------------------------------------------


def test_openai_cached_and_reasoning(app):
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    row = record(
        app,
        "o4-mini-2025-04-16",
        provider="openai",
        created_at=at,
        prompt_tokens=5000,
        cached_tokens=4096,
        completion_tokens=1200,
        reasoning_tokens=1000,
    )
    assert_priced_like(
        row,
        genai("o4-mini-2025-04-16", "openai", at, 5000, 1200, cached=4096, reasoning=1000),
        f"genai-prices {V}: openai/o4-mini",
    )
    # 904 x $1.10 + 4096 cached x $0.275 + 1200 out (1000 reasoning, not twice) x $4.40
    assert row.cost_usd == Decimal("0.0074008")
    assert (row.input_cost_usd, row.output_cost_usd) == (Decimal("0.0021208"), Decimal("0.00528"))
    # 4096 x ($1.10 - $0.275)
    assert row.cache_savings_usd == Decimal("0.0033792")


def test_azure_deployment_mapped_by_config(make_app):
    app = make_app(LLM_TRACKER_AZURE_DEPLOYMENTS={"prod-4o": "gpt-4o", "prod-mini": "gpt-4o-mini"})
    at = datetime(2026, 3, 1, tzinfo=UTC)
    usage = {"prompt_tokens": 2000, "cached_tokens": 1024, "completion_tokens": 300}
    # No served model reported: the row's model is the deployment name.
    by_name = record(app, "prod-4o", provider="azure", deployment="prod-4o", created_at=at, **usage)
    assert_priced_like(
        by_name,
        genai("gpt-4o", "azure", at, 2000, 300, cached=1024),
        f"genai-prices {V}: azure/gpt-4o (deployment prod-4o)",
    )
    # 976 x $2.50 + 1024 cached x $1.25 + 300 x $10
    assert by_name.cost_usd == Decimal("0.00672")
    # The served model is the truth when it is known...
    served = record(
        app, "gpt-4o-2024-11-20", provider="azure", deployment="prod-4o", created_at=at, **usage
    )
    assert_priced_like(
        served,
        genai("gpt-4o-2024-11-20", "azure", at, 2000, 300, cached=1024),
        f"genai-prices {V}: azure/gpt-4o",
    )
    # ...and the deployment's base model prices a served name no source knows.
    custom = record(
        app,
        "ft-acme-support",
        provider="azure_openai",
        deployment="prod-mini",
        created_at=at,
        **usage,
    )
    assert_priced_like(
        custom,
        genai("gpt-4o-mini", "azure", at, 2000, 300, cached=1024),
        f"genai-prices {V}: azure/gpt-4o-mini (deployment prod-mini)",
    )
    # An unmapped deployment name is unpriced.
    other = record(app, "prod-o1", provider="azure", deployment="prod-o1", created_at=at, **usage)
    assert (other.cost_usd, other.price_source) == (None, None)


def test_rules_match_azure_deployment_names(make_app):
    app = make_app(
        LLM_TRACKER_CUSTOM_PRICES=[
            {
                "pattern": "prod-4o",
                "provider": "azure",
                "input_per_mtok": "2",
                "output_per_mtok": 8,
            },
        ]
    )
    row = record(
        app,
        "gpt-4o-2024-11-20",
        provider="azure_openai",
        deployment="prod-4o",
        prompt_tokens=1000,
        completion_tokens=100,
    )
    # A negotiated price for one deployment: 1000 x $2 + 100 x $8.
    assert (row.cost_usd, row.price_source) == (Decimal("0.0028"), "custom: prod-4o")


def test_gemini_thoughts_and_cached(app):
    at = datetime(2026, 3, 1, tzinfo=UTC)
    row = record(
        app,
        "gemini-2.5-flash",
        provider="google_genai",
        created_at=at,
        prompt_tokens=3520,
        cached_tokens=3512,
        completion_tokens=44,
        reasoning_tokens=42,
    )
    assert_priced_like(
        row,
        genai("gemini-2.5-flash", "google", at, 3520, 44, cached=3512, reasoning=42),
        f"genai-prices {V}: google/gemini-2.5-flash",
    )
    # 8 x $0.30 + 3512 cached x $0.03 + 44 (42 thoughts) x $2.50
    assert row.cost_usd == Decimal("0.00021776")


def test_gemini_25_pro_long_prompt_tier(app):
    at = datetime(2026, 3, 1, tzinfo=UTC)
    long = record(
        app,
        "gemini-2.5-pro",
        provider="google_genai",
        created_at=at,
        prompt_tokens=250_000,
        cached_tokens=100_000,
        completion_tokens=2000,
        reasoning_tokens=1500,
    )
    assert_priced_like(
        long,
        genai("gemini-2.5-pro", "google", at, 250_000, 2000, cached=100_000, reasoning=1500),
        f"genai-prices {V}: google/gemini-2.5-pro",
    )
    # Above 200k prompt tokens every token is at the tier: 150k x $2.50 + 100k cached x
    # $0.25 + 2000 x $15.
    assert long.cost_usd == Decimal("0.43")
    assert long.cache_savings_usd == Decimal("0.225")  # 100k x ($2.50 - $0.25)
    # At exactly 200k the base rates apply: 200k x $1.25 + 1000 x $10.
    edge = record(
        app,
        "gemini-2.5-pro",
        provider="gemini",
        created_at=at,
        prompt_tokens=200_000,
        completion_tokens=1000,
    )
    assert edge.cost_usd == Decimal("0.26")


def test_anthropic_cache_write(app):
    at = datetime(2026, 3, 1, tzinfo=UTC)
    row = record(
        app,
        "claude-sonnet-4-5-20250929",
        provider="anthropic",
        created_at=at,
        prompt_tokens=10_000,
        cached_tokens=6000,
        cache_write_tokens=3000,
        completion_tokens=500,
    )
    assert_priced_like(
        row,
        genai(
            "claude-sonnet-4-5-20250929",
            "anthropic",
            at,
            10_000,
            500,
            cached=6000,
            cache_write=3000,
        ),
        f"genai-prices {V}: anthropic/claude-sonnet-4-5",
    )
    # 1000 x $3 + 6000 read x $0.30 + 3000 written x $3.75 + 500 x $15
    assert row.cost_usd == Decimal("0.02355")


def test_price_change_dates_each_row_at_its_own_price(app):
    # genai-prices: o3 went from $10/$40 to $2/$8 per MTok on 2025-06-10 (UTC).
    before = record(
        app,
        "o3",
        provider="openai",
        prompt_tokens=1000,
        completion_tokens=1000,
        created_at=datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC),
    )
    after = record(
        app,
        "o3",
        provider="openai",
        prompt_tokens=1000,
        completion_tokens=1000,
        created_at=datetime(2025, 6, 10, 0, 0, tzinfo=UTC),
    )
    # 22:00 at UTC-4 on the 9th is the 10th in UTC.
    late = record(
        app,
        "o3",
        provider="openai",
        prompt_tokens=1000,
        completion_tokens=1000,
        created_at=datetime(2025, 6, 9, 22, 0, tzinfo=timezone(timedelta(hours=-4))),
    )
    assert (before.cost_usd, after.cost_usd, late.cost_usd) == (
        Decimal("0.05"),
        Decimal("0.01"),
        Decimal("0.01"),
    )
    assert before.cost_usd == genai("o3", "openai", before.created_at, 1000, 1000).total_price
    assert after.cost_usd == genai("o3", "openai", after.created_at, 1000, 1000).total_price


def test_dated_custom_rules_latest_start_wins(make_app):
    app = make_app(
        LLM_TRACKER_CUSTOM_PRICES=[
            ACME_RULE,
            {
                "pattern": "acme-llm-.*",
                "start_date": date(2026, 6, 1),
                "input_per_mtok": 0.5,
                "output_per_mtok": 1,
            },
        ]
    )
    usage = {
        "prompt_tokens": 10_000,
        "cached_tokens": 4000,
        "cache_write_tokens": 1000,
        "completion_tokens": 2000,
    }
    feb = record(app, "acme-llm-7", created_at=datetime(2026, 2, 1, tzinfo=UTC), **usage)
    jul = record(app, "acme-llm-7", created_at=datetime(2026, 7, 1, tzinfo=UTC), **usage)
    dec = record(app, "acme-llm-7", created_at=datetime(2025, 12, 31, 23, 59, tzinfo=UTC), **usage)
    # 5000 x $1 + 4000 cached x $0.10 + 1000 written x $1.25 + 2000 out x $2
    assert (feb.cost_usd, feb.input_cost_usd, feb.output_cost_usd) == (
        Decimal("0.01065"),
        Decimal("0.00665"),
        Decimal("0.004"),
    )
    assert feb.cache_savings_usd == Decimal("0.0036")  # 4000 x ($1.00 - $0.10)
    assert feb.price_source == "custom: acme-llm-.* from 2026-01-01"
    # The later rule gives no cached/cache-write rates: the whole prompt at $0.50.
    assert (jul.cost_usd, jul.cache_savings_usd) == (Decimal("0.007"), Decimal(0))
    assert jul.price_source == "custom: acme-llm-.* from 2026-06-01"
    # Before every rule's start, and no bundled price: unpriced.
    assert (dec.cost_usd, dec.price_source) == (None, None)


def test_custom_rule_wins_over_bundled_data_and_filters_provider(make_app):
    app = make_app(
        LLM_TRACKER_CUSTOM_PRICES=[
            {
                "pattern": "gpt-4o-mini(-.*)?",
                "provider": "azure_openai",
                "input_per_mtok": 0.1,
                "output_per_mtok": "0.5",
            },
        ]
    )
    at = datetime(2026, 3, 1, tzinfo=UTC)
    azure = record(
        app,
        "gpt-4o-mini-2024-07-18",
        provider="azure",
        created_at=at,
        prompt_tokens=1000,
        completion_tokens=100,
    )
    openai = record(
        app,
        "gpt-4o-mini-2024-07-18",
        provider="openai",
        created_at=at,
        prompt_tokens=1000,
        completion_tokens=100,
    )
    # 1000 x $0.10 + 100 x $0.50: the float 0.1 is taken as written.
    assert (azure.cost_usd, azure.price_source) == (Decimal("0.00015"), "custom: gpt-4o-mini(-.*)?")
    # The rule is for Azure only; OpenAI rows keep the bundled $0.15 / $0.60.
    assert (openai.cost_usd, openai.price_source) == (
        Decimal("0.00021"),
        f"genai-prices {V}: openai/gpt-4o-mini",
    )


@pytest.mark.parametrize(
    ("provider", "source"),
    [
        ("openai", "openai/gpt-4o-mini"),
        ("azure_openai", "azure/gpt-4o-mini"),
        (None, "openai/gpt-4o-mini"),  # no provider: genai-prices matches the model name
        ("some-proxy", "openai/gpt-4o-mini"),
    ],
)
def test_provider_ids(app, provider, source):
    row = record(
        app,
        "gpt-4o-mini",
        provider=provider,
        prompt_tokens=1010,
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert (row.cost_usd, row.price_source) == (Decimal("0.0001515"), f"genai-prices {V}: {source}")
    assert format_money(row.cost_usd) == "0.000151500"


def test_service_tier_prices(app):
    # genai-prices has o3's flex rates from 2026-10-12 on.
    at = datetime(2026, 11, 1, tzinfo=UTC)
    usage = {
        "prompt_tokens": 1000,
        "cached_tokens": 200,
        "completion_tokens": 1000,
        "reasoning_tokens": 800,
    }
    flex = record(
        app,
        "o3-2025-04-16",
        provider="openai",
        created_at=at,
        metadata={"service_tier": "flex"},
        **usage,
    )
    standard = record(app, "o3-2025-04-16", provider="openai", created_at=at, **usage)
    early_flex = record(
        app,
        "o3-2025-04-16",
        provider="openai",
        metadata={"service_tier": "flex"},
        created_at=datetime(2026, 10, 11, tzinfo=UTC),
        **usage,
    )
    assert (
        flex.cost_usd
        == genai(
            "o3-2025-04-16",
            "openai",
            at,
            1000,
            1000,
            cached=200,
            reasoning=800,
            service_tier="flex",
        ).total_price
    )
    # flex: 800 x $1 + 200 x $0.25 + 1000 x $4; standard: 800 x $2 + 200 x $0.50 + 1000 x $8
    assert (flex.cost_usd, standard.cost_usd, early_flex.cost_usd) == (
        Decimal("0.00485"),
        Decimal("0.0097"),
        Decimal("0.0097"),
    )


def test_handler_records_the_service_tier(app):
    reply = AIMessage(
        content="hi",
        response_metadata={"model_name": "o3-2025-04-16", "service_tier": "flex"},
        usage_metadata={"input_tokens": 1000, "output_tokens": 1000, "total_tokens": 2000},
    )
    model = GenericFakeChatModel(messages=iter([reply]))
    handler = UsageHandler(app=app)
    model.invoke("hi", config={"callbacks": [handler]})
    row = handler.last_row
    assert row.meta["service_tier"] == "flex"
    assert row.cost_usd == Decimal("0.005")  # 1000 x $1 + 1000 x $4 (flex)


def test_unknown_model_is_unpriced_never_zero(app):
    at = datetime(2026, 3, 1, tzinfo=UTC)
    unknown = record(app, "acme-llm-7", prompt_tokens=1000, completion_tokens=10, created_at=at)
    failed_unknown = record(app, "acme-llm-7", success=False, error="Boom", created_at=at)
    failed_known = record(app, "gpt-4o-mini", success=False, error="Boom", created_at=at)
    for row in (unknown, failed_unknown):
        assert (
            row.cost_usd,
            row.input_cost_usd,
            row.output_cost_usd,
            row.cache_savings_usd,
            row.price_source,
        ) == (None, None, None, None, None)
    # A known model's failed call without tokens is priced: at 0.
    assert (failed_known.cost_usd, failed_known.price_source) == (
        Decimal(0),
        f"genai-prices {V}: openai/gpt-4o-mini",
    )


def test_inconsistent_token_counts_are_unpriced(app, caplog):
    row = record(
        app,
        "gpt-4o-mini",
        provider="openai",
        prompt_tokens=10,
        cached_tokens=20,
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert (row.cost_usd, row.price_source) == (None, None)
    assert "could not price gpt-4o-mini" in caplog.text


def test_llm_cache_hit_costs_zero(app):
    row = record(
        app,
        "gpt-4o-mini",
        provider="openai",
        metadata={"llm_cache_hit": True, "cached_usage": {"input_tokens": 12}},
    )
    assert (
        row.cost_usd,
        row.input_cost_usd,
        row.output_cost_usd,
        row.cache_savings_usd,
        row.price_source,
    ) == (0, 0, 0, 0, CACHE_HIT_SOURCE)
    # Even for a model no source knows: no provider call was made.
    unknown = record(app, "acme-llm-7", metadata={"llm_cache_hit": True})
    assert (unknown.cost_usd, unknown.price_source) == (0, CACHE_HIT_SOURCE)


def test_llm_cache_hit_through_the_handler(app):
    reply = AIMessage(
        content="hi",
        response_metadata={"model_name": "gpt-4o-mini"},
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
    )
    model = GenericFakeChatModel(messages=itertools.repeat(reply), cache=InMemoryCache())
    handler = UsageHandler(app=app)
    model.invoke("same", config={"callbacks": [handler]})
    first = handler.last_row
    model.invoke("same", config={"callbacks": [handler]})
    hit = handler.last_row
    assert first.cost_usd == Decimal("0.0000048")  # 12 x $0.15 + 5 x $0.60
    assert hit.meta["llm_cache_hit"] is True
    assert (hit.cost_usd, hit.price_source) == (0, CACHE_HIT_SOURCE)


def test_cache_savings_is_uncached_price_minus_price(app):
    at = datetime(2026, 3, 1, tzinfo=UTC)
    cases = [
        ("o4-mini-2025-04-16", "openai", 5000, 4096, 0, 1200),
        ("gemini-2.5-pro", "google", 250_000, 100_000, 0, 2000),
        ("claude-sonnet-4-5", "anthropic", 10_000, 6000, 3000, 500),
    ]
    for model, provider, prompt, cached, written, completion in cases:
        row = record(
            app,
            model,
            provider=provider,
            created_at=at,
            prompt_tokens=prompt,
            cached_tokens=cached,
            cache_write_tokens=written,
            completion_tokens=completion,
        )
        actual = genai(
            model, provider, at, prompt, completion, cached=cached, cache_write=written
        ).total_price
        uncached = genai(model, provider, at, prompt, completion, cache_write=written).total_price
        assert row.cache_savings_usd == uncached - actual, model
        assert row.cache_savings_usd > 0


# --- rules are checked when the app starts -----------------------------------------


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (
            [{**ACME_RULE, "input_per_mtok": "abc"}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern 'acme-llm-.*'): input_per_mtok must be a price "
            "in USD per million tokens (a decimal string or a number), got 'abc'",
        ),
        (
            [ACME_RULE, {**ACME_RULE, "pattern": "beta-(", "start_date": None}],
            "LLM_TRACKER_CUSTOM_PRICES[1] (pattern 'beta-('): pattern is not a valid regex: "
            "missing ), unterminated subpattern at position 5",
        ),
        (
            [{"pattern": "x", "input_per_mtok": 1}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern 'x'): output_per_mtok is required",
        ),
        (
            [{"pattern": "x", "input_per_mtok": 1, "output_per_mtok": "-2"}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern 'x'): output_per_mtok must be a finite price "
            ">= 0, got '-2'",
        ),
        (
            [{"pattern": "x", "input_per_mtok": 1, "output_per_mtok": 2, "cached_per_mtok": 1}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern 'x'): unknown field(s) cached_per_mtok; known: "
            "pattern, provider, start_date, input_per_mtok, cached_input_per_mtok, "
            "cache_write_per_mtok, output_per_mtok",
        ),
        (
            [{**ACME_RULE, "start_date": "2026-13-01"}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern 'acme-llm-.*'): start_date must be a date "
            "(YYYY-MM-DD) or an ISO datetime, got '2026-13-01'",
        ),
        (
            [{"pattern": "", "input_per_mtok": 1, "output_per_mtok": 2}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern ''): pattern must be a non-empty regex string, "
            "got ''",
        ),
        (
            [{**ACME_RULE, "cache_write_per_mtok": True}],
            "LLM_TRACKER_CUSTOM_PRICES[0] (pattern 'acme-llm-.*'): cache_write_per_mtok must be a "
            "price in USD per million tokens (a decimal string or a number), got True",
        ),
        (["acme-llm-.*"], "LLM_TRACKER_CUSTOM_PRICES[0]: a rule must be a dict, got 'acme-llm-.*'"),
        (ACME_RULE, "LLM_TRACKER_CUSTOM_PRICES must be a list of rules, got {'pattern'"),
    ],
)
def test_invalid_rules_fail_at_app_start(make_app, prices, message):
    with pytest.raises(ValueError) as err:
        make_app(LLM_TRACKER_CUSTOM_PRICES=prices)
    assert str(err.value).startswith(message), str(err.value)


def test_invalid_azure_deployments_fail_at_app_start(make_app):
    with pytest.raises(
        ValueError,
        match=r"^LLM_TRACKER_AZURE_DEPLOYMENTS must map "
        r"deployment names to model names \(strings\), got "
        r"\['prod-4o'\]$",
    ):
        make_app(LLM_TRACKER_AZURE_DEPLOYMENTS=["prod-4o"])


def test_rules_from_the_environment(monkeypatch, make_app):
    monkeypatch.setenv("FLASK_LLM_TRACKER_CUSTOM_PRICES", json.dumps([ACME_RULE]))
    app = make_app()
    row = record(
        app, "acme-llm-2", prompt_tokens=1_000_000, created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert (row.cost_usd, row.price_source) == (Decimal(1), "custom: acme-llm-.* from 2026-01-01")


# --- storage, spool, offline data ----------------------------------------------------


def test_sums_are_exact(app_ctx):
    # 3.75e-8 USD a token: floats could not add these up exactly; the column can.
    for i in range(300):
        record_usage(
            "gemini-1.5-flash",
            provider="google",
            prompt_tokens=2 + i,
            cached_tokens=1 + i,
            created_at=datetime(2024, 9, 1, tzinfo=UTC),
        )
    flush()
    costs = db.session.scalars(select(LLMUsage.cost_usd)).all()
    total = db.session.execute(select(func.sum(LLMUsage.cost_usd))).scalar_one()
    assert total == sum(costs)
    assert isinstance(total, Decimal)
    # 300 x 1 uncached x $0.075 + (1 + ... + 300) cached x $0.01875
    assert total == Decimal("0.0000225") + Decimal(45150) * Decimal("0.01875") / 10**6
    assert format_money(total) == "0.0008690625"


def test_spooled_rows_carry_their_cost(app_ctx, monkeypatch):
    def down(conn, *rows):
        raise RuntimeError("database down")

    at = datetime(2026, 3, 1, tzinfo=UTC)
    with monkeypatch.context() as m:
        # Every write path down: sync mode's insert_row and the writer's batch insert.
        m.setattr(recording, "insert_row", down)
        m.setattr(recording, "insert_rows", down)
        m.setattr(writer, "insert_rows", down)
        returned = record_usage("gpt-4o-mini", provider="openai", prompt_tokens=1010, created_at=at)
        flush()  # the writer has tried (and spooled the row) before the database is back
    with open(get_spool().path, encoding="utf-8") as f:
        [line] = f.readlines()
    # A legacy line (spooled before rows were priced) is priced at replay.
    legacy = json.loads(line)
    for key in (
        "cost_usd",
        "input_cost_usd",
        "output_cost_usd",
        "cache_savings_usd",
        "price_source",
    ):
        del legacy[key]
    legacy.update(
        id="00000000-0000-0000-0000-000000000001",
        run_id="legacy",
        prompt_tokens=2020,
        total_tokens=2020,
    )
    with open(get_spool().path, "a", encoding="utf-8") as f:
        f.write(json.dumps(legacy) + "\n")
    assert get_spool().replay().written == 2
    rows = db.session.scalars(select(LLMUsage).order_by(LLMUsage.prompt_tokens)).all()
    assert json.loads(line)["cost_usd"] == "0.000151500000"
    assert returned.cost_usd == Decimal("0.0001515")
    assert [(r.cost_usd, r.price_source) for r in rows] == [
        (Decimal("0.0001515"), f"genai-prices {V}: openai/gpt-4o-mini"),
        (Decimal("0.000303"), f"genai-prices {V}: openai/gpt-4o-mini"),
    ]


def test_bundled_data_only_never_fetched(app, monkeypatch):
    from genai_prices import update_prices

    def no_network(self):
        raise AssertionError("genai-prices tried to fetch prices")

    monkeypatch.setattr(update_prices.UpdatePrices, "fetch", no_network)
    # What an UpdatePrices started elsewhere in the process would do: swap the global
    # snapshot. Rows keep the pinned, bundled prices their price_source names.
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        row = record(
            app,
            "gpt-4o-mini",
            provider="openai",
            prompt_tokens=1010,
            created_at=datetime(2026, 3, 1, tzinfo=UTC),
        )
    finally:
        set_custom_snapshot(None)
    assert row.cost_usd == Decimal("0.0001515")
    assert update_prices._shared_updater.thread is None
    assert V == genai_prices.__version__ == "0.2.3"


def test_format_money():
    assert format_money(None) is None
    assert format_money(Decimal("0.0001515")) == "0.000151500"
    assert format_money(Decimal("0.0000000375")) == "0.0000000375"
    assert format_money(Decimal("0E-12")) == "0.000000000"
    assert format_money(Decimal("1234.5")) == "1234.500000000"
    assert format_money(Decimal("-0.000001")) == "-0.000001000"


# --- the memoised fast path is genai-prices, for every bundled price -------------------


def test_fast_path_equals_genai_prices_for_every_bundled_model():
    splits = [
        TokenSplit(1200, 1024, 0, 300, 64),
        TokenSplit(250_000, 100_000, 5000, 20_000, 8000),
        TokenSplit(0, 0, 0, 0, 0),
        TokenSplit(10, 0, 0, 7, 7),
        TokenSplit(3000, 0, 1000, 50, 0),
    ]
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for provider, model, mp in bundled_prices(at):
            for t in splits:
                calc = mp.calc_price(t.genai_usage())
                uncached = mp.calc_price(t.genai_usage(cached=False))["total_price"]
                assert price_with_model_price(mp, t) == (
                    calc["total_price"],
                    calc["input_price"],
                    calc["output_price"],
                    uncached - calc["total_price"],
                ), (provider.id, model.id, t)
                checked += 1
    assert checked > 10_000


MODELS = [
    ("openai", "o4-mini"),
    ("google", "gemini-2.5-pro"),
    ("google", "gemini-2.5-flash"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-6"),
    ("azure", "gpt-4o"),
    ("deepseek", "deepseek-v4-pro"),
]


@settings(max_examples=300, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    prompt=st.integers(0, 2_000_000),
    cached=st.integers(0, 400_000),
    written=st.integers(0, 400_000),
    completion=st.integers(0, 200_000),
    reasoning=st.integers(0, 200_000),
    day=st.dates(date(2024, 1, 1), date(2027, 12, 31)),
    hour=st.integers(0, 23),
)
def test_fast_path_equals_genai_prices_for_any_usage(
    model, prompt, cached, written, completion, reasoning, day, hour
):
    from llm_tracker.pricing import _lookup

    at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    _, info = _lookup(*model)
    mp = info.get_prices(at)
    t = TokenSplit(prompt, cached, written, completion, reasoning)
    try:
        calc = mp.calc_price(t.genai_usage())
        uncached = mp.calc_price(t.genai_usage(cached=False))["total_price"]
    except ValueError:  # token counts that do not add up: both refuse
        with pytest.raises(ValueError):
            price_with_model_price(mp, t)
        return
    assert price_with_model_price(mp, t) == (
        calc["total_price"],
        calc["input_price"],
        calc["output_price"],
        uncached - calc["total_price"],
    )


def test_long_sources_fit_the_column(make_app):
    pattern = "|".join(["acme-llm-1"] + [f"other-model-{i}" for i in range(30)])
    assert len(pattern) > 300
    app = make_app(
        LLM_TRACKER_CUSTOM_PRICES=[{"pattern": pattern, "input_per_mtok": 1, "output_per_mtok": 1}]
    )
    row = record(app, "acme-llm-1", prompt_tokens=1_000_000)
    assert (row.cost_usd, row.price_source) == (Decimal(1), f"custom: {pattern}"[:200])
