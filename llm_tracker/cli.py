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
        click.echo(f"invalid lines: {status.unreadable} (replay moves them to the "
                   "dead letters)")
    click.echo(f"dead letters: {len(spool.dead.entries())} (flask spool dead lists them)")


@spool_cli.command("replay")
def spool_replay() -> None:
    """Write the spooled rows to the database (idempotent by run_id) and empty the spool;
    rows the database refuses go to the dead letters."""
    result = get_spool().replay()
    summary = (f"written: {result.written}, already present: {result.duplicates}, "
               f"remaining: {result.remaining}, dead-lettered: {result.dead}")
    if result.error:
        raise click.ClickException(
            f"database still unavailable, {result.remaining} row(s) kept: {result.error} "
            f"({summary})")
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
        what = (f"run {row.get('run_id')} model {row.get('model')!r} "
                f"created {row.get('created_at')}" if entry.row else
                f"line {entry.line[:120]!r}" if entry.line else "no row")
        click.echo(f"{entry.dead_at}  {what}: {entry.reason}")
    click.echo(f"{len(entries)} dead letter(s); the rows are kept in full in {dead.path}")


def register_commands(app: Flask) -> None:
    """Add the library's command groups to ``app.cli``."""
    app.cli.add_command(spool_cli)
    app.cli.add_command(chat_command)
    app.cli.add_command(reprice_command)
    app.cli.add_command(prices_cli)
    app.cli.add_command(rollup_cli)
