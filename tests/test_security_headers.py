"""Security headers on every response: each route of the app, each kind of answer (page,
JSON, CSV, static file, redirect, every error status), and templates the policy can hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ADMIN_PASSWORD, USER_PASSWORD, create_test_user
from support.helpers import INTERNAL_ERROR

from llm_tracker import LLMUsage, db, flush, record_usage
from llm_tracker.budget_admin import create_budget

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
ROW = "{row}"  # replaced by the id of the one recorded row

# (who is logged in, method, path, JSON body, status, mimetype); every route of the app is
# here at least once (test_every_route_is_covered), and every kind of answer it gives.
CASES = {
    "login form": (None, "GET", "/login", None, 200, "text/html"),
    "login form post without csrf token": (None, "POST", "/login", None, 400, "application/json"),
    "login form redirect": ("admin", "GET", "/login?next=/usage", None, 302, "text/html"),
    "logout page": ("admin", "GET", "/logout", None, 302, "text/html"),
    "dashboard": ("admin", "GET", "/", None, 200, "text/html"),
    "dashboard anonymous": (None, "GET", "/", None, 302, "text/html"),
    "dashboard non-admin 403 page": ("alice", "GET", "/", None, 403, "text/html"),
    "usage page": ("admin", "GET", "/usage?model=gpt", None, 200, "text/html"),
    "detail page": ("admin", "GET", f"/usage/{ROW}", None, 200, "text/html"),
    "per-user view (the dashboard drilled down)": (
        "admin",
        "GET",
        "/users/2",
        None,
        302,
        "text/html",
    ),
    "budgets page": ("admin", "GET", "/budgets", None, 200, "text/html"),
    "static budgets script": (None, "GET", "/static/budgets.js", None, 200, "text/javascript"),
    "static i18n script": (None, "GET", "/static/i18n.js", None, 200, "text/javascript"),
    "static script": (None, "GET", "/static/dashboard.js", None, 200, "text/javascript"),
    "static style": (None, "GET", "/static/dashboard.css", None, 200, "text/css"),
    "static chart.js": (
        None,
        "GET",
        "/static/vendor/chart.umd.min.js",
        None,
        200,
        "text/javascript",
    ),
    "static missing": (None, "GET", "/static/nothing.js", None, 404, "application/json"),
    "api login": (
        None,
        "POST",
        "/api/v1/auth/login",
        {"username": "admin", "password": ADMIN_PASSWORD},
        200,
        "application/json",
    ),
    "api login 401": (
        None,
        "POST",
        "/api/v1/auth/login",
        {"username": "admin", "password": "wrong"},
        401,
        "application/json",
    ),
    "api login 405": (None, "GET", "/api/v1/auth/login", None, 405, "application/json"),
    "api logout": ("admin", "POST", "/api/v1/auth/logout", None, 200, "application/json"),
    "api me": ("admin", "GET", "/api/v1/auth/me", None, 200, "application/json"),
    "api me 401": (None, "GET", "/api/v1/auth/me", None, 401, "application/json"),
    "token stats": (
        "admin",
        "GET",
        "/api/v1/admin/token-stats/?granularity=day",
        None,
        200,
        "application/json",
    ),
    "token stats 400": (
        "admin",
        "GET",
        "/api/v1/admin/token-stats/?granularity=week",
        None,
        400,
        "application/json",
    ),
    "token stats 401": (None, "GET", "/api/v1/admin/token-stats/", None, 401, "application/json"),
    "token stats 403": (
        "alice",
        "GET",
        "/api/v1/admin/token-stats/",
        None,
        403,
        "application/json",
    ),
    "usage list": ("admin", "GET", "/api/v1/admin/llm-usage/", None, 200, "application/json"),
    "usage detail": (
        "admin",
        "GET",
        f"/api/v1/admin/llm-usage/{ROW}/",
        None,
        200,
        "application/json",
    ),
    "usage detail 404": (
        "admin",
        "GET",
        "/api/v1/admin/llm-usage/nothing/",
        None,
        404,
        "application/json",
    ),
    "usage export": ("admin", "GET", "/api/v1/admin/llm-usage/export.csv", None, 200, "text/csv"),
    "api csrf token": ("admin", "GET", "/api/v1/auth/csrf", None, 200, "application/json"),
    "budgets": ("admin", "GET", "/api/v1/admin/budgets/", None, 200, "application/json"),
    "budget": ("admin", "GET", "/api/v1/admin/budgets/1/", None, 200, "application/json"),
    # Cookie-session writes without the CSRF token: refused before the view, as JSON.
    "budget create without csrf": (
        "admin",
        "POST",
        "/api/v1/admin/budgets/",
        {"name": "x"},
        400,
        "application/json",
    ),
    "budget change without csrf": (
        "admin",
        "PATCH",
        "/api/v1/admin/budgets/1/",
        {"limit_usd": "2"},
        400,
        "application/json",
    ),
    "budget removal without csrf": (
        "admin",
        "DELETE",
        "/api/v1/admin/budgets/1/",
        None,
        400,
        "application/json",
    ),
    "budget alerts": (
        "admin",
        "GET",
        "/api/v1/admin/budget-alerts/",
        None,
        200,
        "application/json",
    ),
    "unknown url 404": (None, "GET", "/no/such/page", None, 404, "application/json"),
}


@pytest.fixture
def site(app):
    """The app with an admin, a non-admin and one recorded row; the row's id."""
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    create_test_user(app, "alice", USER_PASSWORD)
    with app.app_context():
        row_id = str(record_usage("gpt-4o-mini", prompt_tokens=10, completion_tokens=5).id)
        create_budget({"name": "site", "scope": "global", "period": "day", "limit_usd": "1"})
    flush()  # the row is committed before the requests read it
    return row_id


