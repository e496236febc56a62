"""Managing budgets: validate, create, change, remove, and their status per scope key.

The CLI (``flask budget``) and the admin API share ``BudgetSchema`` and these functions,
so both refuse the same input with the same one-line message (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, String, Table, cast, delete, func, insert, literal, select

from . import budgets
from .budgets import ACTIONS, DEFAULT_THRESHOLDS, PERIODS, SCOPES, Rule, period_bounds
from .database import db, utcnow
from .models import Budget, BudgetAlert, BudgetCounter, BudgetReservation, LLMUsage, User
from .params import USER_ID_MAX, USER_ID_MIN, describe_errors, parse_tz
from .pricing import format_money
from .rollup import lock_writers

_COUNTER: Table = BudgetCounter.__table__  # type: ignore[assignment]
_RESERVATION: Table = BudgetReservation.__table__  # type: ignore[assignment]
_ALERT: Table = BudgetAlert.__table__  # type: ignore[assignment]
_RAW: Table = LLMUsage.__table__  # type: ignore[assignment]
# Fields whose change makes the counters count other rows: recounted from the raw rows.
_COUNTING = ("scope", "scope_value", "period", "tz", "active")


def _tz(value: str) -> None:
    try:
        parse_tz(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _storable(value: str) -> None:
    # Text no database column takes: a NUL, or a lone surrogate (JSON "\\ud800").
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must not contain lone surrogates") from None


class BudgetSchema(Schema):
    """A budget as the API takes it (JSON) and the CLI builds it; unknown fields refused."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _storable])
    scope = fields.String(required=True, validate=validate.OneOf(SCOPES))
    scope_value = fields.String(
        allow_none=True, validate=[validate.Length(min=1, max=200), _storable]
    )
    period = fields.String(required=True, validate=validate.OneOf(PERIODS))
    tz = fields.String(load_default="UTC", validate=[validate.Length(max=64), _tz])
    limit_usd = fields.Decimal(
        allow_none=True, validate=validate.Range(min=0, max=10**7), allow_nan=False
    )
    limit_tokens = fields.Integer(
        strict=False, allow_none=True, validate=validate.Range(min=0, max=2**62)
    )
    action = fields.String(load_default="block", validate=validate.OneOf(ACTIONS))
    thresholds = fields.List(
        fields.Decimal(validate=validate.Range(min=0, min_inclusive=False, max=100)),
        load_default=lambda: [Decimal(t) for t in DEFAULT_THRESHOLDS],
        validate=validate.Length(max=20),
    )
    webhook_url = fields.Url(
        allow_none=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=[validate.Length(max=2000), _storable],
    )
    active = fields.Boolean(load_default=True)

    @validates_schema
    def _whole(self, data: Mapping[str, Any], partial: Any = None, **_kwargs: Any) -> None:
        if partial:
            return
        check_budget(data)


def check_budget(data: Mapping[str, Any]) -> None:
    """The rules across fields; ``ValidationError`` naming the field."""
    if data.get("limit_usd") is None and data.get("limit_tokens") is None:
        raise ValidationError("a budget needs limit_usd, limit_tokens or both", "limit_usd")
    value = data.get("scope_value")
    if data.get("scope") == "global" and value is not None:
        raise ValidationError("a global budget has no scope_value", "scope_value")
    if data.get("scope") == "user" and value is not None:
        try:
            user = int(value)
        except ValueError:
            raise ValidationError(
                "a user budget's scope_value is a user id", "scope_value"
            ) from None
        if not USER_ID_MIN <= user <= USER_ID_MAX:
            raise ValidationError("user id out of range", "scope_value")


