"""The detailed usage list: one entry per recorded call, newest first, paged and filtered."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from .database import db
from .models import LLMUsage, User
from .params import (
    MAX_TEXT_FILTER,
    DateArg,
    parse_bool,
    parse_int,
    parse_range,
    parse_text,
    parse_user_id,
)
from .pricing import format_money
from .query import Filters, aggregate
from .rollup import within

__all__ = [
    "CSV_COLUMNS",
    "MAX_PAGE_SIZE",
    "get_llm_usage",
    "get_llm_usage_list",
    "get_llm_usage_list_from_query",
    "iter_llm_usage_csv",
    "usage_filters",
]

MAX_PAGE_SIZE = 200
# Keeps OFFSET (page * page_size) well inside a 64-bit integer on every backend.
MAX_PAGE = 2**31 - 1
MAX_MODEL_FILTER = MAX_TEXT_FILTER


@dataclass(frozen=True)
class _Query:
    filters: Filters
    start: datetime | None
    end: datetime | None  # exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        """WHERE conditions on raw rows."""
        return [
            *self.filters.conditions(LLMUsage),
            *within(LLMUsage.created_at, self.start, self.end),
        ]


def _parse_query(
    user_id: int | str | None = None,
    model_filter: str | None = None,
    success_filter: bool | str | None = None,
    start_date: DateArg = None,
    end_date: DateArg = None,
    *,
    tz: str | tzinfo | None = None,
    priced_filter: bool | str | None = None,
    model_exact: str | None = None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
) -> _Query:
    filters = Filters(
        user_id=parse_user_id(user_id),
        node_name=parse_text(node_name, "node_name"),
        source_type=parse_text(source_type, "source_type"),
        provider=parse_text(provider, "provider"),
        model=parse_text(model_filter, "model"),
        model_exact=parse_text(model_exact, "model_exact"),
        success=parse_bool(success_filter, "success"),
        priced=parse_bool(priced_filter, "priced"),
    )
    start, end = parse_range(start_date, end_date, tz)
    return _Query(filters, start, end)


def usage_filters(
    user_id: int | str | None = None,
    model_filter: str | None = None,
    success_filter: bool | str | None = None,
    start_date: DateArg = None,
    end_date: DateArg = None,
    *,
    tz: str | tzinfo | None = None,
    priced_filter: bool | str | None = None,
    model_exact: str | None = None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the list's filters; bad values raise ``ValueError``."""
    return _parse_query(
        user_id,
        model_filter,
        success_filter,
        start_date,
        end_date,
        tz=tz,
        priced_filter=priced_filter,
        model_exact=model_exact,
        node_name=node_name,
        source_type=source_type,
        provider=provider,
    ).conditions()


def _matching_models(substring: str) -> list[str]:
    """The distinct model names containing ``substring`` (case-insensitive), sorted.

    A recursive skip scan of the (model, created_at) index: one index probe per distinct
    model, however many rows there are. The match is the same SQL as the raw filter's.
    """
    names = select(func.min(LLMUsage.model).label("model")).cte("names", recursive=True)
    following = (
        select(func.min(LLMUsage.model)).where(LLMUsage.model > names.c.model).scalar_subquery()
    )
    names = names.union_all(select(following).where(names.c.model.is_not(None)))
    stmt = (
        select(names.c.model)
        .where(names.c.model.is_not(None))
        .where(names.c.model.icontains(substring, autoescape=True))
    )
    return sorted(db.session.execute(stmt).scalars())


def _rows_stmt(conditions: list[ColumnElement[bool]]) -> Select[LLMUsage, str | None]:
    return (
        select(LLMUsage, User.username)
        .outerjoin(User, User.id == LLMUsage.user_id)
        .where(*conditions)
        # id breaks ties between rows of the same instant so pages never overlap.
        .order_by(LLMUsage.created_at.desc(), LLMUsage.id.desc())
    )