def _log_in(client, who):
    password = ADMIN_PASSWORD if who == "admin" else USER_PASSWORD
    response = client.post("/api/v1/auth/login", json={"username": who, "password": password})
    assert response.status_code == 200


def assert_security_headers(response):
    assert {name: response.headers.get(name) for name in EXPECTED} == EXPECTED


@pytest.mark.parametrize("case", CASES)
def test_every_response_carries_the_security_headers(app, client, site, case):
    who, method, path, body, status, mimetype = CASES[case]
    if who is not None:
        _log_in(client, who)
    response = client.open(path.replace(ROW, site), method=method, json=body)
    assert (response.status_code, response.mimetype) == (status, mimetype)
    assert_security_headers(response)
    response.close()


def test_every_route_is_covered(app):
    adapter = app.url_map.bind("localhost")
    covered = {
        adapter.match(path.split("?")[0].replace(ROW, "x"), method)[0]
        for _who, method, path, _body, status, _mime in CASES.values()
        if status not in (404, 405)
    }
    assert covered == {rule.endpoint for rule in app.url_map.iter_rules()}


def test_rate_limited_login_429_carries_them(make_app, site):
    app = make_app(LOGIN_RATE_LIMIT=1)
    create_test_user(app, "bob", "pw-bob-1")
    client = app.test_client()
    wrong = {"username": "bob", "password": "wrong"}
    assert client.post("/api/v1/auth/login", json=wrong).status_code == 401
    response = client.post("/api/v1/auth/login", json=wrong)
    assert response.status_code == 429 and response.headers["Retry-After"]
    assert_security_headers(response)


def test_internal_error_500_carries_them(make_app):
    # A real failure, not a stub: the usage table is gone under a running app.
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    with app.app_context():
        LLMUsage.__table__.drop(db.engine)
    client = app.test_client()
    _log_in(client, "admin")
    response = client.get("/api/v1/admin/llm-usage/")
    assert response.status_code == 500
    assert response.get_json() == {"error": INTERNAL_ERROR}
    assert_security_headers(response)


TEMPLATES = sorted((ROOT / "admin_app" / "templates").glob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_templates_have_no_inline_script_or_style(template):
    """What script-src 'self' / style-src 'self' would refuse: inline <script> bodies,
    on...= handlers, style attributes and <style> blocks, and javascript: URLs."""
    text = template.read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == []
    assert re.findall(r"\son[a-z]+\s*=", text, flags=re.IGNORECASE) == []
    assert re.findall(r"\sstyle\s*=|<style\b|javascript:", text, flags=re.IGNORECASE) == []


@pytest.mark.parametrize("name", ["dashboard.js", "budgets.js"])
def test_dashboard_script_writes_no_inline_style_or_markup(name):
    script = (ROOT / "admin_app" / "static" / name).read_text(encoding="utf-8")
    # setAttribute("style") and style="" in HTML strings are refused by style-src 'self'
    # (CSSOM writes such as node.style.x are allowed, and Chart.js uses only those).
    assert (
        re.findall(
            r"setAttribute\(\s*[\"']style|innerHTML|outerHTML|insertAdjacentHTML"
            r"|document\.write|\beval\(|new Function",
            script,
        )
        == []
    )
