"""Budgets (SPEC §9): limits per period, enforced before the provider is called, exactly.

How it stays exact across threads, processes and hosts:

- Each budget has one **counter** row per scope key and period (``BudgetCounter``): what
  committed rows spent, and what calls in flight hold **reserved**.
- A call covered by ``block`` budgets reserves an upper bound of its cost on every covering
  counter in one conditional statement (``reserve``): the hold is taken only where
  ``spent + reserved + estimate <= limit``, on all of them or none, in one transaction.
- The transaction that commits a row (the writer's batch, or the sync write) also settles
  it (``apply_rows``): the run's reservations are deleted and released and its real cost
  is added to ``spent``. Rows recorded without a reservation are counted the same way, so
  ``spent`` is the committed rows' cost whatever wrote them.
- A reservation whose run never ended expires (``LLM_TRACKER_BUDGET_RESERVATION_TTL_S``);
  expired holds are released when they would block a call.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from weakref import WeakKeyDictionary

from flask import Flask
from sqlalchemy import Connection, Engine, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from . import alerts
from .buckets import floor_wall, step_wall, wall_edge
from .database import MONEY_QUANTUM, as_utc, db, timed_engine, utcnow
from .models import Budget, BudgetAlert, BudgetCounter, BudgetReservation
from .params import parse_tz
from .pricing import format_money, get_pricer

logger = logging.getLogger("llm_tracker")

SCOPES = ("global", "user", "node", "source_type", "model")
PERIODS = ("day", "week", "month")
ACTIONS = ("block", "alert")
DEFAULT_THRESHOLDS = ("0.8", "1")
DEFAULT_MAX_TOKENS = 4096

_BUDGET: Table = Budget.__table__  # type: ignore[assignment]
_COUNTER: Table = BudgetCounter.__table__  # type: ignore[assignment]
_RESERVATION: Table = BudgetReservation.__table__  # type: ignore[assignment]
_ALERT: Table = BudgetAlert.__table__  # type: ignore[assignment]


class BudgetExceeded(Exception):
    """A ``block`` budget covering the call cannot take it: the provider was not called."""

    def __init__(
        self,
        budget: str | None,
        scope: str | None = None,
        scope_value: str | None = None,
        limit_usd: Decimal | None = None,
        spent_usd: Decimal | None = None,
        resets_at: datetime | None = None,
        *,
        limit_tokens: int | None = None,
        spent_tokens: int | None = None,
        message: str | None = None,
    ) -> None:
        self.budget = budget
        self.scope = scope
        self.scope_value = scope_value
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.resets_at = resets_at
        self.limit_tokens = limit_tokens
        self.spent_tokens = spent_tokens
        if message is None:
            who = "" if scope in (None, "global") else f" for {scope} {scope_value}"
            limits = []
            if limit_usd is not None:
                limits.append(f"${format_money(spent_usd or Decimal(0))} of ${limit_usd}")
            if limit_tokens is not None:
                limits.append(f"{spent_tokens or 0} of {limit_tokens} tokens")
            when = resets_at.isoformat() if resets_at is not None else "its next period"
            message = (
                f"budget {budget!r}{who} cannot take this call (spent {' and '.join(limits)});"
                f" it resets at {when}"
            )
        super().__init__(message)


# --- periods --------------------------------------------------------------------------


def current_period(rule: Rule, now: datetime) -> tuple[datetime, datetime]:
    """``period_bounds`` of the rule's period holding ``now``, cached until it ends."""
    cached = _PERIODS.get((rule.period, rule.tz))
    if cached is not None and cached[0] <= now < cached[1]:
        return cached
    bounds = _PERIODS[(rule.period, rule.tz)] = period_bounds(rule.period, rule.zone, now)
    return bounds


