"""Budgets are exact under concurrency: 4 processes x 8 threads calling as one user through
the real ChatOpenAI and UsageHandler, against a small block budget, on each backend.

What must hold after every round: the allowed calls' recorded cost never exceeds the limit,
the provider saw exactly the allowed calls, nothing stays reserved, the counter equals the
rows, and the limit is used up to within one call's estimate (a last caller is refused
only when its estimate no longer fits: no budget is left idle by stale reservations).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage
from sqlalchemy import func, select
from support.fake_provider import openai_completion
from support.sdk_support import openai_model

from llm_tracker import BudgetExceeded, LLMUsage, UsageHandler, db, flush
from llm_tracker.budget_admin import create_budget
from llm_tracker.budgets import estimate_cost, prompt_bytes
from llm_tracker.models import Budget, BudgetAlert, BudgetCounter, BudgetReservation

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        r"ignore:unclosed (<socket\.socket |transport <_SelectorSocketTransport ):ResourceWarning"
    ),
]

TESTS_DIR = Path(__file__).resolve().parent
PROCESSES, THREADS = 4, 8
# Rounds per test run (each a fresh budget on its own user); LLM_TRACKER_STRESS_ROUNDS=20
# runs the acceptance's twenty in a row.
ROUNDS = int(os.environ.get("LLM_TRACKER_STRESS_ROUNDS", "2"))
# Each reply uses 13 input tokens (the estimate's count for "hello") and 45 of the 50
# output tokens allowed: a call costs 90 % of its estimate, so a second call let through
# where only one fit would overspend, and settling to the real cost still matters.
USAGE = {"prompt_tokens": 13, "completion_tokens": 45, "total_tokens": 58}
# At gpt-4o-mini's price ($0.15 / $0.60 per Mtok).
REAL_COST = Decimal("0.00002895")
LIMIT = REAL_COST * Decimal("40.5")


def _workers(app, fake, users, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR.parent), str(TESTS_DIR)])
    procs = []
    for n in range(PROCESSES):
        config = {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "LLM_TRACKER_INSTANCE_PATH": str(tmp_path / f"worker-{n}"),
            "LLM_TRACKER_WRITE_MODE": app.config["LLM_TRACKER_WRITE_MODE"],
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(TESTS_DIR / "support" / "budget_worker.py"),
                    json.dumps(config),
                    fake.base_url,
                    str(THREADS),
                    ",".join(map(str, users)),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    totals: dict[int, dict[str, int]] = {u: {"allowed": 0, "blocked": 0} for u in users}
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        for user, counts in json.loads(out.strip().splitlines()[-1]).items():
            totals[int(user)]["allowed"] += counts["allowed"]
            totals[int(user)]["blocked"] += counts["blocked"]
    return totals


def _spent(user):
    rows = db.session.execute(
        select(func.count(), func.sum(LLMUsage.cost_usd)).where(
            LLMUsage.user_id == user, LLMUsage.success
        )
    ).one()
    return rows[0], rows[1] or Decimal(0)


def test_a_block_budget_holds_across_processes_and_threads(app_ctx, fake_provider, tmp_path):
    users = [1000 + n for n in range(ROUNDS)]
    for _ in range(60 * ROUNDS):
        fake_provider.enqueue(openai_completion("gpt-4o-mini", "ok", usage=USAGE))
    for user in users:
        create_budget(
            {
                "name": f"stress-{user}",
                "scope": "user",
                "scope_value": str(user),
                "period": "day",
                "limit_usd": str(LIMIT),
            }
        )
    totals = _workers(app_ctx, fake_provider, users, tmp_path)
    estimate = estimate_cost(
        app_ctx,
        {"model": "gpt-4o-mini", "provider": "openai"},
        prompt_bytes([HumanMessage("hello")]),
        50,
    )
    assert REAL_COST < estimate < REAL_COST * Decimal("1.2")
    assert len(fake_provider.requests) == sum(t["allowed"] for t in totals.values())

    llm = openai_model(fake_provider, max_tokens=50)
    for user in users:
        calls, cost = _spent(user)
        assert calls == totals[user]["allowed"], user
        assert cost == REAL_COST * calls
        assert cost <= LIMIT, f"user {user}: spent {cost} > limit {LIMIT}"
        budget = db.session.execute(
            select(Budget).where(Budget.name == f"stress-{user}")
        ).scalar_one()
        counter = db.session.execute(
            select(BudgetCounter).where(BudgetCounter.budget_id == budget.id)
        ).scalar_one()
        assert (counter.spent_usd, counter.reserved_usd, counter.reserved_tokens) == (cost, 0, 0)
        assert db.session.execute(select(func.count()).select_from(BudgetReservation)).scalar() == 0
        # Alerts: 0.8 crossed by the spend, 1 by the first refusal, each once although
        # dozens of calls in four processes were refused.
        thresholds = db.session.execute(
            select(BudgetAlert.threshold).where(BudgetAlert.budget_id == budget.id)
        ).scalars()
        assert sorted(thresholds) == ["0.8", "1"]
        # One caller now: it is refused only once its estimate no longer fits.
        handler = UsageHandler({"user_id": user})
        topped_up = 0
        with pytest.raises(BudgetExceeded):
            for _ in range(100):
                llm.invoke("hello", config={"callbacks": [handler]})
                topped_up += 1
                flush()
        calls, cost = _spent(user)
        assert cost <= LIMIT
        assert LIMIT - cost < estimate, (
            f"user {user}: {LIMIT - cost} left idle after {topped_up} more calls"
        )
