"""Rows the database would refuse never block the others: normalised when recorded,
dead-lettered (with the reason) when replay still cannot write them."""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from support.db_faults import REFUSED_MODEL, outage, refuse_a_model

from llm_tracker import LLMUsage, db, flush, get_spool, record_usage
from llm_tracker.models import NO_USER
from llm_tracker.recording import CUT_MARK

BIG = 2**31  # past the old 32-bit columns
WHEN = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _stored() -> dict[str, LLMUsage]:
    flush()
    return {row.run_id: row for row in db.session.execute(select(LLMUsage)).scalars()}


def test_record_usage_stores_what_the_columns_could_not_hold(app_ctx):
    record_usage(
        "m" * 300,
        prompt_tokens=BIG * 4,
        completion_tokens=BIG,
        user_id=BIG * 8,
        error="Boom\x00 with a lone \ud800 surrogate",
        provider="p" * 60,
        node_name="n" * 250,
        run_id="r-1",
        latency_ms=2**40,
        created_at=WHEN,
        metadata={
            "k\x00": "v\x00",
            "s": "\udfff",
            "nan": math.nan,
            "inf": math.inf,
            "deep": {"list": ["a\x00", 1, None, True]},
            "obj": object,
        },
    )
    [row] = _stored().values()
    assert get_spool().rows() == []
    assert row.model == "m" * (200 - len(CUT_MARK)) + CUT_MARK and len(row.model) == 200
    assert row.node_name == "n" * (200 - len(CUT_MARK)) + CUT_MARK
    assert row.provider == "p" * (50 - len(CUT_MARK)) + CUT_MARK
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (BIG * 4, BIG, BIG * 5)
    assert row.user_id == BIG * 8
    assert row.error == "Boom\ufffd with a lone \ufffd surrogate"
    assert row.latency_ms == 2**31 - 1
    assert row.meta == {
        "k\ufffd": "v\ufffd",
        "s": "\ufffd",
        "nan": "nan",
        "inf": "inf",
        "deep": {"list": ["a\ufffd", 1, None, True]},
        "obj": "<class 'object'>",
        "node_name": row.node_name,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt_tokens", 2**63),
        ("completion_tokens", 2**64),
        ("user_id", 2**63),
        ("user_id", NO_USER),
        ("user_id", "abc"),
    ],
)
def test_values_no_column_can_hold_are_a_clear_error(app_ctx, field, value):
    with pytest.raises(ValueError, match=field):
        record_usage("gpt-4o-mini", **{field: value})


def _line(run_id: str, **overrides) -> str:
    """A spool line as an earlier version wrote it: values neither normalised nor priced."""
    row = {
        "id": str(uuid.uuid4()),
        "run_id": run_id,
        "model": "gpt-4o-mini",
        "provider": "openai",
        "node_name": "n",
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "success": True,
        "error": None,
        "user_id": None,
        "metadata": {"node_name": "n"},
        "created_at": WHEN.isoformat(),
        "requested_model": None,
        "deployment": None,
        "latency_ms": 5,
    }
    row.update(overrides)
    return json.dumps(row) + "\n"