_PERIODS: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def period_bounds(period: str, zone: tzinfo, instant: datetime) -> tuple[datetime, datetime]:
    """The UTC start and end of the calendar ``period`` (day, week from Monday, month) in
    ``zone`` holding ``instant``. A period starts at local midnight, or when a DST gap
    that skips midnight ends."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    # A week is seven days from Monday's; buckets knows days and calendar months.
    unit, steps = ("day", 7) if period == "week" else (period, 1)
    first = floor_wall(as_utc(instant).astimezone(zone).replace(tzinfo=None), unit)
    if period == "week":
        first -= timedelta(days=first.weekday())
    nxt = step_wall(first, unit, steps)
    start, end = wall_edge(first, zone), wall_edge(nxt, zone)
    if as_utc(instant) < start:  # a wall time repeated after midnight: the earlier day
        return period_bounds(period, zone, start - timedelta(microseconds=1))
    return start, end


# --- rules: a budget as the hot path reads it ------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """An active budget, read once and shared by threads."""

    id: int
    name: str
    scope: str
    scope_value: str | None
    period: str
    tz: str
    zone: tzinfo
    limit_usd: Decimal | None
    limit_tokens: int | None
    action: str
    thresholds: tuple[Decimal, ...]
    webhook_url: str | None

    @classmethod
    def from_row(cls, row: Any) -> Rule:
        return cls(
            id=row.id,
            name=row.name,
            scope=row.scope,
            scope_value=row.scope_value,
            period=row.period,
            tz=row.tz,
            zone=parse_tz(row.tz),
            limit_usd=row.limit_usd,
            limit_tokens=row.limit_tokens,
            action=row.action,
            thresholds=tuple(sorted(Decimal(str(t)) for t in row.thresholds or ())),
            webhook_url=row.webhook_url,
        )

    def key(self, values: Mapping[str, str | None]) -> str | None:
        """The scope key a call or row with these dimension values counts under, None when
        this budget does not cover it."""
        if self.scope == "global":
            return ""
        value = values.get(self.scope)
        if value is None:
            return None
        if self.scope_value is None or value == self.scope_value:
            return value
        return None

    def fraction(self, spent_usd: Decimal, spent_tokens: int) -> Decimal:
        """How much of the limit is spent (the larger of money and tokens)."""
        parts = [Decimal(0)]
        for spent, limit in (
            (spent_usd, self.limit_usd),
            (Decimal(spent_tokens), self.limit_tokens),
        ):
            if limit is None:
                continue
            if limit == 0:
                parts.append(Decimal(1) if spent > 0 else Decimal(0))
            else:
                parts.append(Decimal(spent) / Decimal(limit))
        return max(parts)


def dimensions(row: Mapping[str, Any]) -> dict[str, str | None]:
    """The values budgets are scoped by, as text, of a usage row (or a call about to be)."""
    user = row.get("user_id")
    model = row.get("requested_model") or row.get("model")
    source = row.get("source_type")
    return {
        "user": None if user is None else str(user),
        "node": row.get("node_name") or "unknown",
        "source_type": None if source in (None, "") else str(source),
        "model": None if not model else str(model),
    }


def _load_rules(conn: Connection) -> list[Rule]:
    rows = conn.execute(select(_BUDGET).where(_BUDGET.c.active).order_by(_BUDGET.c.id))
    return [Rule.from_row(row) for row in rows]


class _RuleCache:
    """Every process's copy of the active budgets, re-read after ``ttl`` seconds (and at
    once after a change made in this process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # By app, weakly: an id() could come back for another app once this one is gone.
        self._rules: WeakKeyDictionary[Flask, tuple[float, list[Rule]]] = WeakKeyDictionary()

    def get(self, app: Flask) -> list[Rule]:
        now = time.monotonic()
        cached = self._rules.get(app)
        if cached is not None and now < cached[0]:
            return cached[1]
        ttl = float(app.config.get("LLM_TRACKER_BUDGET_REFRESH_S", 1.0))
        try:
            with budget_engine(app).connect() as conn:
                rules = _load_rules(conn)
        except Exception:
            if cached is None:
                raise
            rules = cached[1]  # the database is down: the last known budgets still apply
        with self._lock:
            self._rules[app] = (now + ttl, rules)
        return rules

    def clear(self, app: Flask | None = None) -> None:
        with self._lock:
            if app is None:
                self._rules.clear()
            else:
                self._rules.pop(app, None)


