"""Recompute stored costs with today's rules and price data; find the unpriced models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update

from .database import as_utc, db
from .models import LLMUsage
from .pricing import PRICE_COLUMNS, get_pricer
from .rollup import add_delta, apply_deltas, cost_delta, lock_writers, rollup_keys, within

_TABLE = cast(Table, LLMUsage.__table__)
_C = _TABLE.c
_READ = (
    _C.id,
    _C.created_at,
    _C.model,
    _C.provider,
    _C.deployment,
    _C.prompt_tokens,
    _C.completion_tokens,
    _C.cached_tokens,
    _C.cache_write_tokens,
    _C.reasoning_tokens,
    _C["metadata"],
    _C.user_id,
    _C.node_name,
    _C.source_type,
    _C.success,
    *(_C[name] for name in PRICE_COLUMNS),
)
_UPDATE = (
    update(_TABLE)
    .where(_C.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in PRICE_COLUMNS})
)
_ZERO = Decimal(0)


@dataclass
class CostTotals:
    """Rows and cost of a group of rows, before and after repricing."""

    rows: int = 0
    changed: int = 0
    before: Decimal = _ZERO
    after: Decimal = _ZERO
    unpriced_before: int = 0
    unpriced_after: int = 0

    def add(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Count one row with its old and new price columns."""
        self.rows += 1
        self.changed += old != new
        if old["cost_usd"] is None:
            self.unpriced_before += 1
        else:
            self.before += old["cost_usd"]
        if new["cost_usd"] is None:
            self.unpriced_after += 1
        else:
            self.after += new["cost_usd"]


@dataclass
class RepriceReport:
    """What ``reprice`` found and (unless a dry run) wrote."""

    total: CostTotals = field(default_factory=CostTotals)
    by_model: dict[str, CostTotals] = field(default_factory=dict)
    dry_run: bool = False


def count_rows(since: datetime, until: datetime | None = None) -> int:
    """How many rows were created in ``[since, until)``."""
    query = select(func.count()).select_from(_TABLE).where(*_range(since, until))
    with db.engine.connect() as conn:
        return conn.execute(query).scalar_one()


def _range(since: datetime, until: datetime | None) -> list[Any]:
    return within(_C.created_at, as_utc(since), as_utc(until) if until is not None else None)


def reprice(
    since: datetime,
    until: datetime | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
) -> RepriceReport:
    """Price again every row created in ``[since, until)`` and store what changed.

    Works in batches of ``batch_size`` rows, keyset-paginated on ``(created_at, id)``,
    one short transaction each, so any range fits in memory and writers are never held
    up for long. Each batch's cost changes are added to the rollup rows in the same
    transaction. Idempotent: a second run with the same rules changes nothing.
    """
    pricer = get_pricer()
    report = RepriceReport(dry_run=dry_run)
    where = _range(since, until)
    last: tuple[datetime, Any] | None = None
    while True:
        query = select(*_READ).where(*where)
        if last is not None:
            query = query.where(
                or_(_C.created_at > last[0], and_(_C.created_at == last[0], _C.id > last[1]))
            )
        query = query.order_by(_C.created_at, _C.id).limit(batch_size)
        with db.engine.begin() as conn:
            if not dry_run:
                # Before the read: the costs read are the costs the deltas start from, and
                # neither a writer nor another reprice or rebuild moves them meanwhile.
                lock_writers(conn)
            rows = cast("list[Mapping[str, Any]]", conn.execute(query).mappings().all())
            if not rows:
                break
            changes = []
            deltas: dict[tuple[Any, ...], dict[str, Any]] = {}
            for row in rows:
                old = {name: row[name] for name in PRICE_COLUMNS}
                new = pricer.price(row)
                report.total.add(old, new)
                report.by_model.setdefault(row["model"], CostTotals()).add(old, new)
                if new != old:
                    changes.append({"b_id": row["id"], **new})
                    delta = cost_delta(old, new)
                    for key in rollup_keys(row):
                        add_delta(deltas.setdefault(key, {}), delta)
            if changes and not dry_run:
                conn.execute(_UPDATE, changes)
                apply_deltas(conn, deltas)
        last = (rows[-1]["created_at"], rows[-1]["id"])
        if on_batch is not None:
            on_batch(len(rows))
    return report


@dataclass
class MissingPrice:
    """A model with unpriced calls."""

    provider: str | None
    model: str
    deployment: str | None
    calls: int
    first_seen: datetime
    last_seen: datetime
    priced_now: bool  # a rule or the data knows it now: ``reprice`` will price these rows


def missing_prices() -> list[MissingPrice]:
    """Models with unpriced rows (cost NULL), most calls first."""
    calls = func.count().label("calls")
    query = (
        select(
            _C.provider,
            _C.model,
            _C.deployment,
            calls,
            func.min(_C.created_at).label("first_seen"),
            func.max(_C.created_at).label("last_seen"),
        )
        .where(_C.cost_usd.is_(None))
        .group_by(_C.provider, _C.model, _C.deployment)
        .order_by(calls.desc(), _C.model)
    )
    pricer = get_pricer()
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        MissingPrice(
            r.provider,
            r.model,
            r.deployment,
            r.calls,
            as_utc(r.first_seen),
            as_utc(r.last_seen),
            pricer.knows(r.provider, r.model, r.deployment),
        )
        for r in rows
    ]
