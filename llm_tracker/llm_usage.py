"""The detailed usage list: one entry per recorded call, newest first, paged and filtered."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, union_all

from . import llm_usage_stats
from .database import db
from .llm_usage_stats import (
    DateArg,
    _check_range,
    _parse_date,
    _parse_end_date,
    _parse_tz,
    _parse_user_id,
)
from .models import LLMUsage, User
from .pricing import format_money
from .rollup import bucket_span, pieces

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
MAX_MODEL_FILTER = 200


def _parse_int(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _parse_bool(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "":
            return None
        if text in ("true", "false"):
            return text == "true"
    raise ValueError(f"{name} must be 'true' or 'false', got {value!r}")


def _parse_model_filter(value: Any, name: str = "model") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if "\x00" in value:
        # PostgreSQL rejects NUL in text parameters; no model name contains one.
        raise ValueError(f"{name} must not contain NUL characters")
    if len(value) > MAX_MODEL_FILTER:
        raise ValueError(f"{name} filter is longer than {MAX_MODEL_FILTER} characters")
    return value


@dataclass(frozen=True)
class _Filters:
    user_id: int | None
    model: str | None
    success: bool | None
    priced: bool | None
    start: datetime | None
    end: datetime | None
    model_exact: str | None = None


def _parse_filters(user_id: int | str | None = None, model_filter: str | None = None,
                   success_filter: bool | str | None = None, start_date: DateArg = None,
                   end_date: DateArg = None, *, tz: str | tzinfo | None = None,
                   priced_filter: bool | str | None = None,
                   model_exact: str | None = None) -> _Filters:
    uid = _parse_user_id(user_id)
    model = _parse_model_filter(model_filter)
    exact = _parse_model_filter(model_exact, "model_exact")
    success = _parse_bool(success_filter, "success")
    priced = _parse_bool(priced_filter, "priced")
    zone = _parse_tz(tz)
    start = _parse_date(start_date, zone)
    end = _parse_end_date(end_date, zone)
    _check_range(start, end)
    return _Filters(uid, model, success, priced, start, end, exact)


def _key_conditions(table: Any, f: _Filters,
                    models: list[str] | None) -> list[ColumnElement[bool]]:
    # The user, model and success filters, on raw rows or on a rollup level: their key
    # columns share names (a rollup's NULL-user sentinel never equals a filtered id).
    conditions: list[ColumnElement[bool]] = []
    if f.user_id is not None:
        conditions.append(table.user_id == f.user_id)
    if models is not None:
        conditions.append(table.model.in_(models))
    elif f.model is not None:
        conditions.append(table.model.icontains(f.model, autoescape=True))
    if f.model_exact is not None:
        # Beside the substring, not instead of it: both given means both must hold.
        conditions.append(table.model == f.model_exact)
    if f.success is not None:
        conditions.append(table.success.is_(f.success))
    return conditions


def _conditions(f: _Filters, models: list[str] | None = None) -> list[ColumnElement[bool]]:
    """WHERE conditions on raw rows; ``models``: the model filter resolved to exact names."""
    conditions = _key_conditions(LLMUsage, f, models)
    if f.priced is not None:
        conditions.append(LLMUsage.cost_usd.is_not(None) if f.priced
                          else LLMUsage.cost_usd.is_(None))
    if f.start is not None:
        conditions.append(LLMUsage.created_at >= f.start)
    if f.end is not None:
        conditions.append(LLMUsage.created_at <= f.end)
    return conditions


def usage_filters(user_id: int | str | None = None, model_filter: str | None = None,
                  success_filter: bool | str | None = None, start_date: DateArg = None,
                  end_date: DateArg = None, *, tz: str | tzinfo | None = None,
                  priced_filter: bool | str | None = None,
                  model_exact: str | None = None) -> list[ColumnElement[bool]]:
    """The WHERE conditions of the list's filters; bad values raise ``ValueError``."""
    return _conditions(_parse_filters(user_id, model_filter, success_filter, start_date,
                                      end_date, tz=tz, priced_filter=priced_filter,
                                      model_exact=model_exact))


def _matching_models(substring: str) -> list[str]:
    """The distinct model names containing ``substring`` (case-insensitive), sorted.

    A recursive skip scan of the (model, created_at) index: one index probe per distinct
    model, however many rows there are. The match is the same SQL as the raw filter's.
    """
    names = select(func.min(LLMUsage.model).label("model")).cte("names", recursive=True)
    following = (select(func.min(LLMUsage.model))
                 .where(LLMUsage.model > names.c.model).scalar_subquery())
    names = names.union_all(select(following).where(names.c.model.is_not(None)))
    stmt = (select(names.c.model).where(names.c.model.is_not(None))
            .where(names.c.model.icontains(substring, autoescape=True)))
    return sorted(db.session.execute(stmt).scalars())


