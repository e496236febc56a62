"""A process of tests/test_budget_concurrency.py: threads calling as one user (a real
ChatOpenAI against the fake provider, through UsageHandler) until the budget refuses
them, for each user (round) given.

Usage: python budget_worker.py CONFIG_JSON BASE_URL THREADS USER[,USER...]; prints a JSON
object {user: {"allowed": n, "blocked": n}}.
"""

from __future__ import annotations

import json
import sys
import threading

try:  # the SDKs' HTTP client: httpx2 in openai/anthropic 3.x / 2.x, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older SDKs
    import httpx  # type: ignore[no-redef]
from langchain_openai import ChatOpenAI

from admin_app import create_app
from llm_tracker import BudgetExceeded, UsageHandler, flush

# A thread stops once the budget refused it this many times in a row, each time after
# its process's rows were committed (so its own reservations were settled).
REFUSALS = 3


def main() -> None:
    config, base_url, threads, users = sys.argv[1:5]
    app = create_app(json.loads(config))
    counts: dict[str, dict[str, int]] = {}
    lock = threading.Lock()

    def call(user: int) -> None:
        llm = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=base_url + "/v1",
            api_key="sk-test",
            max_tokens=50,
            max_retries=0,
            timeout=httpx.Timeout(60.0),
        )
        handler = UsageHandler({"user_id": user}, node_name="stress", app=app)
        allowed = refused = in_a_row = 0
        while in_a_row < REFUSALS:
            try:
                llm.invoke("hello", config={"callbacks": [handler]})
            except BudgetExceeded:
                refused += 1
                in_a_row += 1
                flush()
            else:
                allowed += 1
                in_a_row = 0
        with lock:
            entry = counts.setdefault(str(user), {"allowed": 0, "blocked": 0})
            entry["allowed"] += allowed
            entry["blocked"] += refused

    for user in (int(u) for u in users.split(",")):
        workers = [threading.Thread(target=call, args=(user,)) for _ in range(int(threads))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    flush()
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
