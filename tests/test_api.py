"""The admin JSON API: access rules, shapes, 400s for bad input, JSON errors, any prefix."""

from __future__ import annotations

import pytest
from conftest import USER_PASSWORD, WRITE_MODE, create_test_user
from flask import Flask
from flask_login import LoginManager, login_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import INTERNAL_ERROR, utc

import llm_tracker
from llm_tracker import User, db, flush, record_usage
from llm_tracker.views import bp as admin_api
from llm_tracker.views import register_error_handlers
from llm_tracker.writer import close_writer

pytestmark = pytest.mark.contract

STATS = "/api/v1/admin/token-stats/"
USAGE = "/api/v1/admin/llm-usage/"
DATE_HINT = "use an ISO 8601 date or datetime such as 2026-11-27 or 2026-11-27T08:00:00+08:00"


@pytest.fixture
def rows(app, admin_user, regular_user):
    """Three rows: admin is user 1, alice user 2."""
    assert (admin_user, regular_user) == (1, 2)
    with app.app_context():
        made = [
            record_usage(
                "gpt-4o-mini",
                100,
                50,
                cached_tokens=10,
                user_id=1,
                created_at=utc(2026, 1, 10, 8, 0),
                latency_ms=120,
            ),
            record_usage(
                "gpt-4o",
                1000,
                200,
                user_id=2,
                metadata={"doc": "a.pdf"},
                created_at=utc(2026, 1, 10, 9, 30),
                latency_ms=900,
            ),
            record_usage(
                "gpt-4o-mini",
                20,
                0,
                success=False,
                error="RateLimitError: 429",
                created_at=utc(2026, 1, 11, 0, 0),
            ),
        ]
    flush()  # the rows are committed before the requests read them
    return [str(row.id) for row in made]


@pytest.fixture
def admin_client(client, auth, rows):
    assert auth.login().status_code == 200
    return client


def assert_json_error(response, status, message):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": message}


# --- access -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [STATS, USAGE])
def test_anonymous_gets_401_json(client, url):
    assert_json_error(client.get(url), 401, "authentication required: log in first")


@pytest.mark.parametrize("url", [STATS, USAGE])
def test_non_admin_gets_403_json(client, auth, regular_user, url):
    assert auth.login("alice", USER_PASSWORD).status_code == 200
    assert_json_error(
        client.get(url), 403, "admin access required (an active staff or superuser account)"
    )


def test_deactivated_admin_gets_403(app, admin_client):
    with app.app_context():
        db.session.get(User, 1).is_active = False
        db.session.commit()
    assert admin_client.get(STATS).status_code == 403


@pytest.mark.parametrize(("staff", "superuser"), [(True, False), (False, True)])
def test_staff_or_superuser_is_admin(app, client, auth, staff, superuser):
    user_id = create_test_user(app, "boss", "pw-boss")
    with app.app_context():
        user = db.session.get(User, user_id)
        user.is_staff, user.is_superuser = staff, superuser
        db.session.commit()
    assert auth.login("boss", "pw-boss").status_code == 200
    assert client.get(STATS).status_code == 200


def test_logout_ends_access(admin_client, auth):
    assert admin_client.get(USAGE).status_code == 200
    assert auth.logout().status_code == 200
    assert_json_error(admin_client.get(USAGE), 401, "authentication required: log in first")


# --- shapes -----------------------------------------------------------------------------


