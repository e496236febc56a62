"""``flask reprice`` and ``flask prices missing``."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import click
from flask.cli import AppGroup, with_appcontext

from .database import as_utc
from .pricing import GENAI_PRICES_VERSION, format_money
from .reprice import count_rows, missing_prices, reprice

# Ranges with more rows than this get a progress bar.
PROGRESS_MIN_ROWS = 10_000


class _When(click.ParamType):
    """A UTC date (``2026-01-31``) or ISO datetime; ``end=True``: a date means its end."""

    name = "DATE"

    def __init__(self, end: bool = False) -> None:
        self.end = end

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return as_utc(value)
        text = str(value).strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                return as_utc(datetime.fromisoformat(text))
            except ValueError:
                self.fail(f"{value!r} is not a date (YYYY-MM-DD) or ISO datetime", param, ctx)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        # --until 2026-01-31 includes the whole of that day.
        return start + timedelta(days=1) if self.end else start


def _usd(value: Decimal, rows: int, unpriced: int) -> str:
    # Rows no price source knew have no cost: a sum of none of them is not $0.
    if rows and unpriced == rows:
        return "unpriced"
    return f"{format_money(value)} USD"


@click.command("reprice")
@with_appcontext
@click.option("--since", type=_When(), required=True,
              help="First day (UTC) or instant to reprice.")
@click.option("--until", type=_When(end=True), default=None,
              help="Last day (UTC, included) or instant (excluded); default: now.")
@click.option("--dry-run", is_flag=True, help="Compute and report; write nothing.")
@click.option("--batch-size", type=click.IntRange(1), default=1000, show_default=True,
              help="Rows per transaction.")
def reprice_command(since: datetime, until: datetime | None, dry_run: bool,
                    batch_size: int) -> None:
    """Recompute the cost of rows in a date range with today's rules and price data."""
    if until is not None and until <= since:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    total = count_rows(since, until)
    if total > PROGRESS_MIN_ROWS:
        # On stderr, so the report on stdout stays clean for scripts.
        with click.progressbar(length=total, label="repricing", file=sys.stderr) as bar:
            report = reprice(since, until, dry_run=dry_run, batch_size=batch_size,
                             on_batch=bar.update)
    else:
        report = reprice(since, until, dry_run=dry_run, batch_size=batch_size)
    t = report.total
    end = until.isoformat() if until else "now"
    click.echo(f"rows {since.isoformat()} .. {end}: {t.rows} "
               f"(genai-prices {GENAI_PRICES_VERSION})")
    click.echo(f"rows changed: {t.changed}"
               + (" (dry run: nothing written)" if dry_run else ""))
    click.echo(f"total cost: {_usd(t.before, t.rows, t.unpriced_before)} -> "
               f"{_usd(t.after, t.rows, t.unpriced_after)}")
    click.echo(f"unpriced rows: {t.unpriced_before} -> {t.unpriced_after}")
    changed = {m: v for m, v in report.by_model.items() if v.changed}
    if changed:
        click.echo("per model (models with changed rows):")
        width = max(len(m) for m in changed)
        for model, v in sorted(changed.items(), key=lambda kv: (-kv[1].changed, kv[0])):
            click.echo(f"  {model:<{width}}  {v.changed}/{v.rows} rows changed  "
                       f"{_usd(v.before, v.rows, v.unpriced_before)} -> "
                       f"{_usd(v.after, v.rows, v.unpriced_after)}  "
                       f"unpriced {v.unpriced_before} -> {v.unpriced_after}")


prices_cli = AppGroup("prices", help="Price data and the models it does not know.")


@prices_cli.command("missing")
def prices_missing() -> None:
    """List models with unpriced calls (no rule or price data knew them), most calls first."""
    rows = missing_prices()
    if not rows:
        click.echo("every recorded call is priced")
        return
    header = ("calls", "provider", "model", "deployment", "first seen", "last seen",
              "priced now")
    table = [header] + [
        (str(r.calls), r.provider or "-", r.model, r.deployment or "-",
         r.first_seen.date().isoformat(), r.last_seen.date().isoformat(),
         "yes: run reprice" if r.priced_now else "no")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                   .rstrip())
    oldest = min(r.first_seen for r in rows).date().isoformat()
    click.echo(f"\n{sum(r.calls for r in rows)} unpriced call(s). Add a rule to "
               "LLM_TRACKER_CUSTOM_PRICES (or map the Azure deployment in "
               "LLM_TRACKER_AZURE_DEPLOYMENTS), then run: "
               f"flask --app wsgi reprice --since {oldest}")
