"""Commands of the admin app: users and first-start bootstrap."""

from __future__ import annotations

import secrets

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy import func, select

from llm_tracker import User, db


def _create_user(username: str, password: str, *, admin: bool) -> User:
    if not username or username != username.strip() or len(username) > 150:
        raise click.ClickException(
            "username must be 1 to 150 characters without leading or trailing spaces")
    if not password:
        raise click.ClickException("password must not be empty")
    if db.session.execute(select(User).filter_by(username=username)).scalar_one_or_none():
        raise click.ClickException(f"user {username!r} already exists")
    user = User(username=username, is_staff=admin, is_superuser=admin, is_active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


@click.command("create-admin")
@with_appcontext
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_admin(username: str, password: str) -> None:
    """Create an admin (staff + superuser) who can use the dashboard and admin API."""
    user = _create_user(username, password, admin=True)
    click.echo(f"admin {user.username!r} created (id {user.id})")


@click.command("create-user")
@with_appcontext
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_user(username: str, password: str) -> None:
    """Create a regular (non-admin) user."""
    user = _create_user(username, password, admin=False)
    click.echo(f"user {user.username!r} created (id {user.id})")


@click.command("bootstrap")
@with_appcontext
def bootstrap() -> None:
    """On an empty database: create an admin (password printed once) and demo usage rows."""
    from .demo import create_demo_rows

    if db.session.execute(select(func.count()).select_from(User)).scalar_one():
        return
    password = secrets.token_urlsafe(12)
    _create_user("admin", password, admin=True)
    demo_users = [_create_user(name, secrets.token_urlsafe(16), admin=False)
                  for name in ("alice", "bob")]
    rows = create_demo_rows([u.id for u in demo_users])
    click.echo("=" * 60)
    click.echo("First start: created the admin login and demo data.")
    click.echo("  url:      http://127.0.0.1:5000/")
    click.echo("  username: admin")
    click.echo(f"  password: {password}")
    click.echo(f"  demo usage rows: {rows}")
    click.echo("This password is shown only once.")
    click.echo("=" * 60)


def init_app(app: Flask) -> None:
    """Register the app's commands."""
    for command in (create_admin, create_user, bootstrap):
        app.cli.add_command(command)