def test_token_stats_shape(admin_client):
    response = admin_client.get(
        STATS,
        query_string={"start_date": "2026-01-10", "end_date": "2026-01-11", "granularity": "month"},
    )
    assert response.status_code == 200
    zeros = {"total_cached_tokens": 0, "total_reasoning_tokens": 0}
    assert response.get_json() == {
        "summary": {
            "total_prompt_tokens": 1120,
            "total_completion_tokens": 250,
            "total_tokens": 1370,
            "total_cached_tokens": 10,
            "total_reasoning_tokens": 0,
            "total_calls": 3,
            "successful_calls": 2,
            "failed_calls": 1,
            "unpriced_calls": 0,
            # micro-USD: 44.25 (gpt-4o-mini, 10 cached) + 4500 (gpt-4o) + 3 (gpt-4o-mini)
            "total_cost_usd": "0.004547250",
            "cache_savings_usd": "0.000000750",
            # 120 and 900 ms (the failed call has none), reported as their bins' middles
            "latency_ms_p50": 122,
            "latency_ms_p95": 883,
        },
        "by_model": [
            {
                "model": "gpt-4o",
                "total_calls": 1,
                "total_prompt_tokens": 1000,
                "total_completion_tokens": 200,
                "total_tokens": 1200,
                **zeros,
                "total_cost_usd": "0.004500000",
                "unpriced_calls": 0,
                "latency_ms_p50": 883,
                "latency_ms_p95": 883,
            },
            {
                "model": "gpt-4o-mini",
                "total_calls": 2,
                "total_prompt_tokens": 120,
                "total_completion_tokens": 50,
                "total_tokens": 170,
                "total_cached_tokens": 10,
                "total_reasoning_tokens": 0,
                "total_cost_usd": "0.000047250",
                "unpriced_calls": 0,
                "latency_ms_p50": 122,
                "latency_ms_p95": 122,
            },
        ],
        "series": [
            {
                "bucket": "2026-01-10T00:00:00+00:00",
                "total_calls": 2,
                "total_prompt_tokens": 1100,
                "total_completion_tokens": 250,
                "total_tokens": 1350,
                "total_cached_tokens": 10,
                "total_reasoning_tokens": 0,
                "total_cost_usd": "0.004544250",
                "unpriced_calls": 0,
            },
            {
                "bucket": "2026-01-11T00:00:00+00:00",
                "total_calls": 1,
                "total_prompt_tokens": 20,
                "total_completion_tokens": 0,
                "total_tokens": 20,
                **zeros,
                "total_cost_usd": "0.000003000",
                "unpriced_calls": 0,
            },
        ],
    }


def test_token_stats_filters_and_tz(admin_client):
    data = admin_client.get(STATS, query_string={"user_id": "2"}).get_json()
    assert data["series"] is None
    assert (data["summary"]["total_calls"], data["summary"]["total_tokens"]) == (1, 1200)
    local = admin_client.get(
        STATS,
        query_string={
            "start_date": "2026-01-10",
            "end_date": "2026-01-10",
            "granularity": "day",
            "tz": "Asia/Kathmandu",
        },
    ).get_json()
    assert len(local["series"]) == 24
    assert local["series"][0]["bucket"] == "2026-01-10T00:00:00+05:45"
    # 08:00 UTC is 13:45 and 09:30 UTC is 15:15 in Kathmandu.
    assert {i: b["total_tokens"] for i, b in enumerate(local["series"]) if b["total_calls"]} == {
        13: 150,
        15: 1200,
    }
    # Blank values (an HTML form's empty fields) mean "not given".
    blank = admin_client.get(STATS, query_string={"start_date": "", "granularity": ""})
    assert blank.status_code == 200
    assert blank.get_json()["summary"]["total_calls"] == 3


def test_llm_usage_shape(admin_client, rows):
    response = admin_client.get(USAGE, query_string={"page_size": "2"})
    assert response.status_code == 200
    data = response.get_json()
    assert (data["total"], data["page"], data["page_size"]) == (3, 1, 2)
    assert [r["id"] for r in data["results"]] == [rows[2], rows[1]]
    assert data["results"][1] == {
        "id": rows[1],
        "user_id": 2,
        "username": "alice",
        "model": "gpt-4o",
        "requested_model": None,
        "deployment": None,
        "provider": None,
        "node_name": "unknown",
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": "0.004500000",
        "input_cost_usd": "0.002500000",
        "output_cost_usd": "0.002000000",
        "cache_savings_usd": "0.000000000",
        "price_source": "genai-prices 0.2.3: openai/gpt-4o",
        "latency_ms": 900,
        "success": True,
        "error": None,
        "created_at": "2026-01-10T09:30:00+00:00",
        "metadata": {"doc": "a.pdf", "node_name": "unknown"},
        "source_type": None,
        "ttft_ms": None,
    }
    assert data["results"][0]["username"] is None
    assert data["results"][0]["success"] is False


