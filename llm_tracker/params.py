"""Parameters as users give them (query strings, CLI options, config, Python calls).

One parser per kind: dates and ranges in a time zone, zones, integers, booleans, text
filters. Blank strings mean absent everywhere (HTML forms send every field). Bad values
raise ``ValueError`` with a message that names the parameter.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from .buckets import wall_edge

DateArg = datetime | date | str | None
# 64-bit ids, as stored; -(2**63) is the rollups' "no user" key (models.NO_USER).
USER_ID_MIN, USER_ID_MAX = -(2**63) + 1, 2**63 - 1
MAX_TEXT_FILTER = 200
_UTC = ZoneInfo("UTC")
_ONE_MICROSECOND = timedelta(microseconds=1)
_DATE_HINT = "use an ISO 8601 date or datetime such as 2026-11-27 or 2026-11-27T08:00:00+08:00"


def is_blank(value: Any) -> bool:
    """True for None and for strings of white space only: an absent parameter."""
    return value is None or (isinstance(value, str) and not value.strip())


def parse_tz(tz: str | tzinfo | None) -> tzinfo:
    """The zone named by ``tz`` (an IANA name or a tzinfo); UTC when blank."""
    if is_blank(tz):
        return _UTC
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ValueError(f"tz must be an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz.strip())
    except (ValueError, KeyError, OSError, TypeError, UnicodeError):
        raise ValueError(
            f"unknown time zone {tz!r}: use an IANA name such as 'Asia/Shanghai' or 'UTC'"
        ) from None


def _date_or_datetime(value: DateArg, name: str) -> datetime | date | None:
    # A date (not a datetime) for date-only input: its meaning depends on start or end.
    if is_blank(value):
        return None
    if isinstance(value, datetime | date):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a date or an ISO 8601 string, got {value!r}")
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid {name} {value!r}: {_DATE_HINT}") from None


def parse_when(
    value: DateArg,
    tz: str | tzinfo | None = None,
    *,
    name: str = "date",
    end: bool = False,
    inclusive: bool = True,
) -> datetime | None:
    """An instant in UTC, or None when blank; naive values are wall-clock times in ``tz``.

    A start (``end=False``) is the value itself, a date its first instant. An end is
    returned exclusive, so ranges are half-open ``[start, end)``: a date-only end covers
    that whole day (its next day's first instant), a datetime end is included when
    ``inclusive`` (one microsecond later) and excluded otherwise.
    """
    zone = parse_tz(tz)
    parsed = _date_or_datetime(value, name)
    if parsed is None:
        return None
    try:
        if not isinstance(parsed, datetime):
            day = datetime(parsed.year, parsed.month, parsed.day)
            return wall_edge(day + timedelta(days=1) if end else day, zone)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        instant = parsed.astimezone(UTC)
        return instant + _ONE_MICROSECOND if end and inclusive else instant
    except (OverflowError, ValueError):
        raise ValueError(f"{name} {value!r} is out of the supported range") from None


def parse_range(
    start_date: DateArg = None, end_date: DateArg = None, tz: str | tzinfo | None = None
) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` in UTC (None: open) from an inclusive ``start_date`` and an
    inclusive ``end_date`` (a date-only end covers that whole day)."""
    start = parse_when(start_date, tz, name="start_date")
    end = parse_when(end_date, tz, name="end_date", end=True)
    if start is not None and end is not None and start >= end:
        last = end - _ONE_MICROSECOND
        raise ValueError(f"start_date ({start.isoformat()}) is after end_date ({last.isoformat()})")
    return start, end


def parse_int(value: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer in ``[low, high]`` (a digit string is accepted); ``default`` when blank."""
    if is_blank(value):
        return default
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_user_id(value: Any) -> int | None:
    """``user_id`` as a 64-bit int (a digit string is accepted); None when blank."""
    if is_blank(value):
        return None
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip()):
        raise ValueError(f"user_id must be an integer, got {value!r}")
    if isinstance(value, str):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"user_id must be an integer, got {value!r}")
    if not USER_ID_MIN <= value <= USER_ID_MAX:
        raise ValueError(f"user_id {value} is out of range")
    return value


def parse_bool(value: Any, name: str) -> bool | None:
    """``"true"`` / ``"false"`` (any case) or a bool; None when blank."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "":
            return None
        if text in ("true", "false"):
            return text == "true"
    raise ValueError(f"{name} must be 'true' or 'false', got {value!r}")


def parse_text(value: Any, name: str) -> str | None:
    """A text filter (a model name or part of one); None when empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if "\x00" in value:
        # PostgreSQL rejects NUL in text parameters; no stored name contains one.
        raise ValueError(f"{name} must not contain NUL characters")
    if len(value) > MAX_TEXT_FILTER:
        raise ValueError(f"{name} filter is longer than {MAX_TEXT_FILTER} characters")
    return value


def describe_errors(messages: Any) -> str:
    """Marshmallow's messages as one line: ``field: problem; field: problem``."""
    if isinstance(messages, dict):
        parts = sorted(messages.items())
        return "; ".join(f"{key}: {describe_errors(value)}" for key, value in parts)
    if isinstance(messages, list):
        return " ".join(describe_errors(m) for m in messages)
    return str(messages)
