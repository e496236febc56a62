"""Anthropic prompt caching through langchain-anthropic's real ``ChatAnthropic``: cache
writes are counted (5-minute and 1-hour ones, priced at their own rates) and ``reprice``
gives every row the cost it was written with.

Prices (genai-prices 0.2.3, ``anthropic/claude-sonnet-4-5``, USD per million tokens, below
its 200k-prompt tier): input 3, cache read 0.30, cache write 3.75 (5 m), 1 h cache write 6,
output 15. ``tokens(row)`` is (prompt, completion, total, cached, reasoning, cache_write).
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from support.fake_provider import anthropic_message, anthropic_sse, anthropic_stream_events
from support.helpers import bundled_prices
from support.sdk_support import anthropic_model, cfg, only_row, tokens

from llm_tracker import UsageHandler, record_usage
from llm_tracker.handler import usage_from_metadata
from llm_tracker.pricing import GENAI_PRICES_VERSION, TokenSplit, price_with_model_price
from llm_tracker.reprice import reprice

SERVED = "claude-sonnet-4-5-20250929"
SOURCE = f"genai-prices {GENAI_PRICES_VERSION}: anthropic/claude-sonnet-4-5"
M = Decimal(1_000_000)


@pytest.fixture
def handler(app) -> UsageHandler:
    return UsageHandler({"user_id": 1}, node_name="anthropic", app=app)


def reprice_everything(app) -> tuple[int, Decimal]:
    """(rows changed, total cost after) of a reprice of every row."""
    with app.app_context():
        report = reprice(datetime.now(UTC) - timedelta(days=1))
    return report.total.changed, report.total.after


# --- the recorded payloads ------------------------------------------------------------


def test_recorded_cache_read_and_5m_creation(app, fake_provider, handler):
    # usage: input_tokens 3 (uncached), cache_read_input_tokens 1111,
    # cache_creation_input_tokens 418 = cache_creation.ephemeral_5m_input_tokens 418
    # (ephemeral_1h 0), output_tokens 33; model "claude-sonnet-4-5-20250929".
    fake_provider.enqueue_payload("anthropic_message_cache_read_and_creation.json")
    msg = anthropic_model(fake_provider).invoke("What is Python?", config=cfg(handler))
    assert msg.content.startswith("Python is a beginner-friendly")
    # langchain-anthropic's own report: the writes under the 5m key, cache_creation 0.
    assert msg.usage_metadata["input_token_details"] == {
        "cache_read": 1111,
        "cache_creation": 0,
        "ephemeral_5m_input_tokens": 418,
        "ephemeral_1h_input_tokens": 0,
    }
    row = only_row(app)
    assert tokens(row) == (1532, 33, 1565, 1111, 0, 418)
    assert (row.model, row.requested_model, row.provider) == (
        SERVED,
        "claude-sonnet-4-5",
        "anthropic",
    )
    assert "cache_write_1h_tokens" not in row.meta
    assert "usage_missing" not in row.meta
    # 3 x 3 + 1111 x 0.30 + 418 x 3.75 + 33 x 15 = 9 + 333.3 + 1567.5 + 495 = 2404.8 / 1M
    # (without the writes: 421 x 3 + 333.3 + 495 = 2091.3, 13 % less).
    assert row.cost_usd == Decimal("2404.8") / M == Decimal("0.0024048")
    assert row.input_cost_usd == Decimal("0.0019098")
    assert row.output_cost_usd == Decimal("0.000495")
    assert row.cache_savings_usd == Decimal("0.0029997")  # 1111 x (3 - 0.30)
    assert row.price_source == SOURCE
    assert reprice_everything(app) == (0, Decimal("0.0024048"))


def test_recorded_stream(app, fake_provider, handler):
    # message_start: input_tokens 20, no cache; message_delta usage: input_tokens 20,
    # cache_creation 0, cache_read 0, output_tokens 5; model "claude-sonnet-4-5-20250929".
    fake_provider.enqueue_payload("anthropic_message_stream.sse")
    text = "".join(
        c.text for c in anthropic_model(fake_provider).stream("1 + 1?", config=cfg(handler))
    )
    assert text == "2"
    row = only_row(app)
    assert tokens(row) == (20, 5, 25, 0, 0, 0)
    assert row.model == SERVED
    assert row.cost_usd == Decimal("0.000135")  # 20 x 3 + 5 x 15 = 135 / 1M
    assert fake_provider.requests[0].json["stream"] is True
    assert reprice_everything(app) == (0, Decimal("0.000135"))


# --- 1-hour writes -------------------------------------------------------------------

# 50 uncached + 2000 read + 3000 written (1000 with the 5-minute TTL, 2000 with 1 hour).
CACHE_USAGE = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 2000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 100,
    "service_tier": "standard",
}


def test_1h_writes_priced_at_the_1h_rate_and_repriced_alike(app, fake_provider, handler):
    fake_provider.enqueue(anthropic_message(SERVED, "ok", usage=CACHE_USAGE))
    anthropic_model(fake_provider).invoke("hi", config=cfg(handler))
    row = only_row(app)
    assert tokens(row) == (5050, 100, 5150, 2000, 0, 3000)
    assert row.meta["cache_write_1h_tokens"] == 2000
    # 50 x 3 + 2000 x 0.30 + 1000 x 3.75 + 2000 x 6 + 100 x 15
    # = 150 + 600 + 3750 + 12000 + 1500 = 18000 / 1M (all writes at 3.75: 0.0135).
    assert row.cost_usd == Decimal("0.018")
    assert row.input_cost_usd == Decimal("0.0165")
    assert reprice_everything(app) == (0, Decimal("0.018"))


def test_stream_writes_have_no_ttl_split(app, fake_provider, handler):
    # The API's message_delta (the only usage langchain-anthropic reads from a stream)
    # carries the total written, not the TTL split: all 3000 at the 5-minute rate.
    fake_provider.enqueue(
        anthropic_sse(anthropic_stream_events(SERVED, usage=CACHE_USAGE)), sse=True
    )
    list(anthropic_model(fake_provider).stream("hi", config=cfg(handler)))
    row = only_row(app)
    assert tokens(row) == (5050, 100, 5150, 2000, 0, 3000)
    assert "cache_write_1h_tokens" not in row.meta
    # 150 + 600 + 3000 x 3.75 + 1500 = 13500 / 1M
    assert row.cost_usd == Decimal("0.0135")
    assert reprice_everything(app) == (0, Decimal("0.0135"))


def test_cache_creation_and_ttl_keys_together_count_once():
    # An older langchain-anthropic left cache_creation set beside the TTL keys.
    details = {
        "cache_read": 5,
        "cache_creation": 30,
        "ephemeral_5m_input_tokens": 10,
        "ephemeral_1h_input_tokens": 20,
    }
    usage = usage_from_metadata(
        {"input_tokens": 40, "output_tokens": 1, "input_token_details": details}
    )
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.cached_tokens) == (
        30,
        20,
        5,
    )
    alone = usage_from_metadata(
        {"input_tokens": 40, "output_tokens": 1, "input_token_details": {"cache_creation": 30}}
    )
    assert (alone.cache_write_tokens, alone.cache_write_1h_tokens) == (30, 0)


# --- the pricer ----------------------------------------------------------------------


def test_1h_split_from_metadata_and_custom_rules(make_app):
    rule = {
        "pattern": "acme-.*",
        "input_per_mtok": "1",
        "cached_input_per_mtok": "0.1",
        "cache_write_per_mtok": "1.25",
        "output_per_mtok": "2",
    }
    app = make_app(LLM_TRACKER_CUSTOM_PRICES=[rule])
    with app.app_context():
        haiku = record_usage(
            "claude-haiku-4-5",
            provider="anthropic",
            prompt_tokens=1000,
            cache_write_tokens=800,
            metadata={"cache_write_1h_tokens": 500},
        )
        bogus = record_usage(
            "claude-haiku-4-5",
            provider="anthropic",
            prompt_tokens=1000,
            cache_write_tokens=800,
            metadata={"cache_write_1h_tokens": "500"},
        )
        acme = record_usage(
            "acme-1",
            prompt_tokens=1000,
            cache_write_tokens=800,
            metadata={"cache_write_1h_tokens": 500},
        )
    # claude-haiku-4-5: input 1, cache write 1.25, 1 h write 2:
    # 200 x 1 + 300 x 1.25 + 500 x 2 = 1575 / 1M; a non-integer count is no split.
    assert haiku.cost_usd == Decimal("0.001575")
    assert bogus.cost_usd == Decimal("0.0012")  # 200 + 800 x 1.25
    # A custom rule has one cache-write rate: 200 x 1 + 800 x 1.25 = 1200 / 1M.
    assert acme.cost_usd == Decimal("0.0012")


def test_fast_path_equals_genai_prices_with_1h_writes():
    splits = [
        TokenSplit(3000, 100, 1000, 50, 0, 400),
        TokenSplit(300_000, 1000, 50_000, 50, 10, 50_000),
        TokenSplit(3000, 0, 1000, 50, 0, 1001),  # more 1 h than written: refused
        TokenSplit(900, 0, 800, 5, 0, 0),
    ]
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    checked = with_1h = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _provider, model, mp in bundled_prices(at):
            with_1h += getattr(mp, "cache_write_1h_mtok", None) is not None
            for t in splits:
                try:
                    calc = mp.calc_price(t.genai_usage())
                    uncached = mp.calc_price(t.genai_usage(cached=False))
                except ValueError:
                    with pytest.raises(ValueError):
                        price_with_model_price(mp, t)
                    continue
                assert price_with_model_price(mp, t) == (
                    calc["total_price"],
                    calc["input_price"],
                    calc["output_price"],
                    uncached["total_price"] - calc["total_price"],
                ), (model.id, t)
                checked += 1
    assert with_1h > 50 and checked > 5000
