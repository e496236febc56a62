"""``flask rollup rebuild``: recompute the rollup table from the raw rows."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import click
from flask.cli import AppGroup

from .cost_cli import _When
from .rollup import rebuild, rebuild_windows

rollup_cli = AppGroup("rollup", help="The rollup tables (15-minute and daily sums) the "
                      "statistics read.")


@rollup_cli.command("rebuild")
@click.option("--since", type=_When(), default=None,
              help="Rebuild from this day (UTC; a datetime means its day) on; "
                   "default: everything.")
@click.option("--batch-days", type=click.IntRange(1), default=1, show_default=True,
              help="Days of raw rows per transaction.")
def rollup_rebuild(since: datetime | None, batch_days: int) -> None:
    """Recompute the rollups from the raw rows (after rows were written or changed outside
    record_usage / reprice, or to check them); safe while the application records."""
    step = timedelta(days=batch_days)
    windows = rebuild_windows(since, step)
    # On stderr, so the summary on stdout stays clean for scripts.
    with click.progressbar(length=len(windows), label="rebuilding rollups",
                           file=sys.stderr) as bar:
        written = rebuild(since, step=step, on_batch=bar.update, windows=windows)
    start = windows[0][0].date().isoformat() if windows[0][0] is not None else "the first row"
    click.echo(f"15-minute rollup rows written: {written} (from {start} on, "
               f"{len(windows)} batch(es) of {batch_days} day(s))")