_CACHE = _RuleCache()
_ENGINES: WeakKeyDictionary[Flask, tuple[int, Engine]] = WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def budget_engine(app: Flask) -> Engine:
    """The engine reservations use: the app's database, its own pool (never the caller's
    session), with the writer's connect and statement timeouts."""
    entry = _ENGINES.get(app)
    if entry is not None and entry[0] == os.getpid():
        return entry[1]
    with _ENGINES_LOCK:
        entry = _ENGINES.get(app)
        if entry is None or entry[0] != os.getpid():
            engine = _new_engine(app)
            entry = _ENGINES[app] = (os.getpid(), engine)
    return entry[1]


def _new_engine(app: Flask) -> Engine:
    # A pool for the callers' threads. A hold lost in a server crash only lets calls
    # through unheld for that instant; waiting for the WAL flush would cost every call.
    return timed_engine(app, 8, 24, ("-c synchronous_commit=off",))


def close(app: Flask) -> None:
    """Release ``app``'s budget connections and cached budgets (the app shuts down)."""
    _CACHE.clear(app)
    with _ENGINES_LOCK:
        entry = _ENGINES.pop(app, None)
    if entry is not None and entry[0] == os.getpid():
        engine = entry[1]
        if engine is not db._app_engines.get(app, {}).get(None):
            engine.dispose()


def active_rules(app: Flask) -> list[Rule]:
    """The active budgets (cached for ``LLM_TRACKER_BUDGET_REFRESH_S`` seconds)."""
    return _CACHE.get(app)


def changed() -> None:
    """Forget the cached budgets: the next call reads them again."""
    _CACHE.clear()


# --- the estimate -----------------------------------------------------------------------


def prompt_bytes(messages: Sequence[Any], params: Mapping[str, Any] | None = None) -> int:
    """An upper bound of a prompt's input tokens: its UTF-8 bytes (a byte-level BPE token
    is at least one byte), with the messages' roles, tool calls and the tools offered."""
    total = 0
    for message in messages:
        content = getattr(message, "content", message)
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        total += len(text.encode()) + 8  # the role and the chat template's markers
        extra = getattr(message, "additional_kwargs", None) or {}
        tool_calls = getattr(message, "tool_calls", None)
        if tool_calls or extra:
            total += len(json.dumps([tool_calls, extra], ensure_ascii=False, default=str).encode())
    tools = (params or {}).get("tools")
    if tools:
        total += len(json.dumps(tools, ensure_ascii=False, default=str).encode())
    return total


def max_output_tokens(
    app: Flask, metadata: Mapping[str, Any] | None, params: Mapping[str, Any] | None
) -> int:
    """The call's ``max_tokens`` (LangChain's ``ls_max_tokens``, or the provider's own
    parameter), else ``LLM_TRACKER_BUDGET_DEFAULT_MAX_TOKENS``."""
    for source in (metadata or {}, params or {}):
        for key in ("ls_max_tokens", "max_tokens", "max_completion_tokens", "max_output_tokens"):
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return int(app.config.get("LLM_TRACKER_BUDGET_DEFAULT_MAX_TOKENS", DEFAULT_MAX_TOKENS))


def estimate_cost(
    app: Flask, call: Mapping[str, Any], input_tokens: int, output_tokens: int
) -> Decimal:
    """The most the call can cost: every input token at the dearer of the input and the
    cache-write rate, and ``output_tokens`` of output. 0 for a model nobody prices."""
    pricer = get_pricer(app)
    row: dict[str, Any] = {
        "model": call.get("model") or "unknown",
        "provider": call.get("provider"),
        "deployment": call.get("deployment"),
        "created_at": utcnow(),
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "metadata": {},
    }
    key = (pricer, row["model"], row["provider"], row["deployment"], row["created_at"].date())
    rates = _RATES.get(key)
    if rates is None:
        # The price of a million input tokens (at the dearer of the input and the
        # cache-write rate) and of a million output tokens. Tiered prices rise with the
        # prompt, so the million-token tier bounds every smaller prompt's rate.
        million = 1_000_000
        prices = []
        for fields_ in (
            {"prompt_tokens": million, "cache_write_tokens": 0},
            {"prompt_tokens": million, "cache_write_tokens": million},
            {"prompt_tokens": 0, "completion_tokens": million, "cache_write_tokens": 0},
        ):
            cost = pricer.price({**row, "prompt_tokens": 0, "completion_tokens": 0, **fields_})
            prices.append(cost["cost_usd"])
        if prices[0] is None and prices[1] is None:
            rates = (Decimal(0), Decimal(0))
        else:
            rate_in = max(p for p in prices[:2] if p is not None) / million
            rates = (rate_in, (prices[2] or Decimal(0)) / million)
        if len(_RATES) > 10_000:
            _RATES.clear()
        _RATES[key] = rates
    return (rates[0] * input_tokens + rates[1] * output_tokens).quantize(MONEY_QUANTUM)


