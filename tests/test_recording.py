"""record_usage: the one write path."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from llm_tracker import LLMUsage, User, db, flush, record_usage

pytestmark = pytest.mark.contract


def _rows():
    flush()
    return db.session.execute(select(LLMUsage).order_by(LLMUsage.created_at)).scalars().all()


def test_defaults(app_ctx):
    before = datetime.now(UTC)
    returned = record_usage("gpt-4o-mini", prompt_tokens=120, completion_tokens=30)
    [row] = _rows()
    assert row.id == returned.id
    assert (row.model, row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        "gpt-4o-mini",
        120,
        30,
        150,
    )
    assert (row.cached_tokens, row.reasoning_tokens, row.cache_write_tokens) == (0, 0, 0)
    assert row.success is True and row.error is None and row.user_id is None
    assert row.meta == {"node_name": "unknown"} and row.node_name == "unknown"
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
    assert before <= row.created_at <= datetime.now(UTC)
    assert row.run_id == str(row.id)


def test_all_fields_and_explicit_total(app_ctx):
    record_usage(
        "gemini-2.5-flash",
        prompt_tokens=1000,
        completion_tokens=500,
        total_tokens=1600,
        cached_tokens=800,
        reasoning_tokens=300,
        success=False,
        error="Boom: x",
        user_id=7,
        metadata={"node_name": "plan", "doc": "a.pdf"},
        provider="google_genai",
        cache_write_tokens=12,
        latency_ms=845,
        requested_model="gemini-flash",
        run_id="run-1",
    )
    [row] = _rows()
    assert (row.total_tokens, row.cached_tokens, row.reasoning_tokens) == (1600, 800, 300)
    assert (row.success, row.error, row.user_id, row.provider) == (
        False,
        "Boom: x",
        7,
        "google_genai",
    )
    assert row.meta == {"node_name": "plan", "doc": "a.pdf"} and row.node_name == "plan"
    assert (row.cache_write_tokens, row.latency_ms, row.run_id) == (12, 845, "run-1")
    assert row.requested_model == "gemini-flash"


def test_created_at_is_stored_in_utc(app_ctx):
    record_usage("m", created_at=datetime(2026, 3, 1, 12, 0))  # naive: UTC
    record_usage("m", created_at=datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=8))))
    first, second = _rows()
    assert second.created_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert first.created_at == datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


def test_never_commits_the_callers_session(app_ctx):
    user = User(username="half-done", password_hash="x")
    db.session.add(user)
    if db.engine.dialect.name == "postgresql":
        # SQLite has one writer at a time: a flushed caller transaction would make
        # record_usage wait out the busy timeout (and then spool the row).
        db.session.flush()
    record_usage("m", prompt_tokens=1)
    db.session.rollback()
    users = db.session.execute(select(func.count()).select_from(User)).scalar_one()
    assert users == 0
    assert len(_rows()) == 1


def test_same_run_id_never_makes_two_rows(app_ctx):
    record_usage("m", prompt_tokens=5, run_id="abc")
    record_usage("m", prompt_tokens=9, run_id="abc")
    [row] = _rows()
    assert row.prompt_tokens == 5


def test_metadata_that_json_cannot_hold_is_kept_as_text(app_ctx):
    record_usage("m", metadata={"when": datetime(2026, 1, 2, tzinfo=UTC)})
    [row] = _rows()
    assert row.meta["when"] == "2026-01-02 00:00:00+00:00"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prompt_tokens": -1}, ValueError, "prompt_tokens must be a non-negative integer"),
        ({"completion_tokens": 1.5}, ValueError, "completion_tokens must be a non-negative"),
        ({"colour": "red"}, TypeError, "unexpected keyword argument(s): ['colour']"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(app_ctx, kwargs, error, message):
    with pytest.raises(error) as exc:
        record_usage("m", **kwargs)
    assert message in str(exc.value)
    with pytest.raises(ValueError, match="non-empty model name"):
        record_usage("")
    assert _rows() == []
