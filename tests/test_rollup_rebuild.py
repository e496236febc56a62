"""``flask rollup rebuild`` recomputes the rollups from raw rows; ``reprice`` keeps them right."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select, update
from support.helpers import ACME_RULE, run_cli, utc
from support.rollup_check import assert_rollups_match, stored_rollups

from llm_tracker import db, flush, get_spool, record_usage
from llm_tracker.llm_usage_stats import get_stats_by_model, get_summary_stats, raw_scan
from llm_tracker.models import LLMUsageRollup
from llm_tracker.reprice import reprice
from llm_tracker.rollup import LEVELS, QUARTER, rebuild


def seed() -> None:
    """Rows over three days, priced and unpriced, with and without user and provider."""
    for i in range(40):
        record_usage(
            ("gpt-4o-mini", "acme-llm-7")[i % 2],
            100 * i,
            10 * i,
            cached_tokens=i,
            user_id=(None, 1, 2)[i % 3],
            provider=(None, "openai")[i % 2 == 0],
            success=i % 9 != 0,
            node_name=("a", "b")[i % 4 == 0],
            created_at=utc(2026, 2, 1, 22) + timedelta(minutes=97 * i, seconds=i),
        )
    flush()


def test_rebuild_gives_what_record_usage_kept(app):
    with app.app_context():
        seed()
        assert_rollups_match()
        kept = {level: stored_rollups(level) for level in LEVELS}
    output = run_cli(app, "rollup", "rebuild", "--batch-days", "2")
    assert output.endswith(
        f"15-minute rollup rows written: {len(kept[QUARTER])} "
        "(from the first row on, 2 batch(es) of 2 day(s))\n"
    )
    with app.app_context():
        assert {level: stored_rollups(level) for level in LEVELS} == kept


def test_rebuild_since_repairs_from_that_day_on_only(app):
    with app.app_context():
        seed()
        kept = {level: stored_rollups(level) for level in LEVELS}
        # Damage before and after the --since day, and a lost rollup row.
        with db.engine.begin() as conn:
            for level in LEVELS:
                conn.execute(update(level.model).values(calls=level.model.calls + 100))
            conn.execute(
                delete(LLMUsageRollup).where(LLMUsageRollup.bucket == utc(2026, 2, 3, 8, 45))
            )
        damaged = {level: stored_rollups(level) for level in LEVELS}
    output = run_cli(app, "rollup", "rebuild", "--since", "2026-02-02T10:07:00")
    assert "(from 2026-02-02 on, 3 batch(es) of 1 day(s))" in output
    with app.app_context():
        repaired = {level: stored_rollups(level) for level in LEVELS}
    since = utc(2026, 2, 2)  # the day of 10:07
    for level in LEVELS:
        assert {k: v for k, v in repaired[level].items() if k[0] >= since} == {
            k: v for k, v in kept[level].items() if k[0] >= since
        }
        assert {k: v for k, v in repaired[level].items() if k[0] < since} == {
            k: v for k, v in damaged[level].items() if k[0] < since
        }
    run_cli(app, "rollup", "rebuild")
    with app.app_context():
        assert {level: stored_rollups(level) for level in LEVELS} == kept


def test_rebuild_of_an_empty_table_clears_the_rollups(app):
    with app.app_context():
        seed()
        with db.engine.begin() as conn:
            conn.execute(delete(LLMUsageRollup.__table__.metadata.tables["llm_tracker_usage"]))
    assert "rollup rows written: 0" in run_cli(app, "rollup", "rebuild")
    with app.app_context():
        assert all(stored_rollups(level) == {} for level in LEVELS)


# Rounds of the rebuild-under-writers stress test: each runs many rebuild windows against
# several writers. Before the fix one round in two deadlocked on PostgreSQL.
STRESS_ROUNDS = int(os.environ.get("LLM_TRACKER_STRESS_ROUNDS", "6"))
WRITERS = 4


@pytest.mark.slow
@pytest.mark.parametrize("write_mode", ["sync", "background"])
def test_rebuild_while_writers_record(make_app, write_mode):
    """Rebuilds and reprices beside writers (each thread its own transactions in sync mode,
    the writer thread's batches in background mode): no deadlock, no aborted statement, no
    row spooled, and the rollups equal the raw rows after every round."""
    app = make_app(LLM_TRACKER_WRITE_MODE=write_mode, LLM_TRACKER_FLUSH_INTERVAL_MS=5)
    with app.app_context():
        seed()
    errors: list[BaseException] = []

    def write(worker: int, done: threading.Event) -> None:
        with app.app_context():
            i = 0
            while not done.is_set() or i < 20:
                # Keys shared by every writer, so they update the same rollup rows that the
                # rebuild deletes and writes again.
                record_usage(
                    ("gpt-4o-mini", "acme-llm-7")[i % 2],
                    i,
                    worker,
                    user_id=i % 2 or None,
                    node_name=("a", "b")[i % 3 == 0],
                    created_at=utc(2026, 2, 1, 22) + timedelta(minutes=53 * i),
                )
                i += 1
                if i % 2 == 0:
                    # Background callers never wait: this keeps them at the writer's pace.
                    flush()

    for _ in range(STRESS_ROUNDS):
        done = threading.Event()
        writers = [threading.Thread(target=write, args=(w, done)) for w in range(WRITERS)]
        for t in writers:
            t.start()
        try:
            with app.app_context():
                for days in (1, 2, 1, 3, 1, 1):
                    rebuild(step=timedelta(days=days))
                reprice(utc(2026, 2, 1), batch_size=25)
        except BaseException as exc:  # noqa: BLE001 - reported after the writers stop
            errors.append(exc)
        finally:
            done.set()
            for t in writers:
                t.join()
        assert not errors, errors
        flush()
        with app.app_context():
            assert get_spool().rows() == []  # no writer's statement was aborted
            assert_rollups_match()


def test_reprice_applies_its_cost_changes_to_the_rollups(make_app):
    before = make_app()
    with before.app_context():
        seed()
        unpriced = get_summary_stats()["unpriced_calls"]
        assert unpriced == 20
    app = make_app(LLM_TRACKER_CUSTOM_PRICES=[ACME_RULE])
    run_cli(app, "reprice", "--since", "2026-02-01", "--batch-size", "7")
    with app.app_context():
        assert_rollups_match()
        summary = get_summary_stats()
        assert summary["unpriced_calls"] == 0
        acme = [m for m in get_stats_by_model() if m["model"] == "acme-llm-7"][0]
        # Row i (odd): 100i prompt of which i cached, 10i out: (99i x 1 + i x 0.10 + 10i x 2)
        # per Mtok, summed over the 20 odd i (sum 400).
        assert Decimal(acme["total_cost_usd"]) == Decimal("119.1") * 400 / 1_000_000
        with raw_scan():
            assert get_summary_stats() == summary
        total = db.session.execute(select(func.sum(LLMUsageRollup.calls))).scalar_one()
        assert total == 40
    # A dry run writes nothing, to rows or rollups.
    again = make_app()
    run_cli(again, "reprice", "--since", "2026-02-01", "--dry-run")
    with again.app_context():
        assert_rollups_match()