_RATES: dict[tuple[Any, ...], tuple[Decimal, Decimal]] = {}


# --- reserving --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Held:
    """A run's reservation (released when its row is committed)."""

    run_id: str
    usd: Decimal
    tokens: int
    budgets: tuple[str, ...]


def _binders(dialect: Dialect) -> tuple[Any, Any]:
    # The DBAPI values of a Money and a UTCDateTime column, as SQLAlchemy binds them (an
    # integer of 1e-12 USD and naive text on SQLite): the hot path writes raw SQL.
    found = _BINDERS.get(dialect.name)
    if found is None:
        money = _COUNTER.c.reserved_usd.type.dialect_impl(dialect).bind_processor(dialect)
        time_ = _COUNTER.c.period_start.type.dialect_impl(dialect).bind_processor(dialect)
        found = _BINDERS[dialect.name] = (money or (lambda v: v), time_ or (lambda v: v))
    return found


_BINDERS: dict[str, tuple[Any, Any]] = {}


def _sql(dialect: str, text: str) -> str:
    return text.replace("%s", "?") if dialect == "sqlite" else text


_COUNTER_UPSERT = (
    "INSERT INTO llm_tracker_budget_counter (budget_id, scope_key, period_start, "
    "spent_usd, spent_tokens, reserved_usd, reserved_tokens, blocked_calls) VALUES {values} "
    "ON CONFLICT (budget_id, scope_key, period_start) DO UPDATE SET "
    "reserved_usd = llm_tracker_budget_counter.reserved_usd + excluded.reserved_usd, "
    "reserved_tokens = llm_tracker_budget_counter.reserved_tokens + excluded.reserved_tokens "
    "WHERE {fits} RETURNING llm_tracker_budget_counter.budget_id, "
    "llm_tracker_budget_counter.scope_key, llm_tracker_budget_counter.period_start"
)
_C = "llm_tracker_budget_counter"
# The conditions of one budget's counter: its id, and each limit it has.
_FITS_ID = f"{_C}.budget_id = %s"
_FITS_USD = f"{_C}.spent_usd + {_C}.reserved_usd + excluded.reserved_usd <= %s"
_FITS_TOKENS = f"{_C}.spent_tokens + {_C}.reserved_tokens + excluded.reserved_tokens <= %s"
_RESERVATION_INSERT = (
    "INSERT INTO llm_tracker_budget_reservation "
    "(run_id, budget_id, scope_key, period_start, usd, tokens, expires_at)"
)
# A run reserving twice (a run id given again) holds both.
_RESERVATION_CONFLICT = (
    "ON CONFLICT (run_id, budget_id) DO UPDATE SET "
    "usd = llm_tracker_budget_reservation.usd + excluded.usd, "
    "tokens = llm_tracker_budget_reservation.tokens + excluded.tokens"
)
_RESERVE = f"{_RESERVATION_INSERT} VALUES {{values}} {_RESERVATION_CONFLICT}"
# PostgreSQL: the upsert's RETURNING feeds the reservation rows, in one statement.
_PG_HOLD = (
    f"WITH held AS ({{upsert}}) {_RESERVATION_INSERT} "
    "SELECT %s, budget_id, scope_key, period_start, %s, %s, %s "
    f"FROM held {_RESERVATION_CONFLICT} RETURNING budget_id"
)


@dataclass(frozen=True, slots=True)
class _HoldSQL:
    run_id: str
    upsert: str  # the conditional counter upsert
    upsert_params: list[Any]
    reserve_params: list[Any]  # PostgreSQL: the run id, the amounts and the expiry, bound
    reserve_rows: list[tuple[Any, ...]]  # SQLite: the reservation rows, bound
    values: int  # holds


