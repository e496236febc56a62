"""The list's total comes from rollups for whole 15-minute buckets and raw rows for the
ragged edges; on random data and filters it equals COUNT(*), and the page is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from support.helpers import clear_usage

from llm_tracker import LLMUsage, db, record_usage
from llm_tracker.llm_usage import get_llm_usage_list, usage_filters
from llm_tracker.llm_usage_stats import raw_scan

BASE = datetime(2026, 3, 7, 22, tzinfo=UTC)
MINUTES = 3 * 24 * 60

rows = st.lists(
    st.fixed_dictionaries(
        {
            "minute": st.integers(0, MINUTES),
            "micro": st.sampled_from([0, 1, 999_999]),
            "model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "acme-50%_off", "Acme-Y"]),
            "user_id": st.sampled_from([None, 1, 2]),
            "success": st.booleans(),
        }
    ),
    max_size=30,
)
bound = st.none() | st.fixed_dictionaries(
    {
        "minute": st.integers(-30, MINUTES + 30),
        "micro": st.sampled_from([0, 1, 999_999]),
        "form": st.sampled_from(["aware", "naive"]),
        "row": st.none() | st.integers(0, 29),
    }
)
filters = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.sampled_from([None, 1, 2, 9]),
            "model_filter": st.sampled_from([None, "mini", "GPT", "acme", "50%", "_", "y", "zzz"]),
            "model_exact": st.sampled_from(
                [None, None, "gpt-4o-mini", "gpt-4o", "GPT-4o", "acme-50%_off", "Acme-Y", "acme-y"]
            ),
            "success_filter": st.sampled_from([None, "true", "false"]),
            "priced_filter": st.sampled_from([None, True, False]),
            "start": bound,
            "end": bound,
            "tz": st.sampled_from(["UTC", "Asia/Kathmandu", "America/New_York"]),
            "page_size": st.sampled_from([1, 5, 200]),
        }
    ),
    min_size=1,
    max_size=4,
)


def _instant(spec, data):
    if spec is None:
        return None
    if spec["row"] is not None and data:
        r = data[spec["row"] % len(data)]
        return BASE + timedelta(minutes=r["minute"], microseconds=r["micro"])
    return BASE + timedelta(minutes=spec["minute"], microseconds=spec["micro"])


def _range(q, data):
    """Start and end as ISO strings, in order: aware, or naive (read in the zone)."""
    start, end = _instant(q["start"], data), _instant(q["end"], data)
    if start is not None and end is not None and start > end:
        start, end = end, start
    texts = []
    for spec, instant in ((q["start"], start), (q["end"], end)):
        if instant is None:
            texts.append(None)
        elif spec["form"] == "aware":
            texts.append(instant.isoformat())
        else:
            texts.append(instant.astimezone(_zone(q["tz"])).replace(tzinfo=None).isoformat())
    return texts


def _zone(name):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=rows, asked=filters)
def test_list_total_equals_count(app, data, asked):
    with app.app_context():
        clear_usage()
        for r in data:
            record_usage(
                r["model"],
                10,
                1,
                user_id=r["user_id"],
                success=r["success"],
                created_at=BASE + timedelta(minutes=r["minute"], microseconds=r["micro"]),
            )
        for q in asked:
            args = {
                key: q[key]
                for key in (
                    "user_id",
                    "model_filter",
                    "model_exact",
                    "success_filter",
                    "priced_filter",
                    "tz",
                    "page_size",
                )
            }
            args["start_date"], args["end_date"] = _range(q, data)
            try:
                conditions = usage_filters(**{k: v for k, v in args.items() if k != "page_size"})
            except ValueError:  # a naive end in a DST gap can fall before the start
                continue
            count = db.session.execute(
                select(func.count()).select_from(LLMUsage).where(*conditions)
            ).scalar_one()
            listed = get_llm_usage_list(**args)
            assert listed["total"] == count
            with raw_scan():
                assert get_llm_usage_list(**args) == listed
