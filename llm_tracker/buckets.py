"""Bucket edges of a time series in any IANA zone: local hours, days and months as exact
UTC instants, across every DST change (25-hour days, skipped hours, +05:45 offsets).

Computed in Python, where ``zoneinfo`` knows every zone's rules; the database only sums.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta, tzinfo

# granularity -> the unit of one bucket.
GRANULARITIES = {"day": "hour", "month": "day", "year": "month"}
# A series is one SQL statement with three parameters per bucket; this keeps it under
# SQLite's 32766-parameter limit (10,000 hourly buckets are more than a year).
MAX_BUCKETS = 10_000


def floor_wall(wall: datetime, unit: str) -> datetime:
    """The start of the ``unit`` (hour, day, month) holding the wall-clock time ``wall``."""
    wall = wall.replace(minute=0, second=0, microsecond=0)
    if unit in ("day", "month"):
        wall = wall.replace(hour=0)
    if unit == "month":
        wall = wall.replace(day=1)
    return wall


def step_wall(wall: datetime, unit: str, steps: int) -> datetime:
    """``wall`` moved by ``steps`` units (hours, days or calendar months)."""
    if unit == "hour":
        return wall + timedelta(hours=steps)
    if unit == "day":
        return wall + timedelta(days=steps)
    months = wall.year * 12 + wall.month - 1 + steps
    return wall.replace(year=months // 12, month=months % 12 + 1)


def wall_edges(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The UTC instants at which the local wall-clock time ``wall`` begins.

    Two when the clock goes back over it (both are bucket edges: the 25-hour day), one
    normally, and for a time the clock skips, the instant the gap ends.
    """
    found = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    if found:
        return found
    return [_gap_end(wall, zone)]


def wall_edge(wall: datetime, zone: tzinfo) -> datetime:
    """The first UTC instant whose local time is ``wall`` or later."""
    return wall_edges(wall, zone)[0]


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    # ``wall`` was skipped: with the offset after the jump it maps before the transition,
    # with the offset before it maps after; bisect the seconds between for the transition.
    lo = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    hi = int(wall.replace(tzinfo=zone, fold=0).astimezone(UTC).timestamp())
    if lo > hi:
        lo, hi = hi, lo
    while lo < hi:
        mid = (lo + hi) // 2
        local = datetime.fromtimestamp(mid, UTC).astimezone(zone).replace(tzinfo=None)
        if local >= wall:
            hi = mid
        else:
            lo = mid + 1
    return datetime.fromtimestamp(hi, UTC)


def _units_between(start_wall: datetime, end_wall: datetime, unit: str) -> int:
    if unit == "hour":
        return int((end_wall - start_wall).total_seconds() // 3600)
    if unit == "day":
        return (end_wall - start_wall).days
    return (end_wall.year - start_wall.year) * 12 + end_wall.month - start_wall.month


def bucket_edges(start: datetime, end: datetime, unit: str, zone: tzinfo) -> list[datetime]:
    """Sorted UTC edges of the buckets that ``[start, end)`` touches: bucket i is
    ``[edges[i], edges[i+1])``. ``ValueError`` beyond ``MAX_BUCKETS`` buckets."""
    last_instant = max(end - timedelta(microseconds=1), start)
    first = floor_wall(start.astimezone(zone).replace(tzinfo=None), unit)
    last = floor_wall(last_instant.astimezone(zone).replace(tzinfo=None), unit)
    if _units_between(first, last, unit) >= MAX_BUCKETS:
        raise ValueError(
            f"the range holds more than {MAX_BUCKETS} {unit}ly buckets: "
            "narrow the dates or use a coarser granularity"
        )
    edges: set[datetime] = set()
    wall = step_wall(first, unit, -1)
    stop = step_wall(last, unit, 2)
    while wall < stop:
        edges.update(wall_edges(wall, zone))
        wall = step_wall(wall, unit, 1)
    ordered = sorted(edges)
    lo = max(bisect.bisect_right(ordered, start) - 1, 0)
    hi = max(bisect.bisect_right(ordered, last_instant) - 1, lo)
    return ordered[lo : hi + 2]


def bucket_start(instant: datetime, unit: str, zone: tzinfo) -> datetime:
    """The first instant of the bucket that holds ``instant``."""
    wall = floor_wall(instant.astimezone(zone).replace(tzinfo=None), unit)
    edges = [edge for edge in wall_edges(wall, zone) if edge <= instant]
    return max(edges) if edges else instant


def default_start(end: datetime, unit: str, zone: tzinfo) -> datetime:
    """The start of a default window ending with the bucket that holds ``end``: 24 hours,
    31 days or 12 months of whole buckets."""
    if unit == "hour":
        return bucket_start(end - timedelta(hours=23), unit, zone)
    wall = floor_wall(end.astimezone(zone).replace(tzinfo=None), unit)
    return wall_edge(step_wall(wall, unit, -30 if unit == "day" else -11), zone)
