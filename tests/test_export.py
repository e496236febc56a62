"""The CSV export and the detail endpoint of the admin API."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from conftest import USER_PASSWORD
from support.helpers import utc

from llm_tracker import flush, llm_usage, record_usage
from llm_tracker.llm_usage import CSV_COLUMNS

EXPORT = "/api/v1/admin/llm-usage/export.csv"
USAGE = "/api/v1/admin/llm-usage/"

pytestmark = pytest.mark.contract


@pytest.fixture
def rows(app, admin_user, regular_user):
    """Four rows, newest last: admin is user 1, alice user 2."""
    with app.app_context():
        made = [
            record_usage(
                "gpt-4o-mini",
                100,
                50,
                cached_tokens=10,
                user_id=2,
                provider="openai",
                node_name="interpret",
                metadata={"doc": "a.pdf", "pages": 3},
                created_at=utc(2026, 1, 10, 8, 0),
                source_type="upload",
                ttft_ms=40,
            ),
            record_usage("acme-llm-7", 10, 5, created_at=utc(2026, 1, 10, 9, 0)),
            record_usage(
                "gpt-4o",
                1000,
                200,
                success=False,
                error='=HYPERLINK("http://x","boom")',
                user_id=1,
                created_at=utc(2026, 1, 11, 0, 0),
            ),
            record_usage("gpt-4o-mini", 20, 0, user_id=99, created_at=utc(2026, 1, 12, 0, 0)),
        ]
        flush()
    return [str(row.id) for row in made]


@pytest.fixture
def admin_client(client, auth, rows):
    assert auth.login().status_code == 200
    return client


def read_csv(response):
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="llm-usage.csv"'
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_export_has_a_header_and_one_line_per_row(admin_client, rows):
    response = admin_client.get(EXPORT)
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    exported = read_csv(response)
    assert [r["id"] for r in exported] == rows[::-1]
    assert exported[3] == {
        "id": rows[0],
        "created_at": "2026-01-10T08:00:00+00:00",
        "user_id": "2",
        "username": "alice",
        "model": "gpt-4o-mini",
        "requested_model": "",
        "deployment": "",
        "provider": "openai",
        "node_name": "interpret",
        "prompt_tokens": "100",
        "completion_tokens": "50",
        "total_tokens": "150",
        "cached_tokens": "10",
        "cache_write_tokens": "0",
        "reasoning_tokens": "0",
        # 90 * 0.15 + 10 * 0.075 + 50 * 0.60 micro-USD
        "cost_usd": "0.000044250",
        "input_cost_usd": "0.000014250",
        "output_cost_usd": "0.000030000",
        "cache_savings_usd": "0.000000750",
        "price_source": "genai-prices 0.2.3: openai/gpt-4o-mini",
        "latency_ms": "",
        "success": "true",
        "error": "",
        "metadata": json.dumps(
            {"doc": "a.pdf", "node_name": "interpret", "pages": 3, "source_type": "upload"},
            sort_keys=True,
        ),
        "source_type": "upload",
        "ttft_ms": "40",
    }
    # An unpriced row has empty cost cells; a user id no user has, an empty username.
    assert (exported[2]["cost_usd"], exported[2]["price_source"]) == ("", "")
    assert (exported[0]["user_id"], exported[0]["username"]) == ("99", "")


def test_export_header_starts_with_the_first_releases(admin_client, rows):
    header = admin_client.get(EXPORT).get_data(as_text=True).splitlines()[0].split(",")
    # The first release's 24 columns in their places, then the second release's.
    assert header[:24] == [
        "id", "created_at", "user_id", "username", "model", "requested_model", "deployment",
        "provider", "node_name", "prompt_tokens", "completion_tokens", "total_tokens",
        "cached_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "input_cost_usd",
        "output_cost_usd", "cache_savings_usd", "price_source", "latency_ms", "success",
        "error", "metadata",
    ]  # fmt: skip
    assert header[24:] == ["source_type", "ttft_ms"]


def test_export_applies_the_list_filters(admin_client, rows):
    def ids(**query):
        return [r["id"] for r in read_csv(admin_client.get(EXPORT, query_string=query))]

    # The second release's exact filters.
    assert ids(node_name="interpret") == [rows[0]]
    assert ids(source_type="upload") == [rows[0]]
    assert ids(provider="openai") == [rows[0]]
    assert ids(node_name="unknown", model_exact="gpt-4o") == [rows[2]]
    assert ids(node_name="interpre") == []  # exact, not a substring

    assert ids(model="MINI") == [rows[3], rows[0]]
    assert ids(priced="false") == [rows[1]]
    assert ids(success="false", user_id="1") == [rows[2]]
    assert ids(start_date="2026-01-10T09:00:00", end_date="2026-01-11") == [rows[2], rows[1]]
    assert ids(model="no-such-model") == []
    # The exact name: gpt-4o's one row, not the gpt-4o-mini rows its substring also finds.
    assert ids(model="gpt-4o") == [rows[3], rows[2], rows[0]]
    assert ids(model_exact="gpt-4o") == [rows[2]]
    assert ids(model_exact="GPT-4O") == []
    assert ids(model_exact="gpt-4o-mini", user_id="99") == [rows[3]]
    assert ids(model_exact="gpt-4o-mini", model="acme") == []
    # The same rows as the list with the same filters.
    listed = admin_client.get(USAGE, query_string={"model": "gpt", "page_size": "200"})
    assert ids(model="gpt") == [r["id"] for r in listed.get_json()["results"]]


def test_export_quotes_formula_cells_as_text(admin_client, rows):
    exported = read_csv(admin_client.get(EXPORT, query_string={"success": "false"}))
    assert exported[0]["error"] == '\'=HYPERLINK("http://x","boom")'


def test_export_streams_in_batches(admin_client, rows, monkeypatch):
    monkeypatch.setattr(llm_usage, "_CSV_BATCH", 2)
    response = admin_client.get(EXPORT)
    assert response.is_streamed
    chunks = [chunk.decode() for chunk in response.response]
    # Two batches of two rows, then the (empty) tail; the header comes with the first.
    assert [chunk.count("\r\n") for chunk in chunks] == [3, 2, 0]
    assert "".join(chunks) == admin_client.get(EXPORT).get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("priced=maybe", "invalid query parameters: priced: Not a valid boolean."),
        ("page=2", "invalid query parameters: page: Unknown field."),
        (
            "model_exact=a%00b",
            "invalid query parameters: model_exact: must not contain NUL characters",
        ),
        (
            "start_date=2026-02-01&end_date=2026-01-01",
            "start_date (2026-02-01T00:00:00+00:00) is after end_date (2026-01-01T23:59:59.999999+00:00)",  # noqa: E501
        ),
    ],
)
def test_export_bad_input_is_400_json(admin_client, query, message):
    response = admin_client.get(f"{EXPORT}?{query}")
    assert response.status_code == 400
    assert response.get_json() == {"error": message}


def test_export_and_detail_need_an_admin(client, auth, rows):
    for url in (EXPORT, f"{USAGE}{rows[0]}/"):
        response = client.get(url)
        assert (response.status_code, response.get_json()) == (
            401,
            {"error": "authentication required: log in first"},
        )
    assert auth.login("alice", USER_PASSWORD).status_code == 200
    for url in (EXPORT, f"{USAGE}{rows[0]}/"):
        assert client.get(url).status_code == 403


def test_detail_is_the_list_row(admin_client, rows):
    listed = admin_client.get(USAGE, query_string={"page_size": "200"}).get_json()["results"]
    for entry in listed:
        response = admin_client.get(f"{USAGE}{entry['id']}/")
        assert response.status_code == 200
        assert response.get_json() == entry


@pytest.mark.parametrize("usage_id", [str(uuid.UUID(int=7)), "not-a-uuid"])
def test_detail_of_an_unknown_id_is_404_json(admin_client, usage_id):
    response = admin_client.get(f"{USAGE}{usage_id}/")
    assert response.status_code == 404
    assert response.get_json() == {"error": f"no usage row with id {usage_id!r}"}