def _hold_sql(
    dialect: Dialect,
    holds: list[tuple[Rule, str, datetime]],
    run_id: str,
    usd: Decimal,
    tokens: int,
    expires_at: datetime,
) -> _HoldSQL:
    money, time_ = _binders(dialect)
    amount = money(usd)
    values, fits, params, fit_params = [], [], [], []
    for rule, key, start in holds:
        values.append("(%s, %s, %s, 0, 0, %s, %s, 0)")
        params += [rule.id, key, time_(start), amount, tokens]
        conditions = [_FITS_ID]
        fit_params.append(rule.id)
        if rule.limit_usd is not None:
            conditions.append(_FITS_USD)
            fit_params.append(money(rule.limit_usd))
        if rule.limit_tokens is not None:
            conditions.append(_FITS_TOKENS)
            fit_params.append(rule.limit_tokens)
        fits.append("(" + " AND ".join(conditions) + ")")
    upsert = _COUNTER_UPSERT.format(values=", ".join(values), fits=" OR ".join(fits))
    expiry = time_(expires_at)
    rows = [
        (run_id, rule.id, key, time_(start), amount, tokens, expiry) for rule, key, start in holds
    ]
    reserve = [run_id, amount, tokens, expiry]
    return _HoldSQL(run_id, upsert, params + fit_params, reserve, rows, len(holds))


def _try_reserve(conn: Connection, sql: _HoldSQL) -> bool:
    # Every hold or none: True when all fit. On the DBAPI connection (a few hundred µs
    # less than through SQLAlchemy, on every covered call).
    try:
        return _hold(conn, sql)
    except Exception:
        conn.invalidate()  # SQLAlchemy did not see the driver's error: a fresh connection next
        raise


def _hold(conn: Connection, sql: _HoldSQL) -> bool:
    dialect = conn.dialect
    dbapi: Any = conn.connection.driver_connection
    if dialect.name == "postgresql":
        # One statement, one round trip, in autocommit: the holds that fit are taken and
        # their reservation rows written from its RETURNING. Short of one, they are given
        # back at once (meanwhile they only ever made another call wait its turn).
        dbapi.autocommit = True
        try:
            statement = _PG_HOLD.format(upsert=sql.upsert)
            held = dbapi.execute(statement, (*sql.upsert_params, *sql.reserve_params)).fetchall()
        finally:
            dbapi.autocommit = False
        if len(held) == sql.values:
            return True
        with conn.begin():
            deltas: _Deltas = {}
            _take_reservations(conn, _RESERVATION.c.run_id == sql.run_id, deltas)
            _upsert_counters(conn, deltas)
        return False
    cursor = dbapi.cursor()
    try:
        held = cursor.execute(_sql(dialect.name, sql.upsert), sql.upsert_params).fetchall()
        if len(held) < sql.values:
            dbapi.rollback()
            return False
        cursor.executemany(_RESERVE.format(values="(?, ?, ?, ?, ?, ?, ?)"), sql.reserve_rows)
        dbapi.commit()
        return True
    except BaseException:
        dbapi.rollback()
        raise
    finally:
        cursor.close()


_Deltas = dict[tuple[int, str, datetime], list[Any]]


def _delta(deltas: _Deltas, key: Any) -> list[Any]:
    """The change to one counter: [spent_usd, spent_tokens, reserved_usd, reserved_tokens]."""
    found = deltas.get(key)
    if found is None:
        found = deltas[key] = [Decimal(0), 0, Decimal(0), 0]
    return found


def _take_reservations(conn: Connection, where: Any, deltas: _Deltas) -> int:
    """Delete the reservations ``where`` selects, their holds subtracted into ``deltas``;
    how many."""
    gone = conn.execute(
        delete(_RESERVATION)
        .where(where)
        .returning(
            _RESERVATION.c.budget_id,
            _RESERVATION.c.scope_key,
            _RESERVATION.c.period_start,
            _RESERVATION.c.usd,
            _RESERVATION.c.tokens,
        )
    ).fetchall()
    for budget_id, key, start, usd, tokens in gone:
        delta = _delta(deltas, (budget_id, key, start))
        delta[2] -= usd
        delta[3] -= tokens
    return len(gone)


