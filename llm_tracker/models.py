"""Tables: one ``LLMUsage`` row per LLM call, and the users who may read them."""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from .database import Model, Money, UTCDateTime, db, utcnow

JSONType = JSON().with_variant(JSONB(), "postgresql")


class LLMUsage(Model):
    """One chat model / LLM run: tokens, latency, outcome and who asked."""

    __tablename__ = "llm_tracker_usage"
    # Declared in the order people read a row (the list's and the CSV's column order).

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # Idempotency key: the LangChain run id (or a fresh uuid); a run or a spool replay
    # can never make two rows.
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # 64-bit: user ids and token counts of any application fit (record_usage normalises
    # what does not, see recording.normalise).
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(200))
    requested_model: Mapped[str | None] = mapped_column(String(200))
    deployment: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(50))
    node_name: Mapped[str] = mapped_column(String(200), default="unknown")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # Priced at write time (llm_tracker.pricing); all NULL when no price source knows the
    # model ("unpriced"), never a silent 0. cost_usd = input + output (+ per-request fees).
    cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    input_cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    output_cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    # What the cached input would have cost at the uncached input rate, minus what it cost.
    cache_savings_usd: Mapped[Decimal | None] = mapped_column(Money)
    price_source: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    success: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text)
    # "metadata" is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    # Added in the second release, after metadata so the first release's columns keep their
    # places in the list and the CSV. The kind of work (the handler state's source_type;
    # metadata repeats it): a rollup key like node_name.
    source_type: Mapped[str | None] = mapped_column(String(200))
    # Streamed runs: milliseconds from the start of the run to its first token.
    ttft_ms: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_llm_tracker_usage_user_id_created_at", "user_id", "created_at"),
        Index("ix_llm_tracker_usage_model_created_at", "model", "created_at"),
        # Only unpriced rows (few): serves `prices missing` and the list's priced=false
        # filter without scanning the table, and costs priced inserts nothing.
        Index(
            "ix_llm_tracker_usage_unpriced",
            "created_at",
            sqlite_where=text("cost_usd IS NULL"),
            postgresql_where=text("cost_usd IS NULL"),
        ),
    )

    def __repr__(self) -> str:
        return f"<LLMUsage {self.model} {self.total_tokens} tok {self.created_at:%Y-%m-%d %H:%M}>"


# Derived from the table, so a column is declared once (as a Mapped attribute above).
TOKEN_COLUMNS = tuple(col.key for col in LLMUsage.__table__.c if col.key.endswith("_tokens"))
MONEY_COLUMNS = tuple(col.key for col in LLMUsage.__table__.c if isinstance(col.type, Money))
# The counts the statistics and call_and_track report (the seed's keys): cache writes are
# priced, not reported.
REPORTED_TOKEN_COLUMNS = tuple(name for name in TOKEN_COLUMNS if name != "cache_write_tokens")


# The rollup's key columns are NOT NULL: a unique key treats NULLs as distinct on SQLite
# and PostgreSQL alike, so ON CONFLICT would never match a NULL provider or user. These
# stand for NULL instead; readers map them back. NO_USER is the one 64-bit value
# record_usage never stores as a user id (it normalises it away), so no real user can
# collide with it.
NO_PROVIDER = ""
NO_SOURCE = ""
NO_USER = -(2**63)


class _RollupKey:
    """A rollup row's key: a bucket and the value of every dimension.

    ``sort_order`` puts these first in every table made with them, bucket leading the
    primary key (it serves ranges), whatever the subclass declares.
    """

    # The bucket's first instant, UTC.
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, sort_order=-1)
    model: Mapped[str] = mapped_column(String(200), primary_key=True, sort_order=-1)
    provider: Mapped[str] = mapped_column(
        String(50), primary_key=True, sort_order=-1
    )  # NO_PROVIDER: none
    user_id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, sort_order=-1
    )  # NO_USER: none
    node_name: Mapped[str] = mapped_column(String(200), primary_key=True, sort_order=-1)
    source_type: Mapped[str] = mapped_column(
        String(200), primary_key=True, sort_order=-1
    )  # NO_SOURCE: none
    success: Mapped[bool] = mapped_column(Boolean, primary_key=True, sort_order=-1)


