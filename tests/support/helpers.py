"""Small helpers shared by several test files (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from genai_prices.data import providers
from genai_prices.types import ModelPrice
from sqlalchemy import delete, event

from llm_tracker import LLMUsage, db, flush
from llm_tracker.models import (
    LLMLatencyRollup,
    LLMLatencyRollupDay,
    LLMLatencySliceDay,
    LLMUsageRollup,
    LLMUsageRollupDay,
    LLMUsageSliceDay,
)

# A custom price rule for a model genai-prices does not know (USD per million tokens).
ACME_RULE = {
    "pattern": "acme-llm-.*",
    "provider": None,
    "start_date": "2026-01-01",
    "input_per_mtok": "1.00",
    "cached_input_per_mtok": "0.10",
    "cache_write_per_mtok": "1.25",
    "output_per_mtok": "2.00",
}

# Werkzeug's description of a 500, the JSON error of an unhandled exception.
INTERNAL_ERROR = (
    "The server encountered an internal error and was unable to complete your "
    "request. Either the server is overloaded or there is an error in the "
    "application."
)


def utc(*args: int) -> datetime:
    """``datetime(*args)`` in UTC."""
    return datetime(*args, tzinfo=UTC)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(app: Flask, *args: str) -> str:
    """The output of ``flask <args>`` on ``app``; the command must succeed."""
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def clear_usage() -> None:
    """Delete every usage row and every rollup table's rows (in an app context)."""
    flush()  # nothing recorded before may land after
    with db.engine.begin() as conn:
        conn.execute(delete(LLMUsage))
        conn.execute(delete(LLMUsageRollup))
        conn.execute(delete(LLMUsageRollupDay))
        conn.execute(delete(LLMLatencyRollup))
        conn.execute(delete(LLMLatencyRollupDay))
        conn.execute(delete(LLMUsageSliceDay))
        conn.execute(delete(LLMLatencySliceDay))


@contextmanager
def captured_statements() -> Iterator[list[str]]:
    """The SQL statements sent on ``db.engine`` inside the block (in an app context)."""
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)


def bundled_prices(at: datetime) -> Iterator[tuple[Any, Any, ModelPrice]]:
    """(provider, model, prices) for every price genai-prices bundles: each model's prices
    (one, or one per constraint) and its flex-tier and batch prices at ``at``."""
    for provider in providers:
        for model in provider.models:
            prices = (
                [model.prices]
                if isinstance(model.prices, ModelPrice)
                else [c.prices for c in model.prices]
            )
            prices += [
                model.get_prices(at, {"service_tier": "flex"}),
                model.get_prices(at, {"processing": "batch"}),
            ]
            for mp in prices:
                yield provider, model, mp
