"""The single SQLAlchemy instance of llm_tracker and its column types."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Engine, MetaData, Numeric, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Named constraints make Alembic migrations deterministic and let SQLite batch mode
# drop or alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    # Type checkers cannot see through Flask-SQLAlchemy's generated db.Model.
    Model = Base
else:
    Model = db.Model


def current_flask_app() -> Flask:
    """The Flask app behind ``current_app`` (a thread or handler may keep it)."""
    return current_app._get_current_object()  # type: ignore[attr-defined]


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A datetime in UTC; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC text (which sorts and compares correctly) and come back tagged as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect):
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect):
        if value is None:
            return None
        return as_utc(value)


MONEY_SCALE = 12
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


class Money(TypeDecorator):
    """Exact USD amounts to 1e-12 USD, as ``Decimal`` on every backend.

    PostgreSQL stores ``NUMERIC(20, 12)``. SQLite has no exact decimal type (its NUMERIC
    is a float), so there the column is an integer count of 1e-12 USD: rows and ``SUM()``
    stay exact up to about 9.2 million USD per sum.
    """

    impl = Numeric(20, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, MONEY_SCALE))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            # str() first: a float's binary expansion is not the amount meant.
            value = Decimal(value if isinstance(value, int | str) else str(value))
        if dialect.name == "sqlite":
            return int(value.scaleb(MONEY_SCALE).to_integral_value())
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            if isinstance(value, float):  # AVG() and friends
                return Decimal(repr(value)).scaleb(-MONEY_SCALE)
            return Decimal(value).scaleb(-MONEY_SCALE)
        return value if isinstance(value, Decimal) else Decimal(str(value))


def sqlite_pragmas(dbapi_conn: Any, busy_ms: int) -> None:
    """Set up a new SQLite connection: WAL, and a busy timeout of ``busy_ms``."""
    # WAL lets the dashboard read while writers insert; busy_timeout makes concurrent
    # writers wait for the lock instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    cur.close()


def timed_engine(
    app: Flask, pool_size: int = 1, max_overflow: int = 1, pg_options: tuple[str, ...] = ()
) -> Engine:
    """An engine of its own on ``app``'s database with connect and statement timeouts of
    ``LLM_TRACKER_WRITER_TIMEOUT_S``, so a stalled database holds its user (the writer,
    a budget check) for a bounded time; ``pg_options`` are more PostgreSQL settings.
    Built without an app context (a handler in background mode pushes none)."""
    app_engine: Engine = db._app_engines[app][None]  # as Flask-SQLAlchemy resolved it
    url = app_engine.url
    timeout_s = float(app.config.get("LLM_TRACKER_WRITER_TIMEOUT_S", 10))
    ms = int(timeout_s * 1000)
    if url.get_backend_name() == "postgresql":
        given = url.query.get("options")
        options = " ".join(
            [
                *([given] if isinstance(given, str) else []),
                f"-c statement_timeout={ms}",
                *pg_options,
            ]
        )
        return create_engine(
            url.update_query_dict({"options": options}),
            pool_size=pool_size,
            max_overflow=max_overflow,
            # No pre-ping: a ping to a stalled server would wait outside any deadline,
            # and costs a round trip per use. A connection that died fails its use, and
            # its user invalidates it.
            connect_args={"connect_timeout": max(round(timeout_s), 1), "tcp_user_timeout": ms},
        )
    if url.database in (None, "", ":memory:"):
        return app_engine  # an in-memory database exists only on the app's own connection
    # SQLite: a lock held by another process keeps it at most its timeout (the app's busy
    # timeout when shorter).
    busy_ms = min(ms, int(app.config.get("LLM_TRACKER_SQLITE_BUSY_TIMEOUT_MS", ms)))
    engine = create_engine(url)
    event.listen(engine, "connect", lambda conn, _record: sqlite_pragmas(conn, busy_ms))
    return engine
