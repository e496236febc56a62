"""The detailed usage list: one entry per recorded call, newest first, paged and filtered."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from sqlalchemy import ColumnElement, func, select

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

__all__ = ["MAX_PAGE_SIZE", "get_llm_usage_list", "get_llm_usage_list_from_query"]

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


def _parse_model_filter(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"model must be a string, got {value!r}")
    if "\x00" in value:
        # PostgreSQL rejects NUL in text parameters; no model name contains one.
        raise ValueError("model must not contain NUL characters")
    if len(value) > MAX_MODEL_FILTER:
        raise ValueError(f"model filter is longer than {MAX_MODEL_FILTER} characters")
    return value


def get_llm_usage_list(page: int | str = 1, page_size: int | str = 20,
                       user_id: int | str | None = None, model_filter: str | None = None,
                       success_filter: bool | str | None = None,
                       start_date: DateArg = None, end_date: DateArg = None, *,
                       tz: str | tzinfo | None = None,
                       priced_filter: bool | str | None = None) -> dict[str, Any]:
    """One page of usage rows, newest first, with the total count of matching rows.

    ``model_filter`` is a case-insensitive substring, ``success_filter`` and
    ``priced_filter`` ``"true"`` / ``"false"`` (or a bool; ``priced_filter=False`` finds
    the rows no price source knew); dates as in ``llm_usage_stats``. Bad values raise
    ``ValueError``.
    """
    page = _parse_int(page, "page", 1, 1, MAX_PAGE)
    page_size = _parse_int(page_size, "page_size", 20, 1, MAX_PAGE_SIZE)
    uid = _parse_user_id(user_id)
    model = _parse_model_filter(model_filter)
    success = _parse_bool(success_filter, "success")
    priced = _parse_bool(priced_filter, "priced")
    zone = _parse_tz(tz)
    start = _parse_date(start_date, zone)
    end = _parse_end_date(end_date, zone)
    _check_range(start, end)

    conditions: list[ColumnElement[bool]] = []
    if uid is not None:
        conditions.append(LLMUsage.user_id == uid)
    if model is not None:
        conditions.append(LLMUsage.model.icontains(model, autoescape=True))
    if success is not None:
        conditions.append(LLMUsage.success.is_(success))
    if priced is not None:
        conditions.append(LLMUsage.cost_usd.is_not(None) if priced
                          else LLMUsage.cost_usd.is_(None))
    if start is not None:
        conditions.append(LLMUsage.created_at >= start)
    if end is not None:
        conditions.append(LLMUsage.created_at <= end)

    total = db.session.execute(
        select(func.count()).select_from(LLMUsage).where(*conditions)).scalar_one()
    stmt = (
        select(LLMUsage, User.username)
        .outerjoin(User, User.id == LLMUsage.user_id)
        .where(*conditions)
        # id breaks ties between rows of the same instant so pages never overlap.
        .order_by(LLMUsage.created_at.desc(), LLMUsage.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    results = [_row_dict(row, username) for row, username in db.session.execute(stmt)]
    return {"results": results, "total": int(total), "page": page, "page_size": page_size}


def get_llm_usage_list_from_query(params: Mapping[str, Any]) -> dict[str, Any]:
    """``get_llm_usage_list`` from query parameters.

    Reads ``page``, ``page_size``, ``user_id``, ``model``, ``success``, ``priced``,
    ``start_date``, ``end_date`` and ``tz``; empty values count as absent.
    """
    return get_llm_usage_list(
        page=params.get("page"),
        page_size=params.get("page_size"),
        user_id=params.get("user_id"),
        model_filter=params.get("model"),
        success_filter=params.get("success"),
        start_date=params.get("start_date"),
        end_date=params.get("end_date"),
        tz=params.get("tz"),
        priced_filter=params.get("priced"),
    )


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
