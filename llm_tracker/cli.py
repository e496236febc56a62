"""The ``flask`` commands the library adds to an app (``register_commands``).

- ``flask spool status | replay | dead``: rows kept while the database was unreachable.
- ``flask chat "prompt"``: one tracked call, to see a row appear.
- ``flask reprice`` and ``flask prices missing``: cost rows again with today's rules, and
  list the models no price source knows.
- ``flask rollup rebuild``: recompute the rollup tables from the raw rows.
- ``flask budget add | list | remove``: budgets and their status (SPEC §9).

The admin app's own commands (users) are in ``admin_app/cli.py``.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from .budget_admin import budget_json, create_budget, delete_budget, list_budgets
from .budgets import ACTIONS, PERIODS, SCOPES
from .database import db
from .llm_tracker import LLMTracker
from .models import Budget
from .params import parse_when
from .pricing import GENAI_PRICES_VERSION, format_money
from .recording import Spool, get_spool
from .reprice import count_rows, missing_prices, reprice
from .rollup import rebuild, rebuild_windows
from .writer import flush, orphan_journals, replay_orphans

# --- parameter types ------------------------------------------------------------------


class DateParam(click.ParamType):
    """A command-line date: a UTC date (``2026-01-31``) or an ISO datetime.

    Converts to an aware UTC ``datetime``. A date means its UTC midnight, or with
    ``end=True`` the next midnight, so ``--until 2026-01-31`` includes that whole day; a
    datetime is that instant (naive ones are taken as UTC). Shown as ``DATE`` in help.
    """

    name = "DATE"

    def __init__(self, end: bool = False) -> None:
        self.end = end

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        try:
            # --until 2026-01-31 includes the whole of that day; a datetime is excluded.
            when = parse_when(value, UTC, end=self.end, inclusive=False)
        except ValueError:
            when = None
        if when is None:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD) or ISO datetime", param, ctx)
        return when


# --- flask spool ----------------------------------------------------------------------

spool_cli = AppGroup("spool", help="Rows kept while the database was unreachable.")


@spool_cli.command("status")
def spool_status() -> None:
    """Show how many rows wait in the spool, and how many were dead-lettered."""
    spool = get_spool()
    status = spool.status()
    rows = status.rows
    click.echo(f"spool: {spool.path}")
    click.echo(f"rows waiting: {len(rows)}")
    if rows:
        click.echo(f"oldest: {rows[0]['created_at'].isoformat()}")
        click.echo(f"newest: {rows[-1]['created_at'].isoformat()}")
    if status.unreadable:
        click.echo(f"invalid lines: {status.unreadable} (replay moves them to the dead letters)")
    click.echo(f"dead letters: {len(spool.dead.entries())} (flask spool dead lists them)")
    journals = orphan_journals(current_app)
    if journals:
        waiting = sum(len(Spool(path).status().rows) for path in journals)
        click.echo(
            f"journals of stopped processes: {len(journals)} ({waiting} rows; replay writes them)"
        )


@spool_cli.command("replay")
def spool_replay() -> None:
    """Write the spooled rows to the database (idempotent by run_id) and empty the spool;
    rows the database refuses go to the dead letters. Journals left by stopped processes
    are written first."""
    from_journals = replay_orphans(current_app)
    if from_journals:
        click.echo(f"journals of stopped processes: {from_journals} row(s) written")
    result = get_spool().replay()
    summary = (
        f"written: {result.written}, already present: {result.duplicates}, "
        f"remaining: {result.remaining}, dead-lettered: {result.dead}"
    )
    if result.error:
        raise click.ClickException(
            f"database still unavailable, {result.remaining} row(s) kept: {result.error} "
            f"({summary})"
        )
    click.echo(summary)
    if result.dead:
        click.echo("see flask spool dead for the rows the database refused and why")


@spool_cli.command("dead")
def spool_dead() -> None:
    """List the rows the database refused (and unreadable spool lines), with the reason."""
    dead = get_spool().dead
    entries = dead.entries()
    click.echo(f"dead letters: {dead.path}")
    if not entries:
        click.echo("none")
        return
    for entry in entries:
        row = entry.row or {}
        what = (
            f"run {row.get('run_id')} model {row.get('model')!r} created {row.get('created_at')}"
            if entry.row
            else f"line {entry.line[:120]!r}"
            if entry.line
            else "no row"
        )
        click.echo(f"{entry.dead_at}  {what}: {entry.reason}")
    click.echo(f"{len(entries)} dead letter(s); the rows are kept in full in {dead.path}")


# --- flask chat -----------------------------------------------------------------------


@click.command("chat")
@click.argument("prompt")
@click.option("--json", "json_mode", is_flag=True, help="Ask the model for a JSON object.")
@click.option("--user-id", type=int, default=None, help="User id stored on the row.")
@click.option(
    "--node", "node_name", default="unknown", show_default=True, help="Node name stored on the row."
)
@with_appcontext
def chat_command(prompt: str, json_mode: bool, user_id: int | None, node_name: str) -> None:
    """Send PROMPT to the configured provider, record the call, print reply and usage."""
    state = {"user_id": user_id, "source_type": "cli"}
    try:
        content, usage = LLMTracker.call_and_track(
            [{"role": "user", "content": prompt}],
            json_mode=json_mode,
            node_name=node_name,
            state=state,
        )
    except ValueError as exc:
        # Configuration errors and the empty reply: the message says it all.
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # the provider's error: its row is recorded with success=False
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    flush()  # the row is in the database before the command says so
    click.echo(content)
    click.echo("--- usage ---")
    for key, value in usage.items():
        click.echo(f"{key}: {value}")


# --- flask reprice, flask prices missing ----------------------------------------------

# Ranges with more rows than this get a progress bar.
PROGRESS_MIN_ROWS = 10_000


def _usd(value: Decimal, rows: int, unpriced: int) -> str:
    # Rows no price source knew have no cost: a sum of none of them is not $0.
    if rows and unpriced == rows:
        return "unpriced"
    return f"{format_money(value)} USD"


@click.command("reprice")
@with_appcontext
@click.option(
    "--since", type=DateParam(), required=True, help="First day (UTC) or instant to reprice."
)
@click.option(
    "--until",
    type=DateParam(end=True),
    default=None,
    help="Last day (UTC, included) or instant (excluded); default: now.",
)
@click.option("--dry-run", is_flag=True, help="Compute and report; write nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Rows per transaction.",
)
def reprice_command(
    since: datetime, until: datetime | None, dry_run: bool, batch_size: int
) -> None:
    """Recompute the cost of rows in a date range with today's rules and price data."""
    if until is not None and until <= since:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    total = count_rows(since, until)
    if total > PROGRESS_MIN_ROWS:
        # On stderr, so the report on stdout stays clean for scripts.
        with click.progressbar(length=total, label="repricing", file=sys.stderr) as bar:
            report = reprice(
                since, until, dry_run=dry_run, batch_size=batch_size, on_batch=bar.update
            )
    else:
        report = reprice(since, until, dry_run=dry_run, batch_size=batch_size)
    t = report.total
    end = until.isoformat() if until else "now"
    click.echo(f"rows {since.isoformat()} .. {end}: {t.rows} (genai-prices {GENAI_PRICES_VERSION})")
    click.echo(f"rows changed: {t.changed}" + (" (dry run: nothing written)" if dry_run else ""))
    click.echo(
        f"total cost: {_usd(t.before, t.rows, t.unpriced_before)} -> "
        f"{_usd(t.after, t.rows, t.unpriced_after)}"
    )
    click.echo(f"unpriced rows: {t.unpriced_before} -> {t.unpriced_after}")
    changed = {m: v for m, v in report.by_model.items() if v.changed}
    if changed:
        click.echo("per model (models with changed rows):")
        width = max(len(m) for m in changed)
        for model, v in sorted(changed.items(), key=lambda kv: (-kv[1].changed, kv[0])):
            click.echo(
                f"  {model:<{width}}  {v.changed}/{v.rows} rows changed  "
                f"{_usd(v.before, v.rows, v.unpriced_before)} -> "
                f"{_usd(v.after, v.rows, v.unpriced_after)}  "
                f"unpriced {v.unpriced_before} -> {v.unpriced_after}"
            )


