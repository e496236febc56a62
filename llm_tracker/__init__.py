"""llm_tracker: count every LLM call of a Flask/LangChain application."""

from __future__ import annotations

import os

import click
from flask import Flask
from sqlalchemy import event

from .budgets import BudgetExceeded
from .database import db, sqlite_pragmas
from .handler import UsageHandler, track_usage
from .models import LLMUsage, User
from .recording import get_spool, record_usage
from .writer import EXIT_FLUSH_S, WRITE_MODES, flush

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "LLMUsage",
    "UsageHandler",
    "User",
    "db",
    "flush",
    "get_spool",
    "init_app",
    "record_usage",
    "track_usage",
]


class ConfigError(ValueError):
    """A setting of the app is invalid; the one-line message names the setting (and rule)."""


def init_app(app: Flask) -> None:
    """Set llm_tracker up on ``app``: database, config defaults, pricing and CLI commands.

    Raises ``ConfigError`` (a ``ValueError``) naming the rule and field when a custom price
    rule or the Azure deployment map is invalid.
    """
    from .cli import register_commands
    from .pricing import Pricer, warm_up

    # The spool, the dead letters and the journals live here (several apps on one machine
    # keep theirs apart by giving each its own).
    app.config.setdefault("LLM_TRACKER_INSTANCE_PATH", app.instance_path)
    app.config.setdefault(
        "LLM_TRACKER_SPOOL_PATH",
        os.path.join(app.config["LLM_TRACKER_INSTANCE_PATH"], "llm_tracker_spool.jsonl"),
    )
    app.config.setdefault("LLM_TRACKER_WRITE_MODE", "background")
    app.config.setdefault("LLM_TRACKER_FLUSH_INTERVAL_MS", 100)
    app.config.setdefault("LLM_TRACKER_BATCH_SIZE", 500)
    app.config.setdefault("LLM_TRACKER_JOURNAL_FSYNC", False)
    if app.config["LLM_TRACKER_WRITE_MODE"] not in WRITE_MODES:
        raise ConfigError(
            f"LLM_TRACKER_WRITE_MODE must be one of {', '.join(WRITE_MODES)}, "
            f"got {app.config['LLM_TRACKER_WRITE_MODE']!r}"
        )
    app.config.setdefault("LLM_TRACKER_SQLITE_BUSY_TIMEOUT_MS", 30000)
    app.config.setdefault("LLM_TRACKER_BUDGET_FAIL_CLOSED", False)
    app.config.setdefault("LLM_TRACKER_BUDGET_DEFAULT_MAX_TOKENS", 4096)
    app.config.setdefault("LLM_TRACKER_BUDGET_RESERVATION_TTL_S", 900)
    app.config.setdefault("LLM_TRACKER_BUDGET_REFRESH_S", 1.0)
    app.config.setdefault("LLM_TRACKER_BUDGET_WEBHOOK_TIMEOUT_S", 5)
    app.config.setdefault("LLM_TRACKER_BUDGET_WEBHOOK_RETRIES", 5)
    app.config.setdefault("LLM_TRACKER_BUDGET_WEBHOOK_BACKOFF_S", 1.0)
    app.config.setdefault("LLM_TRACKER_CUSTOM_PRICES", [])
    app.config.setdefault("LLM_TRACKER_AZURE_DEPLOYMENTS", {})
    # Built now so a bad price rule stops the app at start, not at its first LLM call.
    try:
        app.extensions["llm_tracker_pricer"] = Pricer.from_config(app.config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    warm_up()
    if "sqlalchemy" not in app.extensions:
        db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            busy_ms = int(app.config["LLM_TRACKER_SQLITE_BUSY_TIMEOUT_MS"])
            event.listen(db.engine, "connect", lambda conn, _record: sqlite_pragmas(conn, busy_ms))
    register_commands(app)
    app.teardown_appcontext(_flush_after_command)
    app.extensions["llm_tracker"] = True


def _flush_after_command(_exc: BaseException | None) -> None:
    # Every CLI command (Flask runs each in an app context) ends with its rows committed,
    # before it prints its result or its error. Requests do not wait: they have no click
    # context, unless the dev server answers in `flask run`'s own thread.
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.command.name != "run":
        flush(timeout=EXIT_FLUSH_S)
