"""Logging in and out: JSON API, HTML form with CSRF, cookie flags, failed-login throttling."""

from __future__ import annotations

import re
import threading

import pytest
from conftest import ADMIN_PASSWORD, USER_PASSWORD, create_test_user

from admin_app.auth import LoginThrottle

LOGIN = "/api/v1/auth/login"
BAD = {"error": "invalid username or password"}


def login(client, username="admin", password=ADMIN_PASSWORD, addr="192.0.2.1"):
    return client.post(LOGIN, json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": addr})


def csrf_token(client, url="/login"):
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


# --- JSON API ---------------------------------------------------------------------------


def test_api_login_sets_a_hardened_session_cookie(client, admin_user):
    # No CSRF token is sent: the JSON login is exempt.
    response = login(client)
    assert response.status_code == 200
    assert response.get_json() == {"id": 1, "username": "admin", "is_admin": True}
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert client.get("/api/v1/auth/me").get_json() == {
        "id": 1, "username": "admin", "is_admin": True}


def test_secure_cookie_is_configurable(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True)
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    response = login(app.test_client())
    assert response.status_code == 200
    assert "; Secure" in response.headers["Set-Cookie"]


def test_wrong_credentials_get_the_same_401(client, admin_user, app):
    create_test_user(app, "gone", "pw-gone", active=False)
    wrong_password = login(client, "admin", "nope")
    unknown_user = login(client, "nobody", "nope")
    inactive_user = login(client, "gone", "pw-gone")
    for response in (wrong_password, unknown_user, inactive_user):
        assert response.status_code == 401
        assert response.get_json() == BAD
        assert "Set-Cookie" not in response.headers
    assert client.get("/api/v1/auth/me").status_code == 401


def test_non_admin_can_log_in_but_not_read_the_api(client, regular_user):
    response = login(client, "alice", USER_PASSWORD)
    assert response.get_json() == {"id": 1, "username": "alice", "is_admin": False}
    assert client.get("/api/v1/admin/llm-usage/").status_code == 403


@pytest.mark.parametrize(("kwargs", "status", "message"), [
    ({"data": "username=admin&password=x",
      "content_type": "application/x-www-form-urlencoded"},
     415, "send JSON with Content-Type: application/json"),
    ({"json": {"username": "admin"}}, 400,
     "JSON body needs string fields username and password (password)"),
    ({"json": {"username": 5, "password": ["x"]}}, 400,
     "JSON body needs string fields username and password (password, username)"),
    ({"json": ["admin", "pw"]}, 400,
     "JSON body needs string fields username and password (_schema)"),
    ({"data": "{not json", "content_type": "application/json"}, 400,
     "JSON body needs string fields username and password (password, username)"),
])
def test_api_login_bad_bodies(client, admin_user, kwargs, status, message):
    response = client.post(LOGIN, **kwargs)
    assert response.status_code == status
    assert response.get_json() == {"error": message}


def test_api_logout(client, auth, admin_user):
    assert auth.login().status_code == 200
    response = auth.logout()
    assert response.status_code == 200
    assert response.get_json() == {"logged_out": True}
    assert client.get("/api/v1/auth/me").get_json() == {
        "error": "authentication required: log in first"}
    # Logging out twice is harmless.
    assert auth.logout().status_code == 200


# --- throttling -------------------------------------------------------------------------


def test_throttle_per_username(client, admin_user):
    for i in range(10):
        assert login(client, "admin", "wrong", addr=f"192.0.2.{i}").status_code == 401
    # Even the right password, from a fresh address, waits now.
    blocked = login(client, addr="198.51.100.1")
    assert blocked.status_code == 429
    assert blocked.get_json() == {"error": "too many failed logins: try again in 60 seconds"}
    assert blocked.headers["Retry-After"] == "60"
    # Another username from another address is not affected.
    create_test_user(client.application, "bob", "pw-bob")
    assert login(client, "bob", "pw-bob", addr="198.51.100.2").status_code == 200


def test_throttle_per_address(client, admin_user):
    for i in range(10):
        assert login(client, f"guess{i}", "wrong", addr="203.0.113.7").status_code == 401
    assert login(client, addr="203.0.113.7").status_code == 429
    assert login(client, addr="203.0.113.8").status_code == 200


def test_throttle_window_expires_and_success_resets_the_username(app, client, admin_user):
    throttle = app.extensions["login_throttle"]
    now = [1000.0]
    throttle.clock = lambda: now[0]
    for i in range(10):
        login(client, "admin", "wrong", addr=f"192.0.2.{i}")
    now[0] += 30
    assert login(client, addr="198.51.100.1").status_code == 429
    assert login(client, addr="198.51.100.1").headers["Retry-After"] == "30"
    now[0] += 30
    assert login(client, addr="198.51.100.1").status_code == 200
    # The success cleared the username's count: nine more failures do not block it.
    for i in range(9):
        login(client, "admin", "wrong", addr=f"192.0.2.{100 + i}")
    assert login(client, addr="198.51.100.2").status_code == 200


def test_rate_limit_is_configurable(make_app):
    app = make_app(LOGIN_RATE_LIMIT=2, LOGIN_RATE_LIMIT_WINDOW=5)
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    client = app.test_client()
    assert [login(client, "admin", "x").status_code for _ in range(3)] == [401, 401, 429]
    assert login(client).headers["Retry-After"] == "5"


def test_throttle_counts_exactly_under_threads():
    throttle = LoginThrottle(limit=1000, window=60)

    def hammer():
        for _ in range(125):
            throttle.fail("user:x", "addr:y")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(throttle._failures["user:x"]) == 1000
    assert len(throttle._failures["addr:y"]) == 1000
    assert throttle.retry_after("user:x") == 60
    assert throttle.retry_after("user:other") == 0


# --- HTML -------------------------------------------------------------------------------


def test_home_page_needs_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/"


def test_html_login_requires_csrf_token(client, admin_user):
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 400
    assert response.get_json() == {"error": "The CSRF token is missing."}
    csrf_token(client)  # the session now holds a token, but the form sends another
    response = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                           "csrf_token": "forged"})
    assert response.status_code == 400
    assert response.get_json() == {"error": "The CSRF token is invalid."}
    assert client.get("/api/v1/auth/me").status_code == 401


