"""llm_usage: the paged, filtered list of usage rows on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from conftest import create_test_user
from support.helpers import utc
from werkzeug.datastructures import MultiDict

from llm_tracker import flush, record_usage
from llm_tracker.llm_usage import get_llm_usage_list, get_llm_usage_list_from_query
from llm_tracker.llm_usage_stats import raw_scan

pytestmark = pytest.mark.contract


@pytest.fixture
def rows(app):
    """Five rows; user 1 is alice, user 2 exists in no user table; newest last."""
    alice = create_test_user(app, "alice", "pw")
    assert alice == 1
    with app.app_context():
        made = [
            record_usage(
                "gpt-4o-mini-2024-07-18",
                100,
                50,
                user_id=1,
                provider="openai",
                metadata={"source_type": "api", "doc": "a.pdf"},
                node_name="interpret",
                created_at=utc(2026, 1, 10, 8, 0),
            ),
            record_usage("GPT-4o", 1000, 200, user_id=2, created_at=utc(2026, 1, 10, 23, 59, 59)),
            record_usage(
                "gemini-2.5-flash",
                20,
                0,
                success=False,
                error="RateLimitError: 429",
                user_id=1,
                created_at=utc(2026, 1, 11, 0, 0),
            ),
            record_usage("acme-50%-off", 5, 5, created_at=utc(2026, 1, 12, 12, 0)),
            record_usage(
                "o3-mini",
                300,
                400,
                reasoning_tokens=250,
                user_id=1,
                created_at=utc(2026, 1, 13, 9, 0),
            ),
        ]
        flush()
    return [str(row.id) for row in made]


def models(data):
    return [r["model"] for r in data["results"]]


def test_newest_first_with_every_field(rows, app_ctx):
    ids = rows
    data = get_llm_usage_list()
    assert (data["total"], data["page"], data["page_size"]) == (5, 1, 20)
    assert models(data) == [
        "o3-mini",
        "acme-50%-off",
        "gemini-2.5-flash",
        "GPT-4o",
        "gpt-4o-mini-2024-07-18",
    ]
    assert [r["id"] for r in data["results"]] == ids[::-1]
    assert data["results"][4] == {
        "id": ids[0],
        "user_id": 1,
        "username": "alice",
        "model": "gpt-4o-mini-2024-07-18",
        "requested_model": None,
        "deployment": None,
        "provider": "openai",
        "node_name": "interpret",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        # 100 input at 0.15 and 50 output at 0.60 USD per million
        "cost_usd": "0.000045000",
        "input_cost_usd": "0.000015000",
        "output_cost_usd": "0.000030000",
        "cache_savings_usd": "0.000000000",
        "price_source": "genai-prices 0.2.3: openai/gpt-4o-mini",
        "latency_ms": None,
        "success": True,
        "error": None,
        "created_at": "2026-01-10T08:00:00+00:00",
        "metadata": {"source_type": "api", "doc": "a.pdf", "node_name": "interpret"},
        # The second release's columns: source_type from the metadata, no stream.
        "source_type": "api",
        "ttft_ms": None,
    }
    failed = data["results"][2]
    assert (failed["success"], failed["error"]) == (False, "RateLimitError: 429")
    # A user id no user has, and no user at all: username is null.
    assert (data["results"][3]["user_id"], data["results"][3]["username"]) == (2, None)
    assert (data["results"][1]["user_id"], data["results"][1]["username"]) == (None, None)


def test_paging(rows, app_ctx):
    page2 = get_llm_usage_list(page=2, page_size=2)
    assert (page2["total"], page2["page"], page2["page_size"]) == (5, 2, 2)
    assert models(page2) == ["gemini-2.5-flash", "GPT-4o"]
    assert models(get_llm_usage_list(page="3", page_size="2")) == ["gpt-4o-mini-2024-07-18"]
    beyond = get_llm_usage_list(page=4, page_size=2)
    assert (beyond["results"], beyond["total"]) == ([], 5)
    assert len(get_llm_usage_list(page_size=200)["results"]) == 5


def test_same_instant_rows_page_without_overlap(app_ctx):
    when = utc(2026, 2, 1, 12, 0)
    ids = [str(record_usage("m", 1, created_at=when).id) for _ in range(5)]
    flush()
    pages = [get_llm_usage_list(page=p, page_size=2)["results"] for p in (1, 2, 3)]
    seen = [r["id"] for page in pages for r in page]
    assert seen == sorted(ids, reverse=True)


def test_filters(rows, app_ctx):
    assert models(get_llm_usage_list(model_filter="GPT-4O")) == ["GPT-4o", "gpt-4o-mini-2024-07-18"]
    # LIKE wildcards in the filter are literal characters.
    assert models(get_llm_usage_list(model_filter="%")) == ["acme-50%-off"]
    assert models(get_llm_usage_list(model_filter="_")) == []
    assert models(get_llm_usage_list(success_filter="false")) == ["gemini-2.5-flash"]
    assert get_llm_usage_list(success_filter="TRUE")["total"] == 4
    assert get_llm_usage_list(success_filter=True)["total"] == 4
    assert get_llm_usage_list(success_filter=False)["total"] == 1
    assert models(get_llm_usage_list(user_id=1)) == [
        "o3-mini",
        "gemini-2.5-flash",
        "gpt-4o-mini-2024-07-18",
    ]
    assert get_llm_usage_list(user_id="2")["total"] == 1
    both = get_llm_usage_list(user_id=1, model_filter="mini", success_filter="true")
    assert models(both) == ["o3-mini", "gpt-4o-mini-2024-07-18"]


def test_model_exact_filter(rows, app_ctx):
    # The substring finds two models for "gpt-4o"; the exact name finds one.
    assert models(get_llm_usage_list(model_filter="gpt-4o-mini")) == ["gpt-4o-mini-2024-07-18"]
    assert models(get_llm_usage_list(model_filter="gpt-4o")) == ["GPT-4o", "gpt-4o-mini-2024-07-18"]
    exact = get_llm_usage_list(model_exact="GPT-4o")
    assert (models(exact), exact["total"]) == (["GPT-4o"], 1)
    # Exact means case and all; LIKE wildcards are literal or, rather, never wildcards.
    assert get_llm_usage_list(model_exact="gpt-4o") == {
        "results": [],
        "total": 0,
        "page": 1,
        "page_size": 20,
    }
    assert get_llm_usage_list(model_exact="gpt-4o-mini")["total"] == 0
    assert models(get_llm_usage_list(model_exact="acme-50%-off")) == ["acme-50%-off"]
    assert get_llm_usage_list(model_exact="acme-50_-off")["total"] == 0
    assert get_llm_usage_list(model_exact="acme-%")["total"] == 0
    # Combined with the substring and the other filters: every one must hold.
    assert models(get_llm_usage_list(model_filter="gpt", model_exact="GPT-4o")) == ["GPT-4o"]
    assert get_llm_usage_list(model_filter="mini", model_exact="GPT-4o")["total"] == 0
    assert (
        get_llm_usage_list(
            model_exact="o3-mini",
            user_id=1,
            success_filter=True,
            start_date="2026-01-13",
            end_date="2026-01-13",
        )["total"]
        == 1
    )
    assert get_llm_usage_list(model_exact="o3-mini", user_id=2)["total"] == 0
    assert get_llm_usage_list(model_exact="o3-mini", end_date="2026-01-12")["total"] == 0
    # The count reads rollups for whole buckets: the same with the raw scan.
    with raw_scan():
        assert get_llm_usage_list(model_exact="GPT-4o") == exact
    blank = get_llm_usage_list_from_query({"model_exact": "", "model": ""})
    assert blank["total"] == 5
    from_query = get_llm_usage_list_from_query(
        MultiDict({"model_exact": "o3-mini", "model": "MINI"})
    )
    assert (models(from_query), from_query["total"]) == (["o3-mini"], 1)


def test_date_filters(rows, app_ctx):
    # A date-only end covers its day; the start is inclusive.
    assert models(get_llm_usage_list(start_date="2026-01-10", end_date="2026-01-10")) == [
        "GPT-4o",
        "gpt-4o-mini-2024-07-18",
    ]
    assert models(get_llm_usage_list(start_date="2026-01-11T00:00:00")) == [
        "o3-mini",
        "acme-50%-off",
        "gemini-2.5-flash",
    ]
    assert get_llm_usage_list(end_date="2026-01-10T23:59:58")["total"] == 1
    # Naive dates in tz: the Shanghai 11 January is 10 Jan 16:00 to 11 Jan 16:00 UTC.
    assert models(
        get_llm_usage_list(start_date="2026-01-11", end_date="2026-01-11", tz="Asia/Shanghai")
    ) == ["gemini-2.5-flash", "GPT-4o"]


def test_from_query(rows, app_ctx):
    data = get_llm_usage_list_from_query(
        MultiDict(
            {
                "page": "1",
                "page_size": "2",
                "user_id": "1",
                "model": "MINI",
                "success": "true",
                "start_date": "2026-01-01",
                "end_date": "2026-01-31",
            }
        )
    )
    assert (data["total"], data["page"], data["page_size"]) == (2, 1, 2)
    assert models(data) == ["o3-mini", "gpt-4o-mini-2024-07-18"]
    blank = get_llm_usage_list_from_query(
        {"page": "", "page_size": "", "model": "", "success": "", "user_id": "", "start_date": ""}
    )
    assert (blank["total"], blank["page"], blank["page_size"]) == (5, 1, 20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page": 0}, "page must be between 1 and 2147483647, got 0"),
        ({"page": "abc"}, "page must be an integer, got 'abc'"),
        ({"page": "1.5"}, "page must be an integer"),
        ({"page_size": 0}, "page_size must be between 1 and 200, got 0"),
        ({"page_size": "100000"}, "page_size must be between 1 and 200, got 100000"),
        ({"success_filter": "maybe"}, "success must be 'true' or 'false', got 'maybe'"),
        ({"start_date": "garbage"}, "invalid start_date 'garbage'"),
        ({"end_date": "2026-13-45"}, "invalid end_date '2026-13-45'"),
        ({"user_id": "abc"}, "user_id must be an integer, got 'abc'"),
        ({"model_filter": "a\x00b"}, "model must not contain NUL characters"),
        ({"model_exact": "a\x00b"}, "model_exact must not contain NUL characters"),
        ({"model_exact": "m" * 201}, "model_exact filter is longer than 200 characters"),
        ({"model_exact": 7}, "model_exact must be a string, got 7"),
        ({"start_date": "2026-02-01", "end_date": "2026-01-01"}, "is after end_date"),
        ({"tz": "Nowhere/Land"}, "unknown time zone 'Nowhere/Land'"),
    ],
)
def test_bad_values_raise_value_error(rows, app_ctx, kwargs, message):
    with pytest.raises(ValueError) as info:
        get_llm_usage_list(**kwargs)
    assert message in str(info.value)