def test_llm_usage_filters(admin_client):
    def models(**query):
        response = admin_client.get(USAGE, query_string=query)
        assert response.status_code == 200
        return [r["model"] for r in response.get_json()["results"]]

    assert models(model="MINI") == ["gpt-4o-mini", "gpt-4o-mini"]
    assert models(success="false") == ["gpt-4o-mini"]
    assert models(success="true", user_id="1") == ["gpt-4o-mini"]
    assert models(start_date="2026-01-10T09:30:00", end_date="2026-01-10") == ["gpt-4o"]
    assert models(page="2", page_size="2") == ["gpt-4o-mini"]
    # model_exact: one model name exactly, not every name containing it.
    assert models(model="gpt-4o") == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert models(model_exact="gpt-4o") == ["gpt-4o"]
    assert models(model_exact="gpt-4o-mini") == ["gpt-4o-mini", "gpt-4o-mini"]
    assert models(model_exact="GPT-4O-MINI") == []
    assert models(model_exact="gpt-4o-mini", model="4O-M", success="false") == ["gpt-4o-mini"]
    response = admin_client.get(USAGE, query_string={"model_exact": "gpt-4o", "model": ""})
    assert response.get_json()["total"] == 1


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "query", "message"),
    [
        (STATS, "granularity=week", "granularity: Must be one of: day, month, year."),
        (
            USAGE,
            "page=0",
            "page: Must be greater than or equal to 1 and less than or equal to 2147483647.",
        ),
        (USAGE, "page=abc", "page: Not a valid integer."),
        (
            USAGE,
            "page_size=100000",
            "page_size: Must be greater than or equal to 1 and less than or equal to 200.",
        ),
        (USAGE, "success=maybe", "success: Not a valid boolean."),
        (USAGE, "priced=perhaps", "priced: Not a valid boolean."),
        (STATS, "start_date=garbage", f"start_date: invalid start_date 'garbage': {DATE_HINT}"),
        (USAGE, "start_date=garbage", f"start_date: invalid start_date 'garbage': {DATE_HINT}"),
        (STATS, "end_date=2026-13-45", f"end_date: invalid end_date '2026-13-45': {DATE_HINT}"),
        (USAGE, "end_date=2026-13-45", f"end_date: invalid end_date '2026-13-45': {DATE_HINT}"),
        (STATS, "user_id=abc", "user_id: Not a valid integer."),
        (USAGE, "user_id=abc", "user_id: Not a valid integer."),
        (
            STATS,
            "tz=Mars/Olympus",
            "tz: unknown time zone 'Mars/Olympus': use an IANA name such as 'Asia/Shanghai' or 'UTC'",  # noqa: E501
        ),
        (USAGE, "colour=red", "colour: Unknown field."),
        (USAGE, "model=a%00b", "model: must not contain NUL characters"),
        (USAGE, "model_exact=a%00b", "model_exact: must not contain NUL characters"),
        (USAGE, "model_exact=" + "m" * 201, "model_exact: Longer than maximum length 200."),
        (STATS, "model_exact=" + "m" * 201, "model_exact: Longer than maximum length 200."),
        (
            STATS,
            "group_by=team",
            "group_by: Must be one of: user, node, source_type, provider, model.",
        ),
        (
            STATS,
            "series_by=day",
            "series_by: Must be one of: user, node, source_type, provider, model.",
        ),
        (
            STATS,
            "group_by=user&limit=0",
            "limit: Must be greater than or equal to 1 and less than or equal to 1000.",
        ),
        (STATS, "series_by=user", "series_by: needs a granularity ('day', 'month' or 'year')"),
        (STATS, "node_name=a%00b", "node_name: must not contain NUL characters"),
        (USAGE, "provider=" + "p" * 201, "provider: Longer than maximum length 200."),
        (USAGE, "group_by=user", "group_by: Unknown field."),
    ],
)
def test_bad_query_values_get_400_json(admin_client, url, query, message):
    assert_json_error(
        admin_client.get(f"{url}?{query}"), 400, f"invalid query parameters: {message}"
    )


def test_value_errors_of_the_library_get_400_json(admin_client):
    assert_json_error(
        admin_client.get(
            STATS, query_string={"start_date": "2026-02-01", "end_date": "2026-01-01"}
        ),
        400,
        "start_date (2026-02-01T00:00:00+00:00) is after end_date "
        "(2026-01-01T23:59:59.999999+00:00)",
    )
    assert_json_error(
        admin_client.get(STATS, query_string={"granularity": "day", "start_date": "2020-01-01"}),
        400,
        "the range holds more than 10000 hourly buckets: "
        "narrow the dates or use a coarser granularity",
    )
    assert_json_error(
        admin_client.get(STATS, query_string={"start_date": "0001-01-01", "tz": "Asia/Shanghai"}),
        400,
        "start_date '0001-01-01' is out of the supported range",
    )


def test_unknown_url_and_method_get_json(admin_client, client):
    not_found = (
        "The requested URL was not found on the server. If you entered the URL "
        "manually please check your spelling and try again."
    )
    assert_json_error(admin_client.get("/api/v1/admin/nope/"), 404, not_found)
    assert_json_error(client.get("/no/such/page"), 404, not_found)
    response = admin_client.post(STATS)
    assert_json_error(response, 405, "The method is not allowed for the requested URL.")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


# --- the blueprint under another prefix, in a plain Flask app ----------------------------


