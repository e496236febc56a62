"""Budget alerts fire once per budget, key, period and threshold; webhooks retry in the
background; the database being down fails open or closed as configured."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select
from support.db_faults import outage
from support.fake_provider import openai_completion
from support.sdk_support import openai_model

from llm_tracker import BudgetExceeded, UsageHandler, db, flush, record_usage
from llm_tracker.budget_admin import create_budget, list_alerts
from llm_tracker.budgets import reserve
from llm_tracker.models import BudgetAlert, BudgetCounter

pytestmark = pytest.mark.filterwarnings(
    r"ignore:unclosed (<socket\.socket |transport <_SelectorSocketTransport ):ResourceWarning"
)


class Receiver:
    """A loopback webhook receiver that answers 500 to the first ``failures`` POSTs."""

    def __init__(self, failures: int = 0) -> None:
        self.bodies: list[dict] = []
        self.failures = failures
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                receiver.release.wait(30)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                status = 500 if len(receiver.bodies) <= receiver.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.release.set()
        r.close()


def _row(user_id=1, at=None, tokens=1_000_000):
    # gpt-4o-mini: 1M input tokens cost $0.15.
    record_usage("gpt-4o-mini", tokens, 0, provider="openai", user_id=user_id, created_at=at)


def test_each_threshold_fires_once_with_a_webhook_retried(app_ctx, receiver, caplog):
    app_ctx.config["LLM_TRACKER_BUDGET_WEBHOOK_BACKOFF_S"] = 0.01
    hook = receiver(failures=2)
    create_budget(
        {
            "name": "team",
            "scope": "global",
            "period": "month",
            "limit_usd": "1",
            "action": "alert",
            "thresholds": [0.5, 1],
            "webhook_url": hook.url,
        }
    )
    caplog.set_level(logging.WARNING, "llm_tracker")
    for _ in range(3):
        _row()  # $0.45: under half
    flush()
    assert hook.bodies == [] and list_alerts() == []
    _row()  # $0.60: crosses 0.5
    flush()
    for _ in range(2):
        _row()  # $0.90: nothing new
    flush()
    assert [a["threshold"] for a in list_alerts()] == [0.5]
    # Two failed tries, then delivered: three POSTs of the same alert.
    assert len(hook.bodies) == 3
    assert {b["id"] for b in hook.bodies} == {list_alerts()[0]["id"]}
    body = hook.bodies[-1]
    assert body["event"] == "budget.threshold" and body["budget"] == "team"
    assert body["threshold"] == 0.5 and body["spent_usd"] == "0.600000000"
    assert body["limit_usd"] == "1.000000000"
    alert = list_alerts()[0]
    assert alert["attempts"] == 3 and alert["delivered_at"] is not None
    assert alert["last_error"] is None
    warnings = [r.getMessage() for r in caplog.records if "reached" in r.getMessage()]
    assert warnings == [
        "llm_tracker: budget 'team' reached 50% of its month limit: spent $0.600000000 of "
        f"$1.000000000; resets at {alert['resets_at']}"
    ]
    _row()  # $1.05: crosses 1
    flush()
    assert [a["threshold"] for a in list_alerts()] == [1.0, 0.5]
    assert len(hook.bodies) == 4


def test_the_webhook_never_holds_the_call(make_app, receiver):
    app = make_app(LLM_TRACKER_WRITE_MODE="sync", LLM_TRACKER_BUDGET_WEBHOOK_BACKOFF_S=0.01)
    hook = receiver()
    hook.release.clear()  # the receiver hangs until released
    with app.app_context():
        create_budget(
            {
                "name": "slow-hook",
                "scope": "user",
                "period": "day",
                "limit_tokens": 10,
                "action": "alert",
                "webhook_url": hook.url,
            }
        )
        record_usage("gpt-4o-mini", 20, 0, provider="openai", user_id=5)  # crosses 0.8 and 1
        # Committed and answered while the webhook is still waiting.
        alerts = list_alerts()
        assert sorted(a["threshold"] for a in alerts) == [0.8, 1.0]
        assert all(a["delivered_at"] is None for a in alerts)
        hook.release.set()
        flush()
        assert sorted(b["threshold"] for b in hook.bodies) == [0.8, 1.0]
        assert all(a["delivered_at"] is not None for a in list_alerts())


def test_alerts_and_counters_follow_the_zone_s_periods(app_ctx):
    # New York's 2026-11-01 is 25 hours long: 04:00 UTC to 05:00 UTC the next day.
    create_budget(
        {
            "name": "ny",
            "scope": "global",
            "period": "day",
            "tz": "America/New_York",
            "limit_tokens": 100,
            "action": "alert",
            "thresholds": [1],
        }
    )
    _row(at=datetime(2026, 11, 1, 3, 59, tzinfo=UTC), tokens=100)  # Oct 31, 23:59 EDT
    _row(at=datetime(2026, 11, 1, 4, 0, tzinfo=UTC), tokens=60)  # Nov 1, 00:00 EDT
    _row(at=datetime(2026, 11, 2, 4, 59, tzinfo=UTC), tokens=40)  # Nov 1, 23:59 EST
    _row(at=datetime(2026, 11, 2, 5, 0, tzinfo=UTC), tokens=1)  # Nov 2
    flush()
    counters = {
        c.period_start: c.spent_tokens
        for c in db.session.execute(select(BudgetCounter)).scalars()
        if c.spent_tokens  # (the budget's creation counted today: nothing)
    }
    assert counters == {
        datetime(2026, 10, 31, 4, tzinfo=UTC): 100,
        datetime(2026, 11, 1, 4, tzinfo=UTC): 100,
        datetime(2026, 11, 2, 5, tzinfo=UTC): 1,
    }
    starts = sorted(a.period_start for a in db.session.execute(select(BudgetAlert)).scalars())
    assert starts == [datetime(2026, 10, 31, 4, tzinfo=UTC), datetime(2026, 11, 1, 4, tzinfo=UTC)]


def test_a_reservation_rolls_over_at_the_zone_s_midnight(app_ctx):
    create_budget(
        {
            "name": "ny-block",
            "scope": "global",
            "period": "day",
            "tz": "America/New_York",
            "limit_tokens": 100,
        }
    )
    call = {"model": "gpt-4o-mini", "provider": "openai"}
    # The last second of the 25-hour 2026-11-01 (EST), then the first of the 2nd.
    last = datetime(2026, 11, 2, 4, 59, 59, tzinfo=UTC)
    assert reserve(app_ctx, "a", call, 50, 50, now=last) is not None
    with pytest.raises(BudgetExceeded) as caught:
        reserve(app_ctx, "b", call, 1, 0, now=last)
    assert caught.value.resets_at == datetime(2026, 11, 2, 5, tzinfo=UTC)
    assert reserve(app_ctx, "c", call, 50, 50, now=datetime(2026, 11, 2, 5, tzinfo=UTC))


@pytest.mark.parametrize("fail_closed", [False, True])
def test_the_database_down_fails_open_or_closed(make_app, database_url, fake_provider, fail_closed):
    with outage(
        make_app,
        database_url,
        LLM_TRACKER_BUDGET_FAIL_CLOSED=fail_closed,
        LLM_TRACKER_BUDGET_REFRESH_S=3600,
        LLM_TRACKER_WRITER_TIMEOUT_S=1,
    ) as (app, cut, restore):
        with app.app_context():
            create_budget({"name": "guard", "scope": "global", "period": "day", "limit_usd": "5"})
            llm = openai_model(fake_provider, max_tokens=10)
            fake_provider.enqueue(openai_completion("gpt-4o-mini", "ok"))
            handler = UsageHandler({"user_id": 1})
            llm.invoke("hi", config={"callbacks": [handler]})  # budgets now cached
            flush()
            cut()
            try:
                fake_provider.enqueue(openai_completion("gpt-4o-mini", "ok"))
                if fail_closed:
                    with pytest.raises(BudgetExceeded, match="cannot be checked"):
                        llm.invoke("hi", config={"callbacks": [handler]})
                    assert len(fake_provider.requests) == 1
                else:
                    assert llm.invoke("hi", config={"callbacks": [handler]}).content == "ok"
                    assert len(fake_provider.requests) == 2
            finally:
                restore()
            flush()


def test_a_handler_failure_other_than_a_budget_never_breaks_the_call(app_ctx, fake_provider):
    create_budget({"name": "g", "scope": "global", "period": "day", "limit_usd": "5"})
    llm = openai_model(fake_provider, max_tokens=10)
    fake_provider.enqueue(openai_completion("gpt-4o-mini", "ok"))
    # A user id nothing can store: the row cannot be built, the call still answers.
    handler = UsageHandler({"user_id": "not-a-number"})
    assert llm.invoke("hi", config={"callbacks": [handler]}).content == "ok"
    assert len(fake_provider.requests) == 1
