"""Budget alerts once they are committed: a WARNING line, and the budget's webhook.

Webhooks are POSTed from one background thread per process (never on an LLM call's
path), with a timeout and retries with exponential back-off; each attempt is written back
to the alert row (``attempts``, ``delivered_at``, ``last_error``). ``llm_tracker.flush()``
waits for the deliveries in progress, as it waits for rows.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask
from sqlalchemy import Table, update

from .database import utcnow
from .models import BudgetAlert

logger = logging.getLogger("llm_tracker")

_ALERT: Table = BudgetAlert.__table__  # type: ignore[assignment]


def describe(alert: Mapping[str, Any]) -> str:
    """The alert in one line (the WARNING's text)."""
    who = "" if alert["scope"] == "global" else f" ({alert['scope']} {alert['scope_key']})"
    spent = []
    if alert.get("limit_usd") is not None:
        spent.append(f"${alert['spent_usd']} of ${alert['limit_usd']}")
    if alert.get("limit_tokens") is not None:
        spent.append(f"{alert['spent_tokens']} of {alert['limit_tokens']} tokens")
    if alert.get("reason") == "blocked":
        return (
            f"llm_tracker: budget {alert['budget']!r}{who} is used up and blocks calls: "
            f"spent {' and '.join(spent)}; resets at {alert['resets_at']}"
        )
    return (
        f"llm_tracker: budget {alert['budget']!r}{who} reached {alert['threshold']:.0%} of its "
        f"{alert['period']} limit: spent {' and '.join(spent)}; resets at {alert['resets_at']}"
    )


class _Dispatcher:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: deque[tuple[Flask | None, str, dict[str, Any]]] = deque()
        self._busy = 0
        self._thread: threading.Thread | None = None

    def put(self, app: Flask | None, url: str, payload: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append((app, url, payload))
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="llm_tracker-alerts", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                app, url, payload = self._queue.popleft()
            try:
                deliver(app, url, payload)
            except Exception:
                logger.exception(
                    "llm_tracker: could not deliver budget alert %s", payload.get("id")
                )
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


_DISPATCHER = _Dispatcher()


def _dispatcher() -> _Dispatcher:
    global _DISPATCHER
    if _DISPATCHER.pid != os.getpid():  # forked: the parent's thread is not here
        _DISPATCHER = _Dispatcher()
    return _DISPATCHER


def dispatch(app: Flask | None, fired: Sequence[tuple[str | None, dict[str, Any]]]) -> None:
    """Log each committed alert now and queue its webhook (when the budget has one)."""
    for url, payload in fired:
        logger.warning(describe(payload))
        if url:
            _dispatcher().put(app, url, payload)


def wait(timeout: float | None = None) -> bool:
    """Wait for this process's webhook deliveries in progress; False on timeout."""
    return _dispatcher().wait(timeout)


def deliver(app: Flask | None, url: str, payload: dict[str, Any]) -> bool:
    """POST ``payload`` to ``url``, retrying with back-off; True once a 2xx came back."""
    config: Mapping[str, Any] = app.config if app is not None else {}
    timeout = float(config.get("LLM_TRACKER_BUDGET_WEBHOOK_TIMEOUT_S", 5))
    tries = max(int(config.get("LLM_TRACKER_BUDGET_WEBHOOK_RETRIES", 5)), 1)
    backoff = float(config.get("LLM_TRACKER_BUDGET_WEBHOOK_BACKOFF_S", 1.0))
    body = json.dumps({"event": "budget.threshold", **payload}).encode()
    error = None
    for attempt in range(1, tries + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "llm_tracker"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                response.read()
            _note(app, payload, attempt, None)
            return True
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        _note(app, payload, attempt, error)
        if attempt < tries:
            time.sleep(backoff * 2 ** (attempt - 1))
    logger.error(
        "llm_tracker: budget alert webhook %s failed %d times (%s): %s",
        url,
        tries,
        error,
        json.dumps(payload),
    )
    return False


def _note(app: Flask | None, payload: Mapping[str, Any], attempt: int, error: str | None) -> None:
    # The delivery's record on the alert row; a database that is down only loses the note.
    if app is None or payload.get("id") is None:
        return
    from .budgets import budget_engine

    values: dict[str, Any] = {"attempts": attempt, "last_error": error}
    if error is None:
        values["delivered_at"] = utcnow()
    try:
        with budget_engine(app).begin() as conn:
            conn.execute(update(_ALERT).where(_ALERT.c.id == payload["id"]).values(**values))
    except Exception:
        logger.warning("llm_tracker: could not note the delivery of alert %s", payload["id"])