def release_expired(conn: Connection, now: datetime | None = None) -> int:
    """Release the holds of runs that never ended (expired reservations); how many."""
    deltas: _Deltas = {}
    released = _take_reservations(conn, _RESERVATION.c.expires_at < (now or utcnow()), deltas)
    _upsert_counters(conn, deltas)
    return released


def reserve(
    app: Flask,
    run_id: str,
    call: Mapping[str, Any],
    input_tokens: int,
    output_tokens: int,
    now: datetime | None = None,
) -> Held | None:
    """Hold the call's most possible cost on every ``block`` budget covering it, or raise
    ``BudgetExceeded`` (the caller records the blocked row). None when no budget blocks.

    ``call`` holds the dimension values (``user_id``, ``node_name``, ``source_type``,
    ``model``) and ``provider`` / ``deployment`` for the price. When the database cannot
    be reached the call goes ahead with a warning, or with
    ``LLM_TRACKER_BUDGET_FAIL_CLOSED`` is blocked.
    """
    fail_closed = bool(app.config.get("LLM_TRACKER_BUDGET_FAIL_CLOSED", False))
    try:
        rules = [rule for rule in active_rules(app) if rule.action == "block"]
    except Exception as exc:
        return _unavailable(fail_closed, None, exc)
    now = now or utcnow()
    values = dimensions(call)
    holds = []
    for rule in rules:
        key = rule.key(values)
        if key is not None:
            holds.append((rule, key, current_period(rule, now)[0]))
    if not holds:
        return None
    holds.sort(key=lambda hold: (hold[0].id, hold[1], hold[2]))  # one lock order for all
    tokens = input_tokens + output_tokens
    usd = estimate_cost(app, call, input_tokens, output_tokens)
    ttl = float(app.config.get("LLM_TRACKER_BUDGET_RESERVATION_TTL_S", 900))
    expires_at = now + timedelta(seconds=ttl)
    too_big = any(not _fits(rule, Decimal(0), 0, usd, tokens) for rule, _, _ in holds)
    failure: Exception | None = None
    for _connection in range(2):  # a connection the server dropped: once more, afresh
        try:
            return _reserve_on(app, holds, run_id, usd, tokens, expires_at, now, too_big)
        except BudgetExceeded:
            raise
        except Exception as exc:  # the driver's or SQLAlchemy's: the database is unavailable
            failure = exc
    assert failure is not None
    return _unavailable(fail_closed, holds[0][0], failure)


def _reserve_on(
    app: Flask,
    holds: list[tuple[Rule, str, datetime]],
    run_id: str,
    usd: Decimal,
    tokens: int,
    expires_at: datetime,
    now: datetime,
    too_big: bool,
) -> Held:
    engine = budget_engine(app)
    sql = _hold_sql(engine.dialect, holds, run_id, usd, tokens, expires_at)
    with engine.connect() as conn:
        for attempt in range(2):
            if not too_big:
                if _try_reserve(conn, sql):
                    return Held(run_id, usd, tokens, tuple(rule.name for rule, _, _ in holds))
                if attempt == 0:
                    with conn.begin():
                        released = release_expired(conn, now)
                    if released:
                        continue
            with transaction(conn, app):
                refusal = _blocked(conn, holds, usd, tokens, now)
            raise refusal
    raise AssertionError("unreachable")


def _fits(rule: Rule, spent_usd: Decimal, spent_tokens: int, usd: Decimal, tokens: int) -> bool:
    return (rule.limit_usd is None or spent_usd + usd <= rule.limit_usd) and (
        rule.limit_tokens is None or spent_tokens + tokens <= rule.limit_tokens
    )


def _unavailable(fail_closed: bool, rule: Rule | None, exc: BaseException) -> Held | None:
    if fail_closed:
        logger.warning("llm_tracker: budgets unavailable (%s): blocking the call", exc)
        raise BudgetExceeded(
            rule.name if rule else None,
            rule.scope if rule else None,
            message=f"budgets cannot be checked (database unavailable: {type(exc).__name__});"
            " LLM_TRACKER_BUDGET_FAIL_CLOSED blocks the call",
        ) from exc
    logger.warning("llm_tracker: budgets unavailable (%s): the call goes ahead unchecked", exc)
    return None


