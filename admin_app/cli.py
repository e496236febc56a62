"""Commands of the admin app: creating and managing users, and first-start bootstrap."""

from __future__ import annotations

import secrets

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select

from llm_tracker import User, db

from .auth import BAD_TEXT, is_storable_text


def _check_password(password: str) -> None:
    # The login form and API take no more and no other text, so anything else could
    # never be used to log in.
    if not password:
        raise click.ClickException("password must not be empty")
    if len(password) > 1024:
        raise click.ClickException("password must be at most 1024 characters")
    if not is_storable_text(password):
        raise click.ClickException(f"password {BAD_TEXT}")


def _create_user(username: str, password: str, *, admin: bool) -> User:
    if not username or username != username.strip() or len(username) > 150:
        raise click.ClickException(
            "username must be 1 to 150 characters without leading or trailing spaces"
        )
    if not is_storable_text(username):
        raise click.ClickException(f"username {BAD_TEXT}")
    _check_password(password)
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
    demo_users = [
        _create_user(name, secrets.token_urlsafe(16), admin=False) for name in ("alice", "bob")
    ]
    rows = create_demo_rows([u.id for u in demo_users])
    click.echo("=" * 60)
    click.echo("First start: created the admin login and demo data.")
    click.echo("  url:      http://127.0.0.1:5000/")
    click.echo("  username: admin")
    click.echo(f"  password: {password}")
    click.echo(f"  demo usage rows: {rows}")
    click.echo("This password is shown only once.")
    click.echo("=" * 60)


users = AppGroup(
    "users", help="List users, set passwords, grant or revoke admin rights, deactivate accounts."
)


def _user(username: str) -> User:
    user = db.session.execute(select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


@users.command("list")
def list_users() -> None:
    """Show every user: id, username, admin, active, date joined (UTC)."""
    rows = [("id", "username", "admin", "active", "date joined")] + [
        (
            str(u.id),
            u.username,
            "yes" if u.is_staff or u.is_superuser else "no",
            "yes" if u.is_active else "no",
            f"{u.date_joined:%Y-%m-%d %H:%M} UTC",
        )
        for u in db.session.execute(select(User).order_by(User.id)).scalars()
    ]
    if len(rows) == 1:
        click.echo("no users yet: flask --app wsgi create-admin NAME makes the first admin")
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@users.command("set-password")
@click.argument("username")
@click.option("--password", help="The new password (prompted, hidden, when not given).")
def set_password(username: str, password: str | None) -> None:
    """Replace a user's password and end the user's existing sessions."""
    user = _user(username)  # before the prompt: nobody types a password for a typo
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    _check_password(password)
    user.set_password(password)  # a change: it ends the user's sessions
    db.session.commit()
    click.echo(f"password of {user.username!r} changed; its existing sessions ended")


@users.command("grant-admin")
@click.argument("username")
def grant_admin(username: str) -> None:
    """Make a user an admin (staff and superuser): the dashboard and admin API."""
    user = _user(username)
    if user.is_staff and user.is_superuser:
        click.echo(f"{user.username!r} is already an admin")
    else:
        user.is_staff = user.is_superuser = True
        db.session.commit()
        click.echo(f"{user.username!r} is now an admin")
    if not user.is_active:
        click.echo(
            f"note: {user.username!r} is deactivated and cannot log in "
            f"(flask --app wsgi users activate {user.username})"
        )


@users.command("revoke-admin")
@click.argument("username")
def revoke_admin(username: str) -> None:
    """Take admin rights (staff and superuser) from a user; the account stays usable."""
    user = _user(username)
    if not (user.is_staff or user.is_superuser):
        click.echo(f"{user.username!r} is not an admin")
        return
    user.is_staff = user.is_superuser = False
    db.session.commit()
    click.echo(f"{user.username!r} is no longer an admin")
    admins = db.session.execute(
        select(func.count())
        .select_from(User)
        .where(User.is_active, User.is_staff | User.is_superuser)
    ).scalar_one()
    if not admins:
        click.echo("note: no active admin is left (flask --app wsgi users grant-admin NAME)")


@users.command("deactivate")
@click.argument("username")
def deactivate(username: str) -> None:
    """Stop a user from logging in and end the user's existing sessions."""
    user = _user(username)
    was_active = user.is_active
    user.deactivate()
    db.session.commit()
    state = "deactivated" if was_active else "was already deactivated"
    click.echo(f"{user.username!r} {state}; its existing sessions ended")


@users.command("activate")
@click.argument("username")
def activate(username: str) -> None:
    """Let a deactivated user log in again (the undo of deactivate)."""
    user = _user(username)
    if user.is_active:
        click.echo(f"{user.username!r} is already active")
        return
    user.is_active = True
    db.session.commit()
    click.echo(f"{user.username!r} activated")


def init_app(app: Flask) -> None:
    """Register the app's commands."""
    for command in (create_admin, create_user, bootstrap, users):
        app.cli.add_command(command)