class _RollupSums:
    """The sums of a rollup row's calls."""

    calls: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    # Calls with cost_usd NULL. The money sums cover the priced calls only (0 when none
    # is), so "no priced call" is calls == unpriced_calls, never a NULL sum.
    unpriced_calls: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal] = mapped_column(Money)
    input_cost_usd: Mapped[Decimal] = mapped_column(Money)
    output_cost_usd: Mapped[Decimal] = mapped_column(Money)
    cache_savings_usd: Mapped[Decimal] = mapped_column(Money)


class _RollupColumns(_RollupKey, _RollupSums):
    """The columns of both rollup levels: a bucket, the key, and the sums of its calls."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.bucket:%Y-%m-%d %H:%M} {self.model} {self.calls} calls>"
        )


class LLMUsageRollup(_RollupColumns, Model):
    """Sums of the calls in one 15-minute UTC bucket for one model, provider, user, node,
    source type and outcome; kept in step with ``LLMUsage`` by ``record_usage`` (see ``rollup``)."""

    __tablename__ = "llm_tracker_usage_rollup"
    __table_args__ = (
        # The primary key (bucket first) serves ranges; this serves one user's ranges.
        Index("ix_llm_tracker_usage_rollup_user_id_bucket", "user_id", "bucket"),
    )


class LLMUsageRollupDay(_RollupColumns, Model):
    """The same sums per UTC day: long ranges read a row per day and key, not 96."""

    __tablename__ = "llm_tracker_usage_rollup_day"
    __table_args__ = (Index("ix_llm_tracker_usage_rollup_day_user_id_bucket", "user_id", "bucket"),)


class _LatencyColumns(_RollupKey):
    """One bin of the latency histogram (``llm_tracker.latency``) of one rollup key."""

    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.bucket:%Y-%m-%d %H:%M} bin {self.bin}: {self.calls}>"


class LLMLatencyRollup(_LatencyColumns, Model):
    """How many calls with a latency fell in each histogram bin, per 15-minute bucket and
    key (calls without a latency are not counted); only bins with calls have a row."""

    __tablename__ = "llm_tracker_latency_rollup"
    __table_args__ = (Index("ix_llm_tracker_latency_rollup_user_id_bucket", "user_id", "bucket"),)


class LLMLatencyRollupDay(_LatencyColumns, Model):
    """The same histogram per UTC day."""

    __tablename__ = "llm_tracker_latency_rollup_day"
    __table_args__ = (
        Index("ix_llm_tracker_latency_rollup_day_user_id_bucket", "user_id", "bucket"),
    )


def is_admin(user: Any) -> bool:
    """The admin rule, for ``User`` or any Flask-Login user: an active account that is staff
    or superuser."""
    return bool(
        getattr(user, "is_active", False)
        and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    )


def new_session_token() -> str:
    """A fresh random session token for a user."""
    return secrets.token_hex(16)


class User(UserMixin, Model):
    """A person who can log in; admins are active staff or superusers."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    date_joined: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Part of every session cookie (see admin_app.auth): replacing it on logout, password
    # change or deactivation ends every session of the user, copied cookies included.
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)

    def get_id(self) -> str:
        """The Flask-Login id kept in the session: ``"<id>:<session token>"``."""
        return f"{self.id}:{self.session_token}"

    @classmethod
    def from_session_id(cls, session_id: str) -> User | None:
        """The user a ``get_id()`` value names, or None: malformed, unknown or ended.

        The Flask-Login user loader of any app using this model (admin_app's included).
        """
        # Anything but "<id>:<token>", such as a session made before session tokens, is
        # no user.
        user_id, _, token = session_id.partition(":")
        if not (token and user_id.isascii() and user_id.isdigit() and len(user_id) <= 10):
            return None
        if int(user_id) > 2**31 - 1:  # users.id is 32-bit; PostgreSQL would refuse the query
            return None
        user = db.session.get(cls, int(user_id))
        if user is None or not user.session_token:
            return None
        # Constant time, so response times do not reveal how much of a token was right.
        if not hmac.compare_digest(user.session_token.encode(), token.encode("utf-8", "replace")):
            return None
        return user

    def end_sessions(self) -> None:
        """End every session of this user (copied cookies too): a new session token."""
        self.session_token = new_session_token()

    def set_password(self, password: str) -> None:
        """Store a salted scrypt hash of ``password``; a change ends existing sessions."""
        if self.password_hash is not None:
            # Whoever knew the old password may hold a session made with it.
            self.end_sessions()
        self.password_hash = generate_password_hash(password, method="scrypt")

    def deactivate(self) -> None:
        """Forbid logging in and end every existing session."""
        self.is_active = False
        self.end_sessions()

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self) -> bool:
        """Active and staff or superuser: may read the admin API."""
        return is_admin(self)

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class LoginFailures(Model):
    """Failed logins counted per key (a username or an address) in a fixed time window.

    In the database, so every worker process shares one count (admin_app.auth).
    """

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer)