def _blocked(
    conn: Connection,
    holds: list[tuple[Rule, str, datetime]],
    usd: Decimal,
    tokens: int,
    now: datetime,
) -> BudgetExceeded:
    # Which budget refused, counted on its counter; a first refusal in the period fires
    # the budget's thresholds up to 1 (it is used up, whatever the last call cost).
    for rule, key, start in holds:
        counter = conn.execute(
            select(_COUNTER).where(
                _COUNTER.c.budget_id == rule.id,
                _COUNTER.c.scope_key == key,
                _COUNTER.c.period_start == start,
            )
        ).first()
        spent_usd = counter.spent_usd if counter else Decimal(0)
        spent_tokens = counter.spent_tokens if counter else 0
        reserved_usd = counter.reserved_usd if counter else Decimal(0)
        reserved_tokens = counter.reserved_tokens if counter else 0
        if _fits(rule, spent_usd + reserved_usd, spent_tokens + reserved_tokens, usd, tokens):
            continue
        _upsert_counters(conn, {(rule.id, key, start): [Decimal(0), 0, Decimal(0), 0, 1]})
        if counter is None or not counter.blocked_calls:
            # The first refusal of the period: the budget is used up, whatever it spent.
            used_up = [t for t in rule.thresholds if t <= 1][-1:]
            _fire(conn, rule, key, start, spent_usd, spent_tokens, used_up, "blocked")
        end = period_bounds(rule.period, rule.zone, now)[1]
        return BudgetExceeded(
            rule.name,
            rule.scope,
            None if rule.scope == "global" else key,
            rule.limit_usd,
            spent_usd,
            end,
            limit_tokens=rule.limit_tokens,
            spent_tokens=spent_tokens,
        )
    rule, key, _start = holds[0]  # raced: room again by now; refuse this once, truthfully
    return BudgetExceeded(
        rule.name,
        rule.scope,
        key,
        rule.limit_usd,
        message=f"budget {rule.name!r} was full when the call was checked",
    )


# --- settling: in the transaction that commits the rows ---------------------------------


def _upsert_counters(
    conn: Connection, deltas: Mapping[tuple[int, str, datetime], Sequence[Any]]
) -> list[Any]:
    """Add (spent_usd, spent_tokens, reserved_usd, reserved_tokens[, blocked]) to counters,
    in key order (so concurrent writers lock them in one order); their new values."""
    if not deltas:
        return []
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    rows = []
    for (budget_id, key, start), delta in sorted(deltas.items()):
        rows.append(
            {
                "budget_id": budget_id,
                "scope_key": key,
                "period_start": start,
                "spent_usd": delta[0],
                "spent_tokens": delta[1],
                "reserved_usd": delta[2],
                "reserved_tokens": delta[3],
                "blocked_calls": delta[4] if len(delta) > 4 else 0,
            }
        )
    stmt = module.insert(_COUNTER).values(rows)
    sums = ("spent_usd", "spent_tokens", "reserved_usd", "reserved_tokens", "blocked_calls")
    stmt = stmt.on_conflict_do_update(
        index_elements=["budget_id", "scope_key", "period_start"],
        set_={name: _COUNTER.c[name] + stmt.excluded[name] for name in sums},
    ).returning(
        _COUNTER.c.budget_id,
        _COUNTER.c.scope_key,
        _COUNTER.c.period_start,
        _COUNTER.c.spent_usd,
        _COUNTER.c.spent_tokens,
    )
    return list(conn.execute(stmt))


_PENDING = "llm_tracker_budget_alerts"


