"""Models and migrations cannot drift: upgrade, then ``flask db check``."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select, text
from support.rollup_check import assert_rollups_match, stored_latency

from llm_tracker import LLMUsage, db
from llm_tracker.llm_usage_stats import get_stats_by_dimension


def test_upgrade_then_check(make_app):
    app = make_app(create_tables=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["db", "check"])  # exits non-zero on any drift
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"llm_tracker_usage", "users", "alembic_version"} <= tables


def test_upgrade_backfills_source_type_and_rebuilds_the_rollups(make_app):
    """Rows written before source_type was a column get it from their metadata, and the
    rollups (re-keyed on it) and the latency histograms equal the raw rows at once."""
    app = make_app(create_tables=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade", "3ee64f7c9fb4"])  # the first release
    assert result.exit_code == 0, result.output
    old_columns = [c for c in LLMUsage.__table__.c if c.key not in ("source_type", "ttft_ms")]
    rows = [
        {"source": "api", "latency_ms": 120, "user_id": 1},
        {"source": 7, "latency_ms": 0, "user_id": None},  # a number becomes "7"
        {"source": "  ", "latency_ms": 2**31 - 1, "user_id": 2},  # blank: none
        {"source": None, "latency_ms": None, "user_id": 2},
        {"source": "batch", "latency_ms": 13, "user_id": 2},
    ]
    with app.app_context():
        with db.engine.begin() as conn:
            for n, row in enumerate(rows):
                meta = {"node_name": "n"} | (
                    {} if row["source"] is None else {"source_type": row["source"]}
                )
                values = {
                    "id": uuid.uuid4(),
                    "run_id": f"run-{n}",
                    "created_at": datetime(2026, 1, 10, 8, 7 * n, tzinfo=UTC),
                    "user_id": row["user_id"],
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "node_name": "n",
                    "prompt_tokens": 10 * n,
                    "completion_tokens": n,
                    "total_tokens": 11 * n,
                    "cached_tokens": 0,
                    "cache_write_tokens": 0,
                    "reasoning_tokens": 0,
                    "cost_usd": Decimal("0.000001") * n,
                    "latency_ms": row["latency_ms"],
                    "success": n != 3,
                    "metadata": meta,
                }
                conn.execute(
                    LLMUsage.__table__.insert().values(
                        {c.key: values.get(c.key) for c in old_columns}
                    )
                )
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        stored = db.session.execute(
            select(LLMUsage.run_id, LLMUsage.source_type).order_by(LLMUsage.run_id)
        ).all()
        assert [tuple(r) for r in stored] == [
            ("run-0", "api"),
            ("run-1", "7"),
            ("run-2", None),
            ("run-3", None),
            ("run-4", "batch"),
        ]
        assert_rollups_match()
        assert sum(stored_latency().values()) == 4
        by_source = get_stats_by_dimension("source_type")
        # Most cost first: row n cost n micro-USD.
        assert [(g["key"], g["total_calls"]) for g in by_source] == [
            (None, 2),
            ("batch", 1),
            ("7", 1),
            ("api", 1),
        ]
    # And back: the first release's schema, its rollups rebuilt without the key.
    result = runner.invoke(args=["db", "downgrade", "3ee64f7c9fb4"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        inspector = db.inspect(db.engine)
        columns = {c["name"] for c in inspector.get_columns("llm_tracker_usage")}
        assert "source_type" not in columns and "ttft_ms" not in columns
        assert "llm_tracker_latency_rollup" not in inspector.get_table_names()
        calls = db.session.execute(
            text("SELECT sum(calls) FROM llm_tracker_usage_rollup_day")
        ).scalar_one()
        assert calls == 5
