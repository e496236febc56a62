"""The latency histogram: every bin's reported value is within 10 % of the values in it, so
percentiles are too; streamed runs record their time to the first token."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from llm_tracker.latency import LATENCY_BINS, LATENCY_EDGES, bin_value, latency_bin, percentile


def test_bins_cover_the_column_and_report_within_ten_percent():
    assert LATENCY_EDGES[0] == 0 and LATENCY_EDGES[-1] > 2**31 - 1
    assert latency_bin(2**31 - 1) == LATENCY_BINS - 1
    for k in range(LATENCY_BINS):
        low, high = LATENCY_EDGES[k], LATENCY_EDGES[k + 1] - 1
        assert latency_bin(low) == latency_bin(high) == k
        value = bin_value(k)
        # The error is largest at the bin's two ends.
        for exact in (low, high):
            assert abs(value - exact) <= 0.10 * exact, (k, low, high, value)
    # Below 13 ms each millisecond is its own bin: exact.
    assert [bin_value(latency_bin(ms)) for ms in range(13)] == list(range(13))


def _nearest_rank(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * percent / 100)) - 1]


@given(
    st.lists(
        st.integers(0, 2**31 - 1) | st.integers(0, 5000) | st.sampled_from([0, 12, 13, 999]),
        min_size=1,
        max_size=200,
    ),
    st.sampled_from([1, 50, 90, 95, 99, 100]),
)
def test_percentiles_are_within_ten_percent_of_the_exact_nearest_rank(values, percent):
    histogram: dict[int, int] = {}
    for ms in values:
        histogram[latency_bin(ms)] = histogram.get(latency_bin(ms), 0) + 1
    exact = _nearest_rank(values, percent)
    found = percentile(histogram, percent)
    assert found is not None
    assert abs(found - exact) <= 0.10 * exact
    # The estimate is the exact value's own bin.
    assert latency_bin(found) == latency_bin(exact)


def test_empty_histogram_has_no_percentile():
    assert percentile({}, 50) is None
    assert percentile({3: 0}, 95) is None