def _load(data: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
    try:
        loaded = BudgetSchema().load(dict(data), partial=partial)
    except ValidationError as exc:
        raise ValueError(f"invalid budget: {describe_errors(exc.messages)}") from None
    if loaded.get("scope") == "user" and loaded.get("scope_value") is not None:
        loaded["scope_value"] = str(int(loaded["scope_value"]))
    if "thresholds" in loaded:
        loaded["thresholds"] = sorted(
            {budgets.threshold_text(t) for t in loaded["thresholds"]}, key=Decimal
        )
    if "tz" in loaded:
        loaded["tz"] = loaded["tz"].strip() or "UTC"
    return loaded


def _name_taken(name: str, other_than: int | None = None) -> None:
    query = select(Budget.id).where(Budget.name == name)
    found = db.session.execute(query).scalar()
    if found is not None and found != other_than:
        raise ValueError(f"invalid budget: name: a budget named {name!r} already exists")


def create_budget(data: Mapping[str, Any]) -> Budget:
    """Validate and store a new budget, counting what its scope spent so far this period."""
    values = _load(data)
    _name_taken(values["name"])
    conn = db.session.connection()
    lock_writers(conn)
    budget = Budget(**values)
    db.session.add(budget)
    db.session.flush()
    if budget.active:
        recount(conn, budget)
    db.session.commit()
    budgets.changed()
    return budget


def update_budget(budget: Budget, data: Mapping[str, Any]) -> Budget:
    """Change some of a budget's fields (validated as a whole afterwards)."""
    changes = _load(data, partial=True)
    merged = {name: getattr(budget, name) for name in BudgetSchema().fields} | changes
    try:
        check_budget(merged)
    except ValidationError as exc:
        raise ValueError(f"invalid budget: {describe_errors(exc.normalized_messages())}") from None
    if "name" in changes:
        _name_taken(changes["name"], budget.id)
    conn = db.session.connection()
    lock_writers(conn)
    recounts = any(name in changes and changes[name] != getattr(budget, name) for name in _COUNTING)
    for name, value in changes.items():
        setattr(budget, name, value)
    budget.updated_at = utcnow()
    db.session.flush()
    if recounts:
        recount(conn, budget)
    db.session.commit()
    budgets.changed()
    return budget


def delete_budget(budget: Budget) -> None:
    """Remove a budget, its counters, reservations and alerts."""
    conn = db.session.connection()
    for table in (_RESERVATION, _COUNTER, _ALERT):
        conn.execute(delete(table).where(table.c.budget_id == budget.id))
    db.session.delete(budget)
    db.session.commit()
    budgets.changed()


def get_budget(ref: int | str) -> Budget | None:
    """A budget by id or name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        found = db.session.get(Budget, int(ref))
        if found is not None:
            return found
    return db.session.execute(select(Budget).where(Budget.name == str(ref))).scalar()


def list_budgets() -> list[Budget]:
    """Every budget, by name."""
    return list(db.session.execute(select(Budget).order_by(Budget.name)).scalars())


def recount(conn: Connection, budget: Budget) -> None:
    """Count the committed rows of the current period for ``budget`` anew (its counters
    and reservations start over). Call with the writers held (``lock_writers``)."""
    for table in (_RESERVATION, _COUNTER):
        conn.execute(delete(table).where(table.c.budget_id == budget.id))
    rule = Rule.from_row(budget)
    start, end = period_bounds(rule.period, rule.zone, utcnow())
    c = _RAW.c
    model = func.coalesce(c.requested_model, c.model)
    column = {
        "global": None,
        "user": cast(c.user_id, String),
        "node": c.node_name,
        "source_type": c.source_type,
        "model": model,
    }[rule.scope]
    where = [c.created_at >= start, c.created_at < end]
    sums = (
        func.coalesce(func.sum(c.cost_usd), 0).label("usd"),
        func.coalesce(func.sum(c.total_tokens), 0).label("tokens"),
    )
    if column is None:
        query = select(literal("").label("key"), *sums).where(*where)
    else:
        where.append(column.is_not(None))
        if rule.scope == "source_type":
            where.append(column != "")
        if rule.scope_value is not None:
            where.append(column == rule.scope_value)
        query = select(column.label("key"), *sums).where(*where).group_by(column)
    rows = [
        {
            "budget_id": budget.id,
            "scope_key": row.key,
            "period_start": start,
            "spent_usd": Decimal(row.usd),  # Money-typed: a Decimal on every backend
            "spent_tokens": int(row.tokens),
            "reserved_usd": Decimal(0),
            "reserved_tokens": 0,
            "blocked_calls": 0,
        }
        for row in conn.execute(query)
    ]
    if rows:
        conn.execute(insert(_COUNTER), rows)


# --- status -------------------------------------------------------------------------


def _state(rule: Rule, spent_usd: Decimal, spent_tokens: int, blocked: int) -> str:
    fraction = rule.fraction(spent_usd, spent_tokens)
    if fraction >= 1 or blocked:
        return "exceeded"
    if rule.thresholds and fraction >= rule.thresholds[0]:
        return "warning"
    return "ok"


def _remaining(limit: Any, spent: Any, reserved: Any) -> Any:
    if limit is None:
        return None
    return max(limit - spent - reserved, type(limit)(0))  # Decimal or int, as the limit


def key_status(budget: Budget, now: datetime | None = None) -> list[dict[str, Any]]:
    """The budget's current period per scope key: spent, reserved, remaining, when it
    resets, its state, and the period's spend projected at the burn rate so far. A budget
    for each value lists the values that spent something (most spent first)."""
    now = now or utcnow()
    rule = Rule.from_row(budget)
    start, end = period_bounds(rule.period, rule.zone, now)
    counters = db.session.execute(
        select(_COUNTER).where(_COUNTER.c.budget_id == budget.id, _COUNTER.c.period_start == start)
    ).all()
    found = {row.scope_key: row for row in counters}
    if rule.scope == "global":
        keys = [""]
    elif rule.scope_value is not None:
        keys = [rule.scope_value]
    else:
        keys = sorted(found, key=lambda k: (-found[k].spent_usd, -found[k].spent_tokens, k))
    elapsed = max((now - start).total_seconds(), 1.0)
    length = (end - start).total_seconds()
    scale = Decimal(length) / Decimal(elapsed)
    result = []
    for key in keys:
        row = found.get(key)
        spent_usd = row.spent_usd if row else Decimal(0)
        spent_tokens = row.spent_tokens if row else 0
        reserved_usd = row.reserved_usd if row else Decimal(0)
        reserved_tokens = row.reserved_tokens if row else 0
        blocked = row.blocked_calls if row else 0
        result.append(
            {
                "scope_key": None if rule.scope == "global" else key,
                "period_start": start.isoformat(),
                "resets_at": end.isoformat(),
                "spent_usd": format_money(spent_usd),
                "spent_tokens": spent_tokens,
                "reserved_usd": format_money(reserved_usd),
                "reserved_tokens": reserved_tokens,
                "remaining_usd": format_money(_remaining(rule.limit_usd, spent_usd, reserved_usd)),
                "remaining_tokens": _remaining(rule.limit_tokens, spent_tokens, reserved_tokens),
                "projected_usd": format_money(spent_usd * scale),
                "projected_tokens": int(spent_tokens * scale),
                "blocked_calls": blocked,
                "state": _state(rule, spent_usd, spent_tokens, blocked),
            }
        )
    if rule.scope == "user":
        names = _usernames([int(k) for k in keys])
        for entry in result:
            entry["label"] = names.get(int(entry["scope_key"]))
    return result


def _usernames(ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db.session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {row.id: row.username for row in rows}


_STATES = ("ok", "warning", "exceeded")


def budget_json(budget: Budget, now: datetime | None = None) -> dict[str, Any]:
    """A budget and its status, as the API and ``flask budget list`` show it."""
    status = key_status(budget, now)
    state = max((entry["state"] for entry in status), key=_STATES.index, default="ok")
    return {
        "id": budget.id,
        "name": budget.name,
        "scope": budget.scope,
        "scope_value": budget.scope_value,
        "period": budget.period,
        "tz": budget.tz,
        "limit_usd": format_money(budget.limit_usd),
        "limit_tokens": budget.limit_tokens,
        "action": budget.action,
        "thresholds": [float(t) for t in budget.thresholds or ()],
        "webhook_url": budget.webhook_url,
        "active": budget.active,
        "created_at": budget.created_at.isoformat(),
        "updated_at": budget.updated_at.isoformat(),
        "state": state if budget.active else "inactive",
        "status": status,
    }


def list_alerts(
    budget_id: int | None = None, current: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Alerts fired, newest first; ``current``: only those of their budget's current
    period (what the dashboard's banner shows)."""
    query = (
        select(BudgetAlert, Budget)
        .join(Budget, Budget.id == BudgetAlert.budget_id)
        .order_by(BudgetAlert.fired_at.desc(), BudgetAlert.id.desc())
    )
    if budget_id is not None:
        query = query.where(BudgetAlert.budget_id == budget_id)
    now = utcnow()
    found = []
    for alert, budget in db.session.execute(query):
        rule = Rule.from_row(budget)
        start, end = period_bounds(rule.period, rule.zone, alert.period_start)
        if current and period_bounds(rule.period, rule.zone, now)[0] != start:
            continue
        payload = budgets.alert_payload(
            rule,
            alert.scope_key,
            start,
            end,
            alert.threshold,
            alert.spent_usd,
            alert.spent_tokens,
            alert.fired_at,
        )
        payload["id"] = alert.id
        payload["scope_key"] = None if rule.scope == "global" else alert.scope_key
        payload["delivered_at"] = alert.delivered_at.isoformat() if alert.delivered_at else None
        payload["attempts"] = alert.attempts
        payload["last_error"] = alert.last_error
        found.append(payload)
        if len(found) >= limit:
            break
    return found