def test_blueprint_mounts_under_any_prefix(database_url, tmp_path):
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        SECRET_KEY="k",
        TESTING=True,
        LLM_TRACKER_SPOOL_PATH=str(tmp_path / "spool.jsonl"),
        # The journal in this test's folder (not tests/instance), as make_app's apps keep it.
        LLM_TRACKER_INSTANCE_PATH=str(tmp_path),
        **({"LLM_TRACKER_WRITE_MODE": WRITE_MODE} if WRITE_MODE else {}),
    )
    llm_tracker.init_app(app)
    manager = LoginManager(app)
    manager.user_loader(User.from_session_id)
    app.register_blueprint(admin_api, url_prefix="/internal/llm")
    register_error_handlers(app)

    @app.get("/test-login/<int:user_id>")
    def test_login(user_id):
        login_user(db.session.get(User, user_id))
        return "ok"

    try:
        with app.app_context():
            db.create_all()
            db.session.add(User(username="root", password_hash="-", is_staff=True))
            db.session.commit()
            record_usage("gpt-4o", 3, 4, created_at=utc(2026, 1, 1))
        flush()
        client = app.test_client()
        assert_json_error(
            client.get("/internal/llm/llm-usage/"), 401, "authentication required: log in first"
        )
        client.get("/test-login/1")
        data = client.get("/internal/llm/token-stats/").get_json()
        assert data["summary"]["total_tokens"] == 7
        assert client.get("/internal/llm/llm-usage/").get_json()["total"] == 1
    finally:
        close_writer(app, timeout=30)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# --- property: no input makes a 5xx -----------------------------------------------------

_TEXT = st.text(max_size=40)
# Per parameter, values that are valid (or nearly) so that parsing and SQL are both reached.
_PLAUSIBLE = {
    "start_date": [
        "2026-01-10",
        "2026-01-10T08:00",
        "2026-01-10T08:00+05:45",
        "0001-01-01",
        "9999-12-31T23:59:59",
        "20260110",
    ],
    "end_date": ["2026-01-11", "2026-01-10T09:00:00Z", "9999-12-31", "0001-01-01", "2025-12-31"],
    "user_id": [
        "1",
        "2",
        "-1",
        "2147483648",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "007",
    ],
    "granularity": ["day", "month", "year", "DAY"],
    "tz": ["UTC", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe", "../etc"],
    "page": ["1", "2", "2147483647", "0"],
    "page_size": ["1", "200", "201"],
    "model": ["gpt", "%", "_", "MINI", "\\"],
    "model_exact": ["gpt-4o", "gpt-4o-mini", "GPT-4O", "%", "\\"],
    "success": ["true", "false", "True", "1"],
    "priced": ["true", "false", "FALSE", "0"],
}


def _queries(names):
    return st.fixed_dictionaries(
        {}, optional={name: st.one_of(_TEXT, st.sampled_from(_PLAUSIBLE[name])) for name in names}
    )


_STATS_PARAMS = ("start_date", "end_date", "user_id", "granularity", "tz")
_USAGE_PARAMS = (
    "page",
    "page_size",
    "user_id",
    "model",
    "model_exact",
    "success",
    "priced",
    "start_date",
    "end_date",
    "tz",
)
_EXPORT_PARAMS = (
    "user_id",
    "model",
    "model_exact",
    "success",
    "priced",
    "start_date",
    "end_date",
    "tz",
)
EXPORT = "/api/v1/admin/llm-usage/export.csv"


def test_arbitrary_query_strings_never_give_5xx(admin_client):
    checks = settings(
        max_examples=100,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

    def check(url, query, mimetype="application/json"):
        response = admin_client.get(url, query_string=query)
        assert response.status_code in (200, 400), (query, response.status_code)
        if response.status_code == 200:
            # The whole (streamed) body, so an error mid-stream would surface here.
            assert response.get_data()
        assert response.mimetype == (
            mimetype if response.status_code == 200 else "application/json"
        )
        body = response.get_json() if response.status_code == 400 else None
        if response.status_code == 400:
            assert set(body) == {"error"} and body["error"]

    @checks
    @given(_queries(_STATS_PARAMS))
    def stats(query):
        check(STATS, query)

    @checks
    @given(_queries(_USAGE_PARAMS))
    def usage(query):
        check(USAGE, query)

    @checks
    @given(_queries(_EXPORT_PARAMS))
    def export(query):
        check(EXPORT, query, "text/csv")

    stats()
    usage()
    export()


def test_unexpected_exception_is_a_json_500_without_a_trace(make_app):
    app = make_app(TESTING=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": INTERNAL_ERROR}
    assert b"secret internals" not in response.data
