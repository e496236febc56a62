"""Test helpers: the rollup table, and what it should hold computed in Python from raw rows."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from llm_tracker import LLMUsage, db, flush
from llm_tracker.latency import latency_bin
from llm_tracker.models import LLMLatencySliceDay, LLMUsageSliceDay
from llm_tracker.rollup import (
    DAY,
    KEY_COLUMNS,
    LATENCY_KEY_COLUMNS,
    LEVELS,
    MONEY_COLUMNS,
    QUARTER,
    SLICE_DIMENSIONS,
    SLICE_SUM_COLUMNS,
    SUM_COLUMNS,
    TOKEN_COLUMNS,
    Level,
    rollup_keys,
    slice_value,
)

# The raw columns a rollup key is made of.
KEY_SOURCE = ("created_at", "model", "provider", "user_id", "node_name", "source_type", "success")


def assert_rollups_match() -> None:
    """Both rollup levels hold exactly what the raw rows add up to."""
    flush()
    for level in LEVELS:
        assert stored_rollups(level) == expected_rollups(level), level.name
        assert stored_latency(level) == expected_latency(level), level.name
    assert stored_slices() == expected_slices()
    assert stored_slices(latency=True) == expected_slices(latency=True)


def stored_slices(latency: bool = False) -> dict[tuple[Any, ...], Any]:
    """The slice table (or its latency histogram): key -> sums (or calls)."""
    model = LLMLatencySliceDay if latency else LLMUsageSliceDay
    names = [c.key for c in model.__table__.primary_key.columns]
    sums = [c.key for c in model.__table__.c if not c.primary_key]
    found = {}
    for r in db.session.execute(select(model)).scalars():
        values = {s: getattr(r, s) for s in sums}
        found[tuple(getattr(r, k) for k in names)] = values["calls"] if latency else values
    return found


def expected_slices(latency: bool = False) -> dict[tuple[Any, ...], Any]:
    """The slices computed in Python from every raw row."""
    result: dict[tuple[Any, ...], Any] = {}
    for row in db.session.execute(select(LLMUsage)).scalars():
        day = DAY.floor(row.created_at)
        for dimension, column in SLICE_DIMENSIONS.items():
            key = (dimension, day, slice_value(getattr(row, column)))
            if latency:
                if row.latency_ms is not None:
                    at = (*key, latency_bin(row.latency_ms))
                    result[at] = result.get(at, 0) + 1
                continue
            sums = result.setdefault(
                key, {s: Decimal(0) if s in MONEY_COLUMNS else 0 for s in SLICE_SUM_COLUMNS}
            )
            sums["calls"] += 1
            sums["successful_calls"] += row.success
            for name in TOKEN_COLUMNS:
                sums[name] += getattr(row, name)
            sums["unpriced_calls"] += row.cost_usd is None
            for name in MONEY_COLUMNS:
                sums[name] += getattr(row, name) or Decimal(0)
    return result


def stored_latency(level: Level = QUARTER) -> dict[tuple[Any, ...], int]:
    """A latency histogram table: (key..., bin) -> calls."""
    rows = db.session.execute(select(level.latency_model)).scalars().all()
    return {tuple(getattr(r, k) for k in LATENCY_KEY_COLUMNS): r.calls for r in rows}


def expected_latency(level: Level = QUARTER) -> dict[tuple[Any, ...], int]:
    """The latency histogram of ``level`` computed in Python from every raw row."""
    result: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in db.session.execute(select(LLMUsage)).scalars():
        if row.latency_ms is None:
            continue
        values = {c: getattr(row, c) for c in KEY_SOURCE}
        key = next(k for k in rollup_keys(values) if k[0] == level.name)
        result[(*key[1:], latency_bin(row.latency_ms))] += 1
    return dict(result)


def stored_rollups(level: Level = QUARTER) -> dict[tuple[Any, ...], dict[str, Any]]:
    """A rollup table: key -> sums (call inside an app context)."""
    flush()
    rows = db.session.execute(select(level.model)).scalars().all()
    return {
        tuple(getattr(r, k) for k in KEY_COLUMNS): {s: getattr(r, s) for s in SUM_COLUMNS}
        for r in rows
    }


def expected_rollups(level: Level = QUARTER) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The rollups of ``level`` computed in Python from every raw row."""
    flush()
    result: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {s: Decimal(0) if s in MONEY_COLUMNS else 0 for s in SUM_COLUMNS}
    )
    for row in db.session.execute(select(LLMUsage)).scalars():
        values = {c: getattr(row, c) for c in KEY_SOURCE}
        key = next(k for k in rollup_keys(values) if k[0] == level.name)
        sums = result[key[1:]]
        sums["calls"] += 1
        for name in TOKEN_COLUMNS:
            sums[name] += getattr(row, name)
        sums["unpriced_calls"] += row.cost_usd is None
        for name in MONEY_COLUMNS:
            sums[name] += getattr(row, name) or Decimal(0)
    return dict(result)


def record_many(database_url: str, spool: str, worker: int, calls: int) -> None:
    """A writer process: ``calls`` rows through record_usage, keys shared with the others."""
    import os
    from datetime import UTC, datetime, timedelta

    from admin_app import create_app
    from llm_tracker import record_usage

    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "LLM_TRACKER_SPOOL_PATH": spool,
            "LLM_TRACKER_INSTANCE_PATH": os.path.dirname(spool),
        }
    )
    with app.app_context():
        write_rows(worker, calls, record_usage, datetime(2026, 3, 1, 10, tzinfo=UTC), timedelta)
        flush()
        db.engine.dispose()


def write_rows(worker: int, calls: int, record_usage, start, timedelta) -> None:
    """The rows writer ``worker`` records: few keys, so writers upsert the same rollup rows."""
    for i in range(calls):
        record_usage(
            ("gpt-4o-mini", "acme-llm-7")[i % 2],
            prompt_tokens=100 + i,
            completion_tokens=worker,
            user_id=(None, 1)[i % 2 == 0 and worker % 2],
            provider=(None, "openai")[i % 2 == 0],
            success=i % 7 != 0,
            created_at=start + timedelta(minutes=i % 20),
            node_name=f"n{i % 2}",
        )