def _count(f: _Filters, models: list[str] | None) -> int:
    """COUNT(*) of the matching rows: rollup sums for the whole days and 15-minute buckets
    of the range, raw rows only for its ragged edges (as the statistics do), in one
    statement."""
    raw_count = select(func.count()).select_from(LLMUsage).where(*_conditions(f, models))
    if llm_usage_stats._RAW_SCAN.get():
        return db.session.execute(raw_count).scalar_one()
    try:
        found = pieces(f.start,
                       f.end + llm_usage_stats._ONE_MICROSECOND if f.end is not None else None)
    except OverflowError:  # a bound within a day of datetime's limits
        return db.session.execute(raw_count).scalar_one()
    parts: list[Select[Any]] = []
    for level, lo, hi in found:
        if level is None:
            where = [*_conditions(replace(f, start=None, end=None), models),
                     LLMUsage.created_at >= lo, LLMUsage.created_at < hi]
            parts.append(select(func.count().label("n")).select_from(LLMUsage).where(*where))
            continue
        r = level.model
        where = [*bucket_span(level, lo, hi), *_key_conditions(r, f, models)]
        counted = {None: r.calls, True: r.calls - r.unpriced_calls,
                   False: r.unpriced_calls}[f.priced]
        parts.append(select(func.sum(counted).label("n")).where(*where))
    stmt = union_all(*parts) if len(parts) > 1 else parts[0]
    return sum(int(n or 0) for n in db.session.execute(stmt).scalars())


def _rows_stmt(conditions: list[ColumnElement[bool]]) -> Select[Any]:
    return (
        select(LLMUsage, User.username)
        .outerjoin(User, User.id == LLMUsage.user_id)
        .where(*conditions)
        # id breaks ties between rows of the same instant so pages never overlap.
        .order_by(LLMUsage.created_at.desc(), LLMUsage.id.desc())
    )


def get_llm_usage_list(page: int | str = 1, page_size: int | str = 20,
                       user_id: int | str | None = None, model_filter: str | None = None,
                       success_filter: bool | str | None = None,
                       start_date: DateArg = None, end_date: DateArg = None, *,
                       tz: str | tzinfo | None = None,
                       priced_filter: bool | str | None = None,
                       model_exact: str | None = None) -> dict[str, Any]:
    """One page of usage rows, newest first, with the total count of matching rows.

    ``model_filter`` is a case-insensitive substring, ``model_exact`` one model name
    matched exactly (case and all; both given, a row must match both), ``success_filter`` and
    ``priced_filter`` ``"true"`` / ``"false"`` (or a bool; ``priced_filter=False`` finds
    the rows no price source knew); dates as in ``llm_usage_stats``. Bad values raise
    ``ValueError``.
    """
    page = _parse_int(page, "page", 1, 1, MAX_PAGE)
    page_size = _parse_int(page_size, "page_size", 20, 1, MAX_PAGE_SIZE)
    f = _parse_filters(user_id, model_filter, success_filter, start_date, end_date,
                       tz=tz, priced_filter=priced_filter, model_exact=model_exact)
    models = None
    if f.model is not None:
        # Exact names, so the (model, created_at) index serves the page and the count.
        models = _matching_models(f.model)
        if not models:
            return {"results": [], "total": 0, "page": page, "page_size": page_size}
    conditions = _conditions(f, models)
    total = _count(f, models)
    stmt = _rows_stmt(conditions).limit(page_size).offset((page - 1) * page_size)
    results = [_row_dict(row, username) for row, username in db.session.execute(stmt)]
    return {"results": results, "total": int(total), "page": page, "page_size": page_size}


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
    }


def get_llm_usage_list_from_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """``get_llm_usage_list`` from query parameters.

    Reads ``page``, ``page_size``, ``user_id``, ``model``, ``model_exact``, ``success``,
    ``priced``, ``start_date``, ``end_date`` and ``tz``; empty values count as absent.
    """
    return get_llm_usage_list(page=params.get("page"), page_size=params.get("page_size"),
                              **_filter_args(params))


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


CSV_COLUMNS = (
    "id", "created_at", "user_id", "username", "model", "requested_model", "deployment",
    "provider", "node_name", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "input_cost_usd",
    "output_cost_usd", "cache_savings_usd", "price_source", "latency_ms", "success", "error",
    "metadata",
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
            data["metadata"] = json.dumps(data["metadata"], ensure_ascii=False,
                                          sort_keys=True)
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


def _row_dict(row: LLMUsage, username: str | None) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "user_id": row.user_id,
        "username": username,
        "model": row.model,
        "requested_model": row.requested_model,
        "deployment": row.deployment,
        "provider": row.provider,
        "node_name": row.node_name,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.total_tokens,
        "cached_tokens": row.cached_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost_usd": format_money(row.cost_usd),
        "input_cost_usd": format_money(row.input_cost_usd),
        "output_cost_usd": format_money(row.output_cost_usd),
        "cache_savings_usd": format_money(row.cache_savings_usd),
        "price_source": row.price_source,
        "latency_ms": row.latency_ms,
        "success": row.success,
        "error": row.error,
        "created_at": row.created_at.isoformat(),
        "metadata": row.meta,
    }
