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
PAGES = ["/", "/usage", "/usage/0b6d3f64-3e5a-4bd4-9d59-6b4b4c1c5d5e"]
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
    assert "<h1>403 · Forbidden</h1>" in page
    assert f"{FORBIDDEN}." in page
    assert "Logged in as <strong>alice</strong>" in page
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
    assert '<a href="/" aria-current="page">Dashboard</a>' in page
    assert 'href="/logout">Log out</a>' in page
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
    ):
        assert f'data-key="{key}"' in page
    # The user filter offers every user, by name, with the id the API filters on.
    options = re.findall(r'<option value="(\d*)">([^<]*)</option>', page)
    assert options == [
        ("", "All users"),
        (str(admin_user), f"admin (#{admin_user})"),
        (str(admin_user + 1), f"bob (#{admin_user + 1})"),
    ]
    assert re.findall(r'<option value="(\w+)"( selected)?>', page)[:3] == [
        ("day", ""),
        ("month", " selected"),
        ("year", ""),
    ]


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
                '<p id="model-exact" class="chip" hidden>Model is exactly <code></code>',
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


@pytest.mark.parametrize("path", ["/", "/usage", "/usage/x", "/login"])
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
    with client.get("/static/dashboard.css") as style:
        assert style.status_code == 200


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