def get_llm_usage_list(
    page: int | str | None = 1,
    page_size: int | str | None = 20,
    user_id: int | str | None = None,
    model_filter: str | None = None,
    success_filter: bool | str | None = None,
    start_date: DateArg = None,
    end_date: DateArg = None,
    *,
    tz: str | tzinfo | None = None,
    priced_filter: bool | str | None = None,
    model_exact: str | None = None,
    node_name: str | None = None,
    source_type: str | None = None,
    provider: str | None = None,
) -> dict[str, Any]:
    """One page of usage rows, newest first, with the total count of matching rows.

    ``model_filter`` is a case-insensitive substring, ``model_exact`` one model name
    matched exactly (case and all; both given, a row must match both), ``node_name``,
    ``source_type`` and ``provider`` exact values, ``success_filter`` and
    ``priced_filter`` ``"true"`` / ``"false"`` (or a bool; ``priced_filter=False`` finds
    the rows no price source knew); dates as in ``llm_usage_stats``. Bad values raise
    ``ValueError``.
    """
    number = parse_int(page, "page", 1, 1, MAX_PAGE)
    size = parse_int(page_size, "page_size", 20, 1, MAX_PAGE_SIZE)
    query = _parse_query(
        user_id,
        model_filter,
        success_filter,
        start_date,
        end_date,
        tz=tz,
        priced_filter=priced_filter,
        model_exact=model_exact,
        node_name=node_name,
        source_type=source_type,
        provider=provider,
    )
    if query.filters.model is not None:
        # Exact names, so the (model, created_at) index serves the page and the count.
        models = _matching_models(query.filters.model)
        if not models:
            return {"results": [], "total": 0, "page": number, "page_size": size}
        query = replace(query, filters=replace(query.filters, models=tuple(models)))
    # Rollup sums for the whole days and 15-minute buckets, raw rows for the edges.
    found = aggregate([(query.start, query.end)], query.filters, count_only=True)
    total = found[(0, None)].calls if (0, None) in found else 0
    stmt = _rows_stmt(query.conditions()).limit(size).offset((number - 1) * size)
    results = [_row_dict(row, username) for row, username in db.session.execute(stmt)]
    return {"results": results, "total": total, "page": number, "page_size": size}


def _filter_args(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "user_id": params.get("user_id"),
        "model_filter": params.get("model"),
        "success_filter": params.get("success"),
        "start_date": params.get("start_date"),
        "end_date": params.get("end_date"),
        "tz": params.get("tz"),
        "priced_filter": params.get("priced"),
        "model_exact": params.get("model_exact"),
        "node_name": params.get("node_name"),
        "source_type": params.get("source_type"),
        "provider": params.get("provider"),
    }


def get_llm_usage_list_from_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """``get_llm_usage_list`` from query parameters.

    Reads ``page``, ``page_size``, ``user_id``, ``model``, ``model_exact``, ``node_name``,
    ``source_type``, ``provider``, ``success``, ``priced``, ``start_date``, ``end_date`` and
    ``tz``; empty values count as absent.
    """
    return get_llm_usage_list(
        page=params.get("page"), page_size=params.get("page_size"), **_filter_args(params)
    )


def get_llm_usage(usage_id: str | uuid.UUID) -> dict[str, Any] | None:
    """One usage row as in the list (with ``username``), or None when there is none."""
    try:
        key = usage_id if isinstance(usage_id, uuid.UUID) else uuid.UUID(str(usage_id))
    except ValueError:
        return None
    found = db.session.execute(
        select(LLMUsage, User.username)
        .outerjoin(User, User.id == LLMUsage.user_id)
        .where(LLMUsage.id == key)
    ).first()
    return _row_dict(*found) if found else None


# Every column but the idempotency key, in the model's order, with the user's name beside
# the id (the second release's columns come after metadata, so the first release's header
# is this one's beginning).
_COLUMNS = tuple(col.key for col in LLMUsage.__table__.c if col.key != "run_id")
_ATTRIBUTES = {
    col.key: attr.key for attr in LLMUsage.__mapper__.column_attrs for col in attr.columns
}
CSV_COLUMNS = tuple(
    name
    for column in _COLUMNS
    for name in ((column, "username") if column == "user_id" else (column,))
)
_CSV_BATCH = 1000


def iter_llm_usage_csv(params: Mapping[str, Any]) -> Iterator[str]:
    """The filtered list (query parameters as for the list, no paging) as CSV text chunks.

    Filters are checked before the first chunk, so bad values raise ``ValueError`` on the
    call, not mid-stream. Rows are fetched in batches, so memory stays flat at any size.
    """
    conditions = usage_filters(**_filter_args(params))
    return _csv_chunks(conditions)


def _csv_chunks(conditions: list[ColumnElement[bool]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    stmt = _rows_stmt(conditions).execution_options(yield_per=_CSV_BATCH)
    for partition in db.session.execute(stmt).partitions():
        for row, username in partition:
            data = _row_dict(row, username)
            data["metadata"] = json.dumps(data["metadata"], ensure_ascii=False, sort_keys=True)
            writer.writerow([_csv_cell(data[key]) for key in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        # The session's identity map holds rows weakly: written ones are freed.
        buffer.truncate()
    yield buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # A spreadsheet runs a cell that starts with = + - @ as a formula; an error message or a
    # model name is text, so it is quoted as text (OWASP's CSV injection advice).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_money(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _row_dict(row: LLMUsage, username: str | None) -> dict[str, Any]:
    found = {column: _json_value(getattr(row, _ATTRIBUTES[column])) for column in _COLUMNS}
    found["username"] = username
    return found
