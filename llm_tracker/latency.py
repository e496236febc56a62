"""The latency histogram the rollups keep: fixed log-spaced bins, percentiles from them.

Bin ``k`` holds the calls whose ``latency_ms`` is in ``[LATENCY_EDGES[k],
LATENCY_EDGES[k + 1])``. Below 12 ms every millisecond is its own bin; from there each bin
is at most 18 % wider than the one before, up to the column's 2**31 - 1 ms. A percentile
is the nearest-rank call's bin, reported as the geometric middle of the bin's values, so
it is within 10 % of the exact nearest-rank value (``tests/test_latency.py`` checks every
bin). The edges are part of the stored data: changing them needs a rollup rebuild.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import case, literal_column
from sqlalchemy.sql import ColumnElement

__all__ = ["LATENCY_BINS", "LATENCY_EDGES", "latency_bin", "latency_bin_sql", "percentile"]


def _edges() -> tuple[int, ...]:
    # Integer steps (no float pow), so every platform computes the same edges.
    edges = [0, 1]
    while edges[-1] < 2**31:
        last = edges[-1]
        edges.append(max(last + 1, last * 118 // 100))
    return tuple(edges)


LATENCY_EDGES = _edges()
LATENCY_BINS = len(LATENCY_EDGES) - 1


def latency_bin(latency_ms: int) -> int:
    """The bin holding ``latency_ms`` (0 to 2**31 - 1)."""
    return bisect.bisect_right(LATENCY_EDGES, latency_ms) - 1


def bin_value(k: int) -> int:
    """The value a percentile falling in bin ``k`` reports: its values' geometric middle."""
    low, high = LATENCY_EDGES[k], LATENCY_EDGES[k + 1] - 1
    return round(math.sqrt(low * high))


def latency_bin_sql(latency_ms: Any) -> ColumnElement[Any]:
    """SQL for ``latency_bin``: a balanced tree of CASEs, 7 comparisons a row."""

    def node(lo: int, hi: int) -> ColumnElement[Any]:
        if hi - lo == 1:
            return literal_column(str(lo))
        mid = (lo + hi) // 2
        # Literal constants, so the expression compiles identically in SELECT and GROUP BY.
        return case(
            (latency_ms < literal_column(str(LATENCY_EDGES[mid])), node(lo, mid)),
            else_=node(mid, hi),
        )

    return node(0, LATENCY_BINS)


def percentile(histogram: Mapping[int, int], percent: int) -> int | None:
    """The ``percent``-th nearest-rank latency of a ``bin -> calls`` histogram; None if empty."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, -(-total * percent // 100))  # ceil, in integers
    seen = 0
    for k in sorted(histogram):
        seen += histogram[k]
        if seen >= rank:
            return bin_value(k)
    raise AssertionError("unreachable: the ranks add up to the total")