class _SliceKey:
    """A slice row's key: one dimension, a UTC day, and that dimension's value as text
    ("" for none; a user id in decimal)."""

    dimension: Mapped[str] = mapped_column(String(20), primary_key=True, sort_order=-1)
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, sort_order=-1)
    value: Mapped[str] = mapped_column(String(200), primary_key=True, sort_order=-1)


class LLMUsageSliceDay(_SliceKey, _RollupSums, Model):
    """The daily sums of one dimension alone (model, user, node, source type or provider):
    a breakdown by users or a summary reads a row per day and value, however many values
    the other dimensions take (see ``rollup``)."""

    __tablename__ = "llm_tracker_usage_slice_day"

    successful_calls: Mapped[int] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.bucket:%Y-%m-%d} {self.dimension}={self.value!r}>"


class LLMLatencySliceDay(_SliceKey, Model):
    """The latency histogram of one dimension's value per UTC day."""

    __tablename__ = "llm_tracker_latency_slice_day"

    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)


# --- budgets (SPEC §9) ----------------------------------------------------------------


class Budget(Model):
    """A spending limit per period for everyone, one user / node / source type / model,
    or each of them separately (``scope_value`` None); see ``llm_tracker.budgets``."""

    __tablename__ = "llm_tracker_budget"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scope: Mapped[str] = mapped_column(String(20))  # global | user | node | source_type | model
    scope_value: Mapped[str | None] = mapped_column(String(200))  # None: each value apart
    period: Mapped[str] = mapped_column(String(10))  # day | week | month, calendar, in tz
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    limit_usd: Mapped[Decimal | None] = mapped_column(Money)
    limit_tokens: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(10), default="block")  # block | alert
    # Fractions of the limit that alert, as decimal strings ("0.8"): exact, and the alert
    # table's key.
    thresholds: Mapped[list[str]] = mapped_column(JSONType, default=lambda: ["0.8", "1"])
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Budget {self.name!r} {self.scope}={self.scope_value!r} per {self.period}>"


class BudgetCounter(Model):
    """What one budget's scope key spent (committed rows) and holds reserved (calls in
    flight) in one period. Reservations change it with one conditional statement, so the
    check and the hold are atomic across processes."""

    __tablename__ = "llm_tracker_budget_counter"

    budget_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("llm_tracker_budget.id", ondelete="CASCADE"), primary_key=True
    )
    scope_key: Mapped[str] = mapped_column(String(200), primary_key=True)  # "" for global
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    blocked_calls: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetReservation(Model):
    """One run's hold on one budget counter until its row is committed (or it expires)."""

    __tablename__ = "llm_tracker_budget_reservation"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    budget_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("llm_tracker_budget.id", ondelete="CASCADE"), primary_key=True
    )
    scope_key: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    usd: Mapped[Decimal] = mapped_column(Money)
    tokens: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class BudgetAlert(Model):
    """A threshold crossed: one row per budget, scope key, period and threshold, so it
    fires once across every process."""

    __tablename__ = "llm_tracker_budget_alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("llm_tracker_budget.id", ondelete="CASCADE"), index=True
    )
    scope_key: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    threshold: Mapped[str] = mapped_column(String(20))
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    spent_usd: Mapped[Decimal] = mapped_column(Money)
    spent_tokens: Mapped[int] = mapped_column(BigInteger)
    # The webhook's delivery: when it succeeded, how many tries, the last failure.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("budget_id", "scope_key", "period_start", "threshold"),)