def test_replay_writes_every_good_row_and_dead_letters_each_bad_one(app, database_url):
    with app.app_context():
        refuse_a_model(database_url)
        spool = get_spool()
        good = {
            "good-1": {},
            "long-model": {"model": "x" * 300},
            "nul-error": {"error": "E\u0000rr", "success": False},
            "nul-metadata": {"metadata": {"node_name": "n", "doc\u0000": "a\u0000b"}},
            "surrogate": {"error": "lone \udc00"},
            "big-tokens": {"prompt_tokens": BIG, "total_tokens": BIG + 2},
            "big-user": {"user_id": BIG},
            "good-2": {},
        }
        bad = {
            "huge-tokens": {"prompt_tokens": 2**64},
            "huge-user": {"user_id": 2**64},
            "refused": {"model": REFUSED_MODEL},
        }
        lines = [_line(run_id, **over) for run_id, over in {**good, **bad}.items()]
        torn = _line("torn")[:40] + "\n"
        lines[3:3] = [torn, "[1, 2, 3]\n"]
        with open(spool.path, "w", encoding="utf-8") as f:
            f.writelines(lines)

    runner = app.test_cli_runner()
    status = runner.invoke(args=["spool", "status"])
    assert status.exit_code == 0 and status.exception is None, status.output
    assert "rows waiting: 9" in status.output  # 8 good + the refused one (valid data)
    assert "invalid lines: 4" in status.output

    result = runner.invoke(args=["spool", "replay"])
    assert result.exit_code == 0, result.output
    assert "written: 8, already present: 0, remaining: 0, dead-lettered: 5" in result.output

    with app.app_context():
        stored = _stored()
        assert set(stored) == set(good)
        assert stored["long-model"].model == "x" * (200 - len(CUT_MARK)) + CUT_MARK
        assert stored["nul-error"].error == "E\ufffdrr"
        assert stored["nul-metadata"].meta == {"node_name": "n", "doc\ufffd": "a\ufffdb"}
        assert stored["surrogate"].error == "lone \ufffd"
        assert stored["big-tokens"].prompt_tokens == BIG
        assert stored["big-user"].user_id == BIG
        # Priced on replay (an old spool line has no price); the cut name is no known model.
        assert {k for k, row in stored.items() if row.cost_usd is None} == {"long-model"}
        assert get_spool().rows() == []
        dead = get_spool().dead.entries()
    reasons = {(e.row or {}).get("run_id", e.line): e.reason for e in dead}
    assert len(reasons) == 5
    assert reasons[torn.rstrip("\n")].startswith("unreadable spool line: ")
    assert reasons["[1, 2, 3]"] == "unreadable spool line: ValueError: not a JSON object"
    assert reasons["huge-tokens"] == (
        f"invalid row: ValueError: prompt_tokens {2**64} does not fit a 64-bit count"
    )
    assert reasons["huge-user"] == (
        f"invalid row: ValueError: user_id {2**64} does not fit a 64-bit id"
    )
    assert reasons["refused"].startswith("database refused the row: ")
    assert "refuse" in reasons["refused"].removeprefix("database refused the row: ")

    listing = runner.invoke(args=["spool", "dead"])
    assert listing.exit_code == 0, listing.output
    assert "5 dead letter(s)" in listing.output
    assert f"run refused model '{REFUSED_MODEL}'" in listing.output
    # Nothing is retried: a second replay writes nothing and dead-letters nothing new.
    again = runner.invoke(args=["spool", "replay"])
    assert "written: 0, already present: 0, remaining: 0, dead-lettered: 0" in again.output


def test_a_row_the_database_refuses_is_dead_lettered_at_once(app_ctx, database_url, caplog):
    refuse_a_model(database_url)
    with caplog.at_level(logging.WARNING, logger="llm_tracker"):
        record_usage(REFUSED_MODEL, 5, 1, run_id="refused-now")
        record_usage("gpt-4o-mini", 5, 1, run_id="fine")
        flush()  # the writer's log lines too
    assert set(_stored()) == {"fine"}
    assert get_spool().rows() == []  # replay could only fail again
    [entry] = get_spool().dead.entries()
    assert entry.row["run_id"] == "refused-now"
    assert entry.reason.startswith("database refused the row: ")
    assert "dead-lettered to" in caplog.text and "spooled" not in caplog.text


def test_database_down_and_spool_unwritable_says_so(make_app, database_url, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a file where the spool's folder should be: nothing can go there
    with outage(make_app, database_url, LLM_TRACKER_SPOOL_PATH=str(blocked / "spool.jsonl")) as (
        app,
        cut,
        restore,
    ):
        cut()
        with app.app_context(), caplog.at_level(logging.WARNING, logger="llm_tracker"):
            row = record_usage("gpt-4o-mini", 7, 3, run_id="nowhere")
            flush()  # the writer has tried, and logged, while the database is still down
        restore()
        with app.app_context():
            assert db.session.execute(select(func.count()).select_from(LLMUsage)).scalar() == 0
    assert row.run_id == "nowhere"  # the caller still gets its row
    assert "row spooled" not in caplog.text
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "the spool" in message and "is not writable" in message
    assert "the row is only in this log line" in message
    logged = json.loads(message.rsplit("log line: ", 1)[1])
    assert (logged["run_id"], logged["prompt_tokens"], logged["completion_tokens"]) == (
        "nowhere",
        7,
        3,
    )
    assert logged["cost_usd"] is not None  # priced: the line is the whole row
