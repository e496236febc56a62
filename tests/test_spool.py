"""Zero loss: the database goes away in the middle of a run of calls, then comes back."""

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from sqlalchemy import func, select
from support.db_faults import outage

from llm_tracker import LLMUsage, UsageHandler, db, flush, get_spool

pytestmark = pytest.mark.contract


def _model(calls: int) -> GenericFakeChatModel:
    replies = iter(
        [
            AIMessage(
                content=f"reply {i}",
                response_metadata={"model_name": "gpt-4o-mini"},
                usage_metadata={"input_tokens": 10 + i, "output_tokens": 2, "total_tokens": 12 + i},
            )
            for i in range(calls)
        ]
    )
    return GenericFakeChatModel(messages=replies)


def _count(app) -> tuple[int, int, int]:
    flush()
    with app.app_context():
        return db.session.execute(
            select(
                func.count(),
                func.count(func.distinct(LLMUsage.run_id)),
                func.sum(LLMUsage.prompt_tokens),
            )
        ).one()


def test_outage_loses_nothing_and_replay_duplicates_nothing(make_app, database_url):
    # Sync: rows after the restore go straight in and the spool waits for `spool replay`;
    # the background writer replays it itself (tests/test_background.py).
    with outage(make_app, database_url, LLM_TRACKER_WRITE_MODE="sync") as (app, cut, restore):
        model = _model(10)
        handler = UsageHandler({"user_id": 1}, node_name="n", app=app)
        replies = []
        for i in range(10):
            if i == 3:
                cut()
            if i == 7:
                restore()
            replies.append(model.invoke("hi", config={"callbacks": [handler]}).content)
        assert replies == [f"reply {i}" for i in range(10)]  # the calls never failed

        assert _count(app) == (6, 6, sum(10 + i for i in (0, 1, 2, 7, 8, 9)))
        runner = app.test_cli_runner()
        status = runner.invoke(args=["spool", "status"])
        assert "rows waiting: 4" in status.output

        result = runner.invoke(args=["spool", "replay"])
        assert result.exit_code == 0, result.output
        assert "written: 4, already present: 0, remaining: 0" in result.output
        assert _count(app) == (10, 10, sum(10 + i for i in range(10)))
        assert "rows waiting: 0" in runner.invoke(args=["spool", "status"]).output

        again = runner.invoke(args=["spool", "replay"])
        assert "written: 0, already present: 0, remaining: 0" in again.output
        assert _count(app) == (10, 10, 145)


def test_replay_while_still_down_keeps_the_rows(make_app, database_url):
    with outage(make_app, database_url) as (app, cut, restore):
        handler = UsageHandler(app=app)
        model = _model(2)
        cut()
        model.invoke("a", config={"callbacks": [handler]})
        model.invoke("b", config={"callbacks": [handler]})
        flush()  # the writer has tried, and spooled both, while the database is down
        result = app.test_cli_runner().invoke(args=["spool", "replay"])
        assert result.exit_code == 1
        assert "database still unavailable, 2 row(s) kept" in result.output
        with app.app_context():
            assert len(get_spool().rows()) == 2
        restore()
        result = app.test_cli_runner().invoke(args=["spool", "replay"])
        assert "written: 2, already present: 0, remaining: 0" in result.output
        assert _count(app) == (2, 2, 21)


def test_a_row_both_stored_and_spooled_is_written_once(app, app_ctx):
    model = _model(1)
    model.invoke("a", config={"callbacks": [UsageHandler(app=app)]})
    flush()
    row = db.session.execute(select(LLMUsage)).scalar_one()
    values = {
        attr.columns[0].name: getattr(row, attr.key) for attr in LLMUsage.__mapper__.column_attrs
    }
    get_spool().append(values)
    result = get_spool().replay()
    assert (result.written, result.duplicates, result.remaining) == (0, 1, 0)
    assert _count(app) == (1, 1, 10)
