"""Database faults for tests: an outage a test cuts and restores, a stall it pauses and
resumes, and a database that refuses the rows of one model (a data error, not an outage)."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from llm_tracker import db
from support.tcp_proxy import TCPProxy

REFUSED_MODEL = "refused-by-the-database"


def outage(make_app, database_url, **config):
    """An app whose database can be cut (``cut()``) and restored (``restore()``): on
    PostgreSQL a proxy that drops every connection and refuses new ones; on SQLite another
    process holding the write lock longer than the app's busy timeout (50 ms), the way
    SQLite "goes away" in production."""
    return _faulty(
        make_app, database_url, "stop", "start", {"LLM_TRACKER_SQLITE_BUSY_TIMEOUT_MS": 50}, config
    )


def stall(make_app, database_url, **config):
    """An app whose database can stall (``stall()``) and answer again (``resume()``): on
    PostgreSQL a proxy that stops forwarding; on SQLite another process holding the write
    lock (with the app's busy timeout left at its 30 s default)."""
    return _faulty(make_app, database_url, "pause", "resume", {}, config)


@contextmanager
def _faulty(make_app, database_url, fault: str, heal: str, sqlite_config, config):
    # (app, fault(), heal()); ``fault`` and ``heal`` name the TCPProxy methods on PostgreSQL.
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        app = make_app(**sqlite_config, **config)
        blocker = sqlite3.connect(url.database, isolation_level=None)
        try:
            yield (
                app,
                lambda: blocker.execute("BEGIN EXCLUSIVE"),
                lambda: blocker.execute("COMMIT"),
            )
        finally:
            blocker.close()
    else:
        proxy = TCPProxy(url.host or "127.0.0.1", url.port or 5432)
        proxy.start()
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        try:
            yield (
                make_app(SQLALCHEMY_DATABASE_URI=proxied.render_as_string(False), **config),
                getattr(proxy, fault),
                getattr(proxy, heal),
            )
        finally:
            proxy.resume()
            proxy.stop()


def refuse_a_model(database_url: str) -> None:
    """Make the database itself refuse rows of REFUSED_MODEL (a data error, not an outage)."""
    if make_url(database_url).get_backend_name() == "sqlite":
        db.session.execute(
            text(
                "CREATE TRIGGER refuse_model BEFORE INSERT ON llm_tracker_usage "
                f"WHEN NEW.model = '{REFUSED_MODEL}' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        )
    else:
        db.session.execute(
            text(
                "ALTER TABLE llm_tracker_usage ADD CONSTRAINT refuse_model "
                f"CHECK (model <> '{REFUSED_MODEL}')"
            )
        )
    db.session.commit()
