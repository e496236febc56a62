"""The llm_tracker admin application: login, admin JSON API, dashboard, CLI."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_migrate import Migrate

import llm_tracker
from llm_tracker import db

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")
migrate = Migrate(render_as_batch=True, directory=MIGRATIONS_DIR)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then instance/config.py, then the environment, then test_config."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        instance_path=os.environ.get("LLM_TRACKER_INSTANCE_PATH") or None,
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI="sqlite:///"
        + os.path.join(app.instance_path, "llm_tracker.sqlite3"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=False,
    )
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env()
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if os.environ.get("LLM_TRACKER_SPOOL_PATH"):
        app.config["LLM_TRACKER_SPOOL_PATH"] = os.environ["LLM_TRACKER_SPOOL_PATH"]
    if test_config is not None:
        app.config.from_mapping(test_config)
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # A connection the server dropped is replaced instead of failing one write.
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {}).setdefault("pool_pre_ping", True)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(app)

    llm_tracker.init_app(app)
    migrate.init_app(app, db)

    from llm_tracker import budget_views, views

    from . import auth, cli, dashboard, security_headers

    cli.init_app(app)
    security_headers.init_app(app)
    auth.init_app(app)
    app.register_blueprint(views.bp, url_prefix="/api/v1/admin")
    app.register_blueprint(budget_views.bp, url_prefix="/api/v1/admin")
    app.register_blueprint(dashboard.bp)
    views.register_error_handlers(app)
    return app


def _instance_secret_key(app: Flask) -> str:
    # A key kept in the instance folder so sessions survive restarts without any setup;
    # production sets FLASK_SECRET_KEY instead.
    path = os.path.join(app.instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip()
