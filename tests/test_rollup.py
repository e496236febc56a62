"""The rollup table: kept in step with the raw rows on insert, under concurrent writers,
by spool replay, and after the migration's backfill."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select
from support.helpers import utc
from support.rollup_check import assert_rollups_match, record_many, stored_rollups, write_rows

from llm_tracker import LLMUsage, db, flush, get_spool, record_usage
from llm_tracker.models import NO_PROVIDER, NO_SOURCE, NO_USER
from llm_tracker.rollup import QUARTER


def test_quarter_floor_and_ceil():
    assert QUARTER.floor(utc(2026, 1, 1, 10, 7, 3, 5)) == utc(2026, 1, 1, 10, 0)
    assert QUARTER.floor(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 15)
    assert QUARTER.floor(utc(2026, 1, 1, 10, 59, 59, 999999)) == utc(2026, 1, 1, 10, 45)
    assert QUARTER.ceil(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 15)
    assert QUARTER.ceil(utc(2026, 1, 1, 10, 15, 0, 1)) == utc(2026, 1, 1, 10, 30)
    assert QUARTER.ceil(utc(2026, 1, 1, 23, 50)) == utc(2026, 1, 2, 0, 0)
    # Aware non-UTC input: the bucket is still a UTC one (+05:45 is 10:07 UTC here).
    kathmandu = datetime(2026, 1, 1, 15, 52, tzinfo=timezone_offset(5, 45))
    assert QUARTER.floor(kathmandu) == utc(2026, 1, 1, 10, 0)


def timezone_offset(hours: int, minutes: int):
    from datetime import timezone

    return timezone(timedelta(hours=hours, minutes=minutes))


def test_insert_adds_to_its_rollup_row_exactly(app_ctx):
    record_usage(
        "gpt-4o-mini",
        1000,
        100,
        cached_tokens=200,
        reasoning_tokens=10,
        provider="openai",
        user_id=7,
        node_name="a",
        created_at=utc(2026, 1, 1, 10, 7),
    )
    record_usage(
        "gpt-4o-mini",
        2000,
        300,
        provider="openai",
        user_id=7,
        node_name="a",
        created_at=utc(2026, 1, 1, 10, 14, 59, 999999),
        run_id="r1",
    )
    # A duplicate run id adds nothing.
    record_usage(
        "gpt-4o-mini",
        5000,
        500,
        provider="openai",
        user_id=7,
        node_name="a",
        created_at=utc(2026, 1, 1, 10, 14),
        run_id="r1",
    )
    record_usage(
        "mystery-model",
        10,
        5,
        success=False,
        error="boom",
        created_at=utc(2026, 1, 1, 10, 15),
        metadata={"source_type": "batch"},
    )
    assert_rollups_match()
    rollups = stored_rollups()
    assert set(rollups) == {
        (utc(2026, 1, 1, 10, 0), "gpt-4o-mini", "openai", 7, "a", NO_SOURCE, True),
        (utc(2026, 1, 1, 10, 15), "mystery-model", NO_PROVIDER, NO_USER, "unknown", "batch", False),
    }
    first = rollups[(utc(2026, 1, 1, 10, 0), "gpt-4o-mini", "openai", 7, "a", NO_SOURCE, True)]
    assert first["calls"] == 2
    assert first["prompt_tokens"] == 3000
    assert first["completion_tokens"] == 400
    assert first["total_tokens"] == 3400
    assert first["cached_tokens"] == 200
    assert first["reasoning_tokens"] == 10
    assert first["unpriced_calls"] == 0
    # gpt-4o-mini: $0.15 / $0.60 per Mtok in / out, $0.075 cached: 800 x 0.15 + 200 x
    # 0.075 + 100 x 0.60 = 195 µ$, then 2000 x 0.15 + 300 x 0.60 = 480 µ$.
    assert first["cost_usd"] == Decimal("0.000675000000")
    unpriced = rollups[
        (utc(2026, 1, 1, 10, 15), "mystery-model", NO_PROVIDER, NO_USER, "unknown", "batch", False)
    ]
    assert unpriced["calls"] == unpriced["unpriced_calls"] == 1
    assert unpriced["cost_usd"] == Decimal(0)


def test_concurrent_threads_lose_nothing(app):
    threads, calls = 8, 60
    start = utc(2026, 3, 1, 10)

    def work(worker: int) -> None:
        with app.app_context():
            write_rows(worker, calls, record_usage, start, timedelta)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    flush()
    with app.app_context():
        assert (
            db.session.execute(select(func.count()).select_from(LLMUsage)).scalar_one()
            == threads * calls
        )
        assert_rollups_match()
        rollups = stored_rollups()
        assert sum(r["calls"] for r in rollups.values()) == threads * calls
    assert get_spool(app).rows() == []


@pytest.mark.slow
def test_concurrent_processes_lose_nothing(app, database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("several writer processes on one SQLite file are the throughput bench's")
    processes, calls = 4, 60
    ctx = multiprocessing.get_context("spawn")
    spool = str(tmp_path / "spool.jsonl")
    workers = [
        ctx.Process(target=record_many, args=(database_url, spool, w, calls))
        for w in range(processes)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=120)
        assert p.exitcode == 0
    with app.app_context():
        assert (
            db.session.execute(select(func.count()).select_from(LLMUsage)).scalar_one()
            == processes * calls
        )
        assert_rollups_match()
        rollups = stored_rollups()
        assert sum(r["calls"] for r in rollups.values()) == processes * calls


def test_spool_replay_adds_rows_once(app, tmp_path):
    spool = get_spool(app)
    with app.app_context():
        record_usage("gpt-4o-mini", 10, 1, created_at=utc(2026, 1, 1), run_id="kept")
        record_usage("gpt-4o-mini", 20, 2, created_at=utc(2026, 1, 1, 0, 5))
        flush()
    # As record_usage spools a row the database refused; "kept" is in both places.
    values = {
        "id": uuid.uuid4(),
        "run_id": "late",
        "model": "gpt-4o-mini",
        "prompt_tokens": 30,
        "completion_tokens": 3,
        "total_tokens": 33,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cache_write_tokens": 0,
        "success": True,
        "error": None,
        "user_id": None,
        "provider": None,
        "node_name": "n",
        "metadata": {},
        "created_at": utc(2026, 1, 1, 0, 10),
        "cost_usd": Decimal("0.000006300000"),
        "input_cost_usd": Decimal("0.000004500000"),
        "output_cost_usd": Decimal("0.000001800000"),
        "cache_savings_usd": Decimal(0),
        "price_source": "test",
    }
    spool.append(values)
    with app.app_context():
        kept = db.session.execute(select(LLMUsage).where(LLMUsage.run_id == "kept")).scalar_one()
        spool.append({**values, "id": kept.id, "run_id": "kept"})
        result = spool.replay()
    assert (result.written, result.duplicates, result.remaining) == (1, 1, 0)
    with app.app_context():
        assert_rollups_match()
        rollups = stored_rollups()
        assert sum(r["calls"] for r in rollups.values()) == 3
        assert sum(r["prompt_tokens"] for r in rollups.values()) == 60


def test_migration_backfills_existing_rows(make_app):
    app = make_app(create_tables=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", "434144cff75b"])
    assert result.exit_code == 0, result.output
    table = LLMUsage.__table__
    rows = []
    for i in range(12):
        rows.append(
            {
                "id": uuid.uuid4(),
                "run_id": f"r{i}",
                "user_id": (None, 1, 2)[i % 3],
                "model": ("a", "b")[i % 2],
                "provider": (None, "openai")[i % 2],
                "node_name": "n",
                "prompt_tokens": i,
                "completion_tokens": 2 * i,
                "total_tokens": 3 * i,
                "cached_tokens": 1,
                "cache_write_tokens": 0,
                "reasoning_tokens": i % 2,
                "success": i % 5 != 0,
                "metadata": {},
                "created_at": utc(2026, 2, 1, 9, 50) + timedelta(minutes=4 * i),
                # Before the revision that adds the rollup, rows may be priced or not.
                "cost_usd": None if i % 4 == 0 else Decimal(i) / 1000,
                "input_cost_usd": None if i % 4 == 0 else Decimal(i) / 2000,
                "output_cost_usd": None if i % 4 == 0 else Decimal(i) / 2000,
                "cache_savings_usd": None if i % 4 == 0 else Decimal("0.000000000001"),
            }
        )
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(insert(table), rows)
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert_rollups_match()
        rollups = stored_rollups()
        assert sum(r["calls"] for r in rollups.values()) == 12
        assert min(k[0] for k in rollups) == utc(2026, 2, 1, 9, 45)
        # And new rows keep adding to the backfilled rows.
        record_usage("a", 5, created_at=utc(2026, 2, 1, 9, 59), user_id=1)
        assert_rollups_match()
