"""``flask rollup rebuild``: recompute the rollup table from the raw rows."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import click
from flask.cli import AppGroup

from .cost_cli import _When
from .rollup import rebuild, rebuild_windows

rollup_cli = AppGroup("rollup", help="The 15-minute rollup table the statistics read.")


@rollup_cli.command("rebuild")
@click.option("--since", type=_When(), default=None,
              help="First day (UTC) or instant to rebuild, from its 15-minute bucket on; "
                   "default: everything.")
@click.option("--batch-hours", type=click.IntRange(1), default=24, show_default=True,
              help="Hours of raw rows per transaction.")
def rollup_rebuild(since: datetime | None, batch_hours: int) -> None:
    """Recompute the rollups from the raw rows (after rows were written or changed outside
    record_usage / reprice, or to check them); safe while the application records."""
    step = timedelta(hours=batch_hours)
    windows = rebuild_windows(since, step)
    # On stderr, so the summary on stdout stays clean for scripts.
    with click.progressbar(length=len(windows), label="rebuilding rollups",
                           file=sys.stderr) as bar:
        written = rebuild(since, step=step, on_batch=bar.update, windows=windows)
    start = since.isoformat() if since is not None else "the first row"
    click.echo(f"rollup rows written: {written} (buckets from {start} on, "
               f"{len(windows)} batch(es) of {batch_hours} h)")
