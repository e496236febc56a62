"""The dashboard pages' access rules and shells (the browser tests drive their scripts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import USER_PASSWORD, create_test_user

from llm_tracker import User, db

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["/", "/users/1", "/usage", "/usage/0b6d3f64-3e5a-4bd4-9d59-6b4b4c1c5d5e", "/budgets"]
FORBIDDEN = "admin access required (an active staff or superuser account)"


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_the_login_form(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={path}"


def test_anonymous_keeps_the_query_string_for_after_login(client):
    response = client.get("/usage?model=gpt&page=2")
    assert response.headers["Location"] == "/login?next=/usage?model%3Dgpt%26page%3D2"


@pytest.mark.parametrize("path", PAGES)
def test_non_admin_gets_an_html_403_page(client, auth, regular_user, path):
    assert auth.login("alice", USER_PASSWORD).status_code == 200
    response = client.get(path)
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<h1 data-i18n="forbidden.h1">403 · Forbidden</h1>' in page
    assert f"{FORBIDDEN}." in page
    assert "Logged in as</span> <strong>alice</strong>" in page
    # No way into the admin pages from here, and no data placeholders.
    assert 'href="/usage"' not in page
    assert 'id="cards"' not in page


def test_the_api_stays_json_for_non_admins(client, auth, regular_user):
    assert auth.login("alice", USER_PASSWORD).status_code == 200
    response = client.get("/api/v1/admin/token-stats/")
    assert response.status_code == 403
    assert response.get_json() == {"error": FORBIDDEN}
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.mimetype == "application/json"


def test_deactivated_admin_is_sent_back_to_the_login_form(app, client, auth, admin_user):
    assert auth.login().status_code == 200
    assert client.get("/").status_code == 200
    with app.app_context():
        db.session.get(User, admin_user).is_active = False
        db.session.commit()
    response = client.get("/usage")
    assert (response.status_code, response.headers["Location"]) == (302, "/login?next=/usage")


def test_dashboard_shell(app, client, auth, admin_user):
    create_test_user(app, "bob", "pw-bob-1")
    assert auth.login().status_code == 200
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<body class="app"\n      data-page="dashboard"' in page
    assert 'data-api-stats="/api/v1/admin/token-stats/"' in page
    assert '<a href="/" aria-current="page" data-i18n="nav.dashboard">Dashboard</a>' in page
    # English in the page, both languages in its script (chosen in the browser).
    assert '<script src="/static/i18n.js"></script>' in page
    assert "<select data-lang-switch>" in page
    assert 'href="/logout" data-i18n="who.logout">Log out</a>' in page
    for key in (
        "total_calls",
        "successful_calls",
        "failed_calls",
        "total_prompt_tokens",
        "total_completion_tokens",
        "total_cached_tokens",
        "total_reasoning_tokens",
        "total_tokens",
        "total_cost_usd",
        "cache_savings_usd",
        "unpriced_calls",
        "latency_ms_p50",
        "latency_ms_p95",
    ):
        assert f'data-key="{key}"' in page
    for table in ("by-user", "by-node", "by-model"):
        assert f'<table id="{table}" class="data' in page
    # The user filter offers every user, by name, with the id the API filters on.
    users = page[page.index('<select name="user_id">') :]
    users = users[: users.index("</select>")]
    options = re.findall(r'<option value="(\d*)"[^>]*>([^<]*)</option>', users)
    assert options == [
        ("", "All users"),
        (str(admin_user), f"admin (#{admin_user})"),
        (str(admin_user + 1), f"bob (#{admin_user + 1})"),
    ]

    def choices(name):
        select = page[page.index(f'<select name="{name}"') :]
        select = select[: select.index("</select>")]
        return re.findall(r'<option value="(\w*)"( selected)?', select)

    # One period for everything, the last 30 days unless chosen; the chart's step follows it.
    assert choices("period") == [
        ("today", ""),
        ("7d", ""),
        ("30d", " selected"),
        ("this_month", ""),
        ("last_month", ""),
        ("all", ""),
        ("custom", ""),
    ]
    assert choices("granularity") == [("", " selected"), ("day", ""), ("month", ""), ("year", "")]
    assert choices("stack") == [("", " selected"), ("model", ""), ("user", ""), ("node", "")]
    assert '<select name="stack" form="filters">' in page
    for name in ("node_name", "model_exact", "provider", "source_type"):
        assert f'<input type="hidden" name="{name}">' in page


@pytest.mark.parametrize(
    ("path", "marks"),
    [
        (
            "/usage",
            [
                'data-page="usage"',
                'id="export" class="button" href="/api/v1/admin/llm-usage/export.csv" download',
                '<select name="success">',
                '<select name="priced">',
                '<input name="model"',
                # The dashboard's model links filter one exact name; the form keeps it.
                '<input type="hidden" name="model_exact">',
                '<p id="model-exact" class="chip" data-chip-for="model_exact" hidden>'
                '<span data-i18n="chip.model_exact">Model is exactly</span> <code></code>',
                # ...and so do its feature links.
                '<input type="hidden" name="node_name">',
                '<p id="node-name" class="chip" data-chip-for="node_name" hidden>',
            ],
        ),
        (
            "/usage/abc-123",
            [
                'data-page="detail"',
                "<code>abc-123</code>",
                'data-api="/api/v1/admin/llm-usage/abc-123/"',
            ],
        ),
    ],
)
def test_usage_shells(client, auth, admin_user, path, marks):
    assert auth.login().status_code == 200
    response = client.get(path)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for mark in marks:
        assert mark in page


def test_budgets_shell(client, auth, admin_user):
    assert auth.login().status_code == 200
    page = client.get("/budgets").get_data(as_text=True)
    assert '<body class="app"\n      data-page="budgets"' in page
    assert '<a href="/budgets" aria-current="page" data-i18n="nav.budgets">Budgets</a>' in page
    # A shell: the list is the API's, written with the session's CSRF token.
    assert 'data-api="/api/v1/admin/budgets/" data-csrf="/api/v1/auth/csrf"' in page
    assert '<form id="budget-form" class="budget-form"' in page
    for name in ("name", "scope_value", "tz", "limit_usd", "limit_tokens", "thresholds"):
        assert f'<input name="{name}"' in page
    assert '<input name="webhook_url" type="url"' in page
    assert '<input type="checkbox" name="active" checked>' in page
    for name in ("scope", "scope_user", "period", "action"):
        assert f'<select name="{name}">' in page
    # The user picker offers each user separately, or one user by id.
    users = page[page.index('<select name="scope_user">') :]
    users = users[: users.index("</select>")]
    assert re.findall(r'<option value="(\d*)"', users) == ["", str(admin_user)]
    assert '<script src="/static/dashboard.js"></script>' in page
    assert '<script src="/static/budgets.js"></script>' in page


@pytest.mark.parametrize("path", ["/", "/usage", "/usage/x", "/budgets"])
def test_every_admin_page_has_the_budget_alert_banner(client, auth, admin_user, path):
    assert auth.login().status_code == 200
    page = client.get(path).get_data(as_text=True)
    assert '<div id="budget-banner" class="banner" role="status"' in page
    assert 'data-api="/api/v1/admin/budget-alerts/?current=true"' in page
    assert 'data-budgets-url="/budgets"' in page


def test_no_banner_for_non_admins_or_on_the_login_form(client, auth, regular_user):
    assert 'id="budget-banner"' not in client.get("/login").get_data(as_text=True)
    assert auth.login("alice", USER_PASSWORD).status_code == 200
    assert 'id="budget-banner"' not in client.get("/budgets").get_data(as_text=True)


def test_user_page_is_the_dashboard_drilled_down_to_the_user(client, auth, admin_user):
    assert auth.login().status_code == 200
    response = client.get("/users/7")
    assert response.status_code == 302
    assert response.headers["Location"] == "/?stack=model&user_id=7"
    # A period, a chart or anything else given is kept; the id in the path wins.
    response = client.get("/users/7?period=7d&stack=node&user_id=3")
    assert response.headers["Location"] == "/?period=7d&stack=node&user_id=7"
    assert client.get("/users/abc").status_code == 404


@pytest.mark.parametrize("path", ["/", "/usage", "/usage/x", "/budgets", "/login"])
def test_pages_load_nothing_from_other_hosts(client, auth, admin_user, path):
    assert auth.login().status_code == 200 or path == "/login"
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs
    # Offline: every script, style and link is local (no scheme, no //host).
    assert [r for r in refs if "//" in r or ":" in r.split("?")[0] and r != "data:,"] == []


def test_static_files_are_served(client):
    # A static file is streamed from the open file: closing the response closes it.
    with client.get("/static/vendor/chart.umd.min.js") as chart:
        assert chart.status_code == 200
        assert chart.get_data(as_text=True).startswith("/*!\n * Chart.js v4.6.1\n")
    with client.get("/static/dashboard.js") as script:
        assert script.status_code == 200 and b"getJSON" in script.data
    with client.get("/static/budgets.js") as script:
        assert script.status_code == 200 and b"X-CSRFToken" in script.data
    with client.get("/static/dashboard.css") as style:
        assert style.status_code == 200
    with client.get("/static/i18n.js") as messages:
        assert messages.status_code == 200 and "简体中文".encode() in messages.data


@pytest.mark.slow
@pytest.mark.parametrize(("require", "outcome"), [("", "1 skipped"), ("1", "1 error")])
def test_browser_tests_skip_visibly_or_fail_without_chromium(tmp_path, require, outcome):
    env = {
        **os.environ,
        "LLM_TRACKER_CHROMIUM": str(tmp_path / "no-chromium"),
        "LLM_TRACKER_REQUIRE_BROWSER": require,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_dashboard_browser.py::test_make_run_flow_shows_demo_data",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    reason = f"browser tests need Debian's Chromium at {tmp_path / 'no-chromium'}"
    assert reason in done.stdout
    assert outcome in done.stdout
    assert done.returncode == (0 if not require else 1)
    if require:
        assert "LLM_TRACKER_REQUIRE_BROWSER=1 forbids skipping" in done.stdout