prices_cli = AppGroup("prices", help="Price data and the models it does not know.")


@prices_cli.command("missing")
def prices_missing() -> None:
    """List models with unpriced calls (no rule or price data knew them), most calls first."""
    rows = missing_prices()
    if not rows:
        click.echo("every recorded call is priced")
        return
    header = ("calls", "provider", "model", "deployment", "first seen", "last seen", "priced now")
    table = [header] + [
        (
            str(r.calls),
            r.provider or "-",
            r.model,
            r.deployment or "-",
            r.first_seen.date().isoformat(),
            r.last_seen.date().isoformat(),
            "yes: run reprice" if r.priced_now else "no",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    oldest = min(r.first_seen for r in rows).date().isoformat()
    click.echo(
        f"\n{sum(r.calls for r in rows)} unpriced call(s). Add a rule to "
        "LLM_TRACKER_CUSTOM_PRICES (or map the Azure deployment in "
        "LLM_TRACKER_AZURE_DEPLOYMENTS), then run: "
        f"flask --app wsgi reprice --since {oldest}"
    )


# --- flask rollup rebuild -------------------------------------------------------------

rollup_cli = AppGroup(
    "rollup", help="The rollup tables (15-minute and daily sums) the statistics read."
)


@rollup_cli.command("rebuild")
@click.option(
    "--since",
    type=DateParam(),
    default=None,
    help="Rebuild from this day (UTC; a datetime means its day) on; default: everything.",
)
@click.option(
    "--batch-days",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Days of raw rows per transaction.",
)
def rollup_rebuild(since: datetime | None, batch_days: int) -> None:
    """Recompute the rollups from the raw rows (after rows were written or changed outside
    record_usage / reprice, or to check them); safe while the application records."""
    step = timedelta(days=batch_days)
    windows = rebuild_windows(since, step)
    # On stderr, so the summary on stdout stays clean for scripts.
    with click.progressbar(length=len(windows), label="rebuilding rollups", file=sys.stderr) as bar:
        written = rebuild(since, step=step, on_batch=bar.update, windows=windows)
    start = windows[0][0].date().isoformat() if windows[0][0] is not None else "the first row"
    click.echo(
        f"15-minute rollup rows written: {written} (from {start} on, "
        f"{len(windows)} batch(es) of {batch_days} day(s))"
    )


# --- flask budget ---------------------------------------------------------------------

budget_cli = AppGroup("budget", help="Budgets: add, list (with their status) and remove.")


def _money(value: str | None, places: int | None = None) -> str:
    # format_money's exact string (or rounded to ``places``), trailing zeros trimmed to
    # cents: "5.00", "0.000151".
    if value is None:
        return "-"
    if places is not None:
        value = f"{Decimal(value).quantize(Decimal(1).scaleb(-places)):f}"
    whole, _, frac = value.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def _amounts(usd: str | None, tokens: int | None, places: int | None = None) -> str:
    # "0.15 USD, 1200 tokens"; either part left out when it is None (no such limit).
    parts = ([f"{_money(usd, places)} USD"] if usd is not None else []) + (
        [f"{tokens} tokens"] if tokens is not None else []
    )
    return ", ".join(parts) or "-"


def _scope(scope: str, value: str | None) -> str:
    if scope == "global":
        return "global"
    if value is None:
        return f"each {scope}"
    return f"{scope} {value}" if scope == "user" else f"{scope} {value!r}"


def describe_budget(budget: dict[str, Any]) -> str:
    """One line about a budget (``budget_json``'s dict): what it covers, its limit, action."""
    thresholds = ",".join(f"{t:g}" for t in budget["thresholds"]) or "none"
    line = (
        f"budget {budget['name']!r} (id {budget['id']}): "
        f"{_scope(budget['scope'], budget['scope_value'])}, "
        f"per {budget['period']} ({budget['tz']}), "
        f"limit {_amounts(budget['limit_usd'], budget['limit_tokens'])}, "
        f"action {budget['action']}, thresholds {thresholds}"
    )
    if budget["webhook_url"]:
        line += f", webhook {budget['webhook_url']}"
    return line


def describe_status(budget: dict[str, Any], entry: dict[str, Any]) -> str:
    """One line about one scope key of a budget in the current period."""
    key = entry["scope_key"]
    if budget["scope"] == "global":
        who = "global"
    elif budget["scope"] == "user":
        who = f"user {key}" + (f" ({entry['label']})" if entry.get("label") else "")
    else:
        who = f"{budget['scope']} {key!r}"
    remaining = _amounts(
        entry["remaining_usd"] if budget["limit_usd"] is not None else None,
        entry["remaining_tokens"] if budget["limit_tokens"] is not None else None,
    )
    line = (
        f"{who}: spent {_amounts(entry['spent_usd'], entry['spent_tokens'])}; "
        f"reserved {_amounts(entry['reserved_usd'], entry['reserved_tokens'])}; "
        f"remaining {remaining}; resets at {entry['resets_at']}; state {entry['state']}; "
        f"projected {_amounts(entry['projected_usd'], entry['projected_tokens'], 6)}"
    )
    if entry["blocked_calls"]:
        line += f"; blocked calls {entry['blocked_calls']}"
    return line


@budget_cli.command("add")
@click.argument("name")
@click.option("--scope", required=True, metavar="|".join(SCOPES), help="What the budget covers.")
@click.option(
    "--value",
    default=None,
    help="The user id, node, source type or model; without it: each one separately.",
)
@click.option("--period", required=True, metavar="|".join(PERIODS), help="Calendar period.")
@click.option("--limit-usd", default=None, metavar="USD", help="Spend limit per period.")
@click.option("--limit-tokens", default=None, metavar="N", help="Token limit per period.")
@click.option(
    "--action",
    default="block",
    show_default=True,
    metavar="|".join(ACTIONS),
    help="block: refuse calls that do not fit; alert: only alert.",
)
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the periods.")
@click.option(
    "--thresholds",
    default=None,
    metavar="0.8,1",
    help="Fractions of the limit that alert, comma-separated (default 0.8,1; '' for none).",
)
@click.option("--webhook", default=None, metavar="URL", help="URL the alerts are POSTed to.")
def budget_add(
    name: str,
    scope: str,
    value: str | None,
    period: str,
    limit_usd: str | None,
    limit_tokens: str | None,
    action: str,
    tz: str,
    thresholds: str | None,
    webhook: str | None,
) -> None:
    """Add a budget NAME (it counts what its scope spent so far this period)."""
    data: dict[str, Any] = {
        "name": name,
        "scope": scope,
        "scope_value": value,
        "period": period,
        "tz": tz,
        "limit_usd": limit_usd,
        "limit_tokens": limit_tokens,
        "action": action,
        "webhook_url": webhook,
    }
    if thresholds is not None:
        data["thresholds"] = (
            [t.strip() for t in thresholds.split(",")] if thresholds.strip() else []
        )
    try:
        budget = create_budget(data)
    except ValueError as exc:  # "invalid budget: field: problem", one line
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    click.echo("added " + describe_budget(budget_json(budget)))


@budget_cli.command("list")
def budget_list() -> None:
    """List the budgets, each with its status per scope key in the current period."""
    found = list_budgets()
    if not found:
        click.echo("no budgets (flask budget add adds one)")
        return
    for budget in found:
        data = budget_json(budget)
        click.echo(f"{describe_budget(data)}; state {data['state']}")
        for entry in data["status"]:
            click.echo("  " + describe_status(data, entry))
        if not data["status"]:
            click.echo("  nothing spent this period")


@budget_cli.command("remove")
@click.argument("name")
def budget_remove(name: str) -> None:
    """Remove the budget NAME, with its counters, reservations and alerts."""
    try:
        name.encode("utf-8")  # undecodable argv bytes arrive as lone surrogates
    except UnicodeEncodeError:
        budget = None
    else:
        budget = db.session.execute(select(Budget).where(Budget.name == name)).scalar()
    if budget is None:
        raise click.ClickException(f"no budget named {name!r} (flask budget list shows them)")
    budget_id = budget.id
    delete_budget(budget)
    click.echo(f"removed budget {name!r} (id {budget_id})")


def register_commands(app: Flask) -> None:
    """Add the library's command groups to ``app.cli``."""
    app.cli.add_command(spool_cli)
    app.cli.add_command(chat_command)
    app.cli.add_command(reprice_command)
    app.cli.add_command(prices_cli)
    app.cli.add_command(rollup_cli)
    app.cli.add_command(budget_cli)