def test_html_login_and_logout(client, admin_user):
    token = csrf_token(client)
    wrong = client.post("/login", data={"username": "admin", "password": "x",
                                        "csrf_token": token})
    assert wrong.status_code == 200
    assert "Invalid username or password." in wrong.get_data(as_text=True)

    response = client.post("/login?next=/api/v1/admin/llm-usage/", data={
        "username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/v1/admin/llm-usage/"
    assert "HttpOnly" in response.headers["Set-Cookie"]
    home = client.get("/")
    assert home.status_code == 200
    assert "Logged in as <strong>admin</strong>" in home.get_data(as_text=True)
    # Already logged in: the form sends you on.
    assert client.get("/login").headers["Location"] == "/"

    logout = client.get("/logout")
    assert (logout.status_code, logout.headers["Location"]) == (302, "/login")
    assert client.get("/").status_code == 302
    assert client.get("/api/v1/admin/llm-usage/").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil",
                                    "javascript:alert(1)"])
def test_html_login_never_redirects_off_site(client, admin_user, target):
    token = csrf_token(client)
    response = client.post("/login", query_string={"next": target}, data={
        "username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_html_login_is_throttled(client, admin_user):
    token = csrf_token(client)
    for _ in range(10):
        client.post("/login", data={"username": "admin", "password": "x", "csrf_token": token})
    page = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                       "csrf_token": token})
    assert page.status_code == 200
    assert "Too many failed logins: try again in 60 seconds." in page.get_data(as_text=True)
    assert client.get("/api/v1/auth/me").status_code == 401


def test_home_page_is_for_admins_only(client, regular_user):
    login(client, "alice", USER_PASSWORD)
    response = client.get("/")
    # A page, so an HTML 403 (tests/test_dashboard.py checks it); the API answers JSON.
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "admin access required (an active staff or superuser account)." in (
        response.get_data(as_text=True))
