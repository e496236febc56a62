"""``flask spool ...`` and the other commands the library adds to an app."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from .chat_cli import chat_command
from .cost_cli import prices_cli, reprice_command
from .recording import get_spool
from .rollup_cli import rollup_cli

spool_cli = AppGroup("spool", help="Rows kept while the database was unreachable.")


@spool_cli.command("status")
def spool_status() -> None:
    """Show how many rows wait in the spool."""
    spool = get_spool()
    rows = spool.rows()
    click.echo(f"spool: {spool.path}")
    click.echo(f"rows waiting: {len(rows)}")
    if rows:
        click.echo(f"oldest: {rows[0]['created_at'].isoformat()}")
        click.echo(f"newest: {rows[-1]['created_at'].isoformat()}")


@spool_cli.command("replay")
def spool_replay() -> None:
    """Write the spooled rows to the database (idempotent by run_id) and empty the spool."""
    result = get_spool().replay()
    if result.error:
        raise click.ClickException(
            f"database still unavailable, {result.remaining} row(s) kept: {result.error}")
    click.echo(f"written: {result.written}, already present: {result.duplicates}, "
               f"remaining: {result.remaining}")


def register_commands(app: Flask) -> None:
    """Add the library's command groups to ``app.cli``."""
    app.cli.add_command(spool_cli)
    app.cli.add_command(chat_command)
    app.cli.add_command(reprice_command)
    app.cli.add_command(prices_cli)
    app.cli.add_command(rollup_cli)