def apply_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Count just-inserted rows against every active budget covering them and release
    their runs' reservations, in ``conn``'s transaction (after the raw insert, so a budget
    created meanwhile is either seen here or has counted these rows itself). Alerts fired
    wait in the connection until ``transaction`` sees it commit."""
    if not rows:
        return
    rules = _load_rules(conn)
    if not rules:
        return
    deltas: _Deltas = {}
    if any(rule.action == "block" for rule in rules):
        run_ids = [row["run_id"] for row in rows]
        _take_reservations(conn, _RESERVATION.c.run_id.in_(run_ids), deltas)
    spent: _Deltas = {}
    for row in rows:
        values = dimensions(row)
        cost = row.get("cost_usd") or Decimal(0)
        tokens = row.get("total_tokens") or 0
        for rule in rules:
            key = rule.key(values)
            if key is None:
                continue
            start = current_period(rule, row["created_at"])[0]
            delta = _delta(deltas, (rule.id, key, start))
            delta[0] += cost
            delta[1] += tokens
            spent[(rule.id, key, start)] = delta
    by_id = {rule.id: rule for rule in rules}
    for budget_id, key, start, new_usd, new_tokens in _upsert_counters(conn, deltas):
        found = by_id.get(budget_id)
        counted = spent.get((budget_id, key, as_utc(start)))
        if found is None or counted is None or not found.thresholds:
            continue
        rule, delta = found, counted
        before = rule.fraction(new_usd - delta[0], new_tokens - delta[1])
        after = rule.fraction(new_usd, new_tokens)
        crossed = [t for t in rule.thresholds if before < t <= after]
        if crossed:
            _fire(conn, rule, key, as_utc(start), new_usd, new_tokens, crossed)


def _fire(
    conn: Connection,
    rule: Rule,
    key: str,
    start: datetime,
    spent_usd: Decimal,
    spent_tokens: int,
    thresholds: Sequence[Decimal],
    reason: str = "threshold",
) -> None:
    # One row per budget, key, period and threshold: a second process crossing the same
    # threshold inserts nothing, so only the first one's commit sends the alert.
    if not thresholds:
        return
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = utcnow()
    stmt = (
        module.insert(_ALERT)
        .values(
            [
                {
                    "budget_id": rule.id,
                    "scope_key": key,
                    "period_start": start,
                    "threshold": threshold_text(t),
                    "fired_at": now,
                    "spent_usd": spent_usd,
                    "spent_tokens": spent_tokens,
                    "attempts": 0,
                }
                for t in thresholds
            ]
        )
        .on_conflict_do_nothing()
        .returning(_ALERT.c.id, _ALERT.c.threshold)
    )
    fired = conn.execute(stmt).fetchall()
    end = period_bounds(rule.period, rule.zone, start)[1]
    pending = conn.info.setdefault(_PENDING, [])
    for alert_id, threshold in fired:
        payload = alert_payload(rule, key, start, end, str(threshold), spent_usd, spent_tokens, now)
        payload["id"] = alert_id
        payload["reason"] = reason
        pending.append((rule.webhook_url, payload))


@contextmanager
def transaction(conn: Connection, app: Flask | None) -> Iterator[None]:
    """``conn``'s transaction for writing rows; once it commits, the alerts it fired are
    logged and delivered (a rolled-back one fired none)."""
    conn.info.pop(_PENDING, None)  # left by a transaction that rolled back
    with conn.begin():
        yield
    pending = conn.info.pop(_PENDING, None)
    if pending:
        alerts.dispatch(app, pending)


def threshold_text(value: Decimal) -> str:
    return format(value.normalize(), "f")  # "0.8", "1": the alert key


def alert_payload(
    rule: Rule,
    key: str,
    start: datetime,
    end: datetime,
    threshold: str,
    spent_usd: Decimal,
    spent_tokens: int,
    fired_at: datetime,
) -> dict[str, Any]:
    """An alert as the webhook, the log and the API show it."""
    return {
        "budget": rule.name,
        "budget_id": rule.id,
        "scope": rule.scope,
        "scope_key": None if rule.scope == "global" else key,
        "period": rule.period,
        "tz": rule.tz,
        "period_start": start.isoformat(),
        "resets_at": end.isoformat(),
        "threshold": float(threshold),
        "spent_usd": format_money(spent_usd),
        "spent_tokens": spent_tokens,
        "limit_usd": format_money(rule.limit_usd),
        "limit_tokens": rule.limit_tokens,
        "action": rule.action,
        "fired_at": fired_at.isoformat(),
    }
