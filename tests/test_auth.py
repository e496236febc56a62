"""Logging in and out: JSON API, HTML form with CSRF, cookie flags, failed-login throttling,
sessions ended by logout, password change and deactivation, bad input."""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from conftest import ADMIN_PASSWORD, USER_PASSWORD, create_test_user
from sqlalchemy import select

from admin_app.auth import LoginThrottle, _keys, authenticate
from llm_tracker import User, db
from llm_tracker.models import LoginFailures

LOGIN = "/api/v1/auth/login"
BAD = {"error": "invalid username or password"}


def login(client, username="admin", password=ADMIN_PASSWORD, addr="192.0.2.1"):
    return client.post(
        LOGIN, json={"username": username, "password": password}, environ_base={"REMOTE_ADDR": addr}
    )


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
        "id": 1,
        "username": "admin",
        "is_admin": True,
    }


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


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        (
            {
                "data": "username=admin&password=x",
                "content_type": "application/x-www-form-urlencoded",
            },
            415,
            "send JSON with Content-Type: application/json",
        ),
        (
            {"json": {"username": "admin"}},
            400,
            "JSON body needs string fields username and password (password)",
        ),
        (
            {"json": {"username": 5, "password": ["x"]}},
            400,
            "JSON body needs string fields username and password (password, username)",
        ),
        (
            {"json": ["admin", "pw"]},
            400,
            "JSON body needs string fields username and password (_schema)",
        ),
        (
            {"data": "{not json", "content_type": "application/json"},
            400,
            "JSON body needs string fields username and password (password, username)",
        ),
    ],
)
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
        "error": "authentication required: log in first"
    }
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


class Clock:
    """A settable UTC clock for the throttle."""

    def __init__(self):
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(app):
    clock = Clock()
    app.extensions["login_throttle"].clock = clock
    return clock


def failure_rows(app):
    with app.app_context():
        return {
            key.split(":")[0]: failures
            for key, failures in db.session.execute(
                select(LoginFailures.key, LoginFailures.failures)
            ).all()
        }


def test_throttle_window_expires_and_success_resets_the_username(app, client, admin_user, clock):
    for i in range(10):
        login(client, "admin", "wrong", addr=f"192.0.2.{i}")
    clock.advance(30)
    assert login(client, addr="198.51.100.1").status_code == 429
    assert login(client, addr="198.51.100.1").headers["Retry-After"] == "30"
    clock.advance(29.5)
    assert login(client, addr="198.51.100.1").headers["Retry-After"] == "1"
    clock.advance(0.5)
    assert login(client, addr="198.51.100.1").status_code == 200
    # The success cleared the username's count: nine more failures do not block it.
    for i in range(9):
        login(client, "admin", "wrong", addr=f"192.0.2.{100 + i}")
    assert login(client, addr="198.51.100.2").status_code == 200


def test_a_success_does_not_clear_the_address_but_is_not_counted_on_it(app, client, admin_user):
    create_test_user(app, "mallory", "pw-mallory")
    for i in range(9):
        assert login(client, f"guess{i}", "wrong", addr="203.0.113.7").status_code == 401
    # Logging into an account of one's own between guesses clears nothing ...
    for _ in range(3):
        assert login(client, "mallory", "pw-mallory", addr="203.0.113.7").status_code == 200
    assert login(client, "guess9", "wrong", addr="203.0.113.7").status_code == 401
    assert login(client, "guess10", "wrong", addr="203.0.113.7").status_code == 429
    # ... and successes themselves are not failures: the address holds exactly 10.
    rows = failure_rows(app)
    assert rows["addr"] == 10
    # Refused attempts are not counted either: the row stays at 10, mallory's at 0.
    assert login(client, "mallory", "pw-mallory", addr="203.0.113.7").status_code == 429
    assert failure_rows(app)["addr"] == 10


def test_refused_attempts_do_not_fill_other_keys(app, client, admin_user):
    for i in range(10):
        login(client, "admin", "wrong", addr=f"192.0.2.{i}")
    # admin is locked; someone at one address keeps trying it, then logs in as bob.
    create_test_user(app, "bob", "pw-bob")
    for _ in range(15):
        assert login(client, addr="198.51.100.9").status_code == 429
    assert login(client, "bob", "pw-bob", addr="198.51.100.9").status_code == 200


def test_rate_limit_is_configurable(make_app):
    app = make_app(LOGIN_RATE_LIMIT=2, LOGIN_RATE_LIMIT_WINDOW=5)
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    client = app.test_client()
    assert [login(client, "admin", "x").status_code for _ in range(3)] == [401, 401, 429]
    assert login(client).headers["Retry-After"] == "5"


def test_rate_limit_zero_turns_the_throttle_off(make_app):
    app = make_app(LOGIN_RATE_LIMIT=0)
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    client = app.test_client()
    assert {login(client, "admin", "x").status_code for _ in range(15)} == {401}
    assert login(client).status_code == 200
    assert failure_rows(app) == {}


def test_keys_fit_the_column_whatever_the_username(app, client):
    name = "ü" * 150  # 300 bytes of UTF-8
    assert login(client, name, "x").status_code == 401
    with app.app_context():
        keys = db.session.execute(select(LoginFailures.key)).scalars().all()
    assert sorted(len(key) for key in keys) == [69, 69]  # "addr:" / "user:" + sha256 hex
    assert sorted(key[:5] for key in keys) == ["addr:", "user:"]


def test_counts_are_shared_by_every_app_on_the_database(make_app):
    # Two apps on one database stand for two worker processes.
    one, two = make_app(), make_app(create_tables=False)
    create_test_user(one, "admin", ADMIN_PASSWORD, admin=True)
    for i in range(10):
        client = (one if i % 2 else two).test_client()
        assert login(client, "admin", "wrong", addr=f"192.0.2.{i}").status_code == 401
    assert login(one.test_client()).status_code == 429
    assert login(two.test_client()).status_code == 429


def test_counting_never_commits_the_callers_session(app, admin_user):
    throttle = app.extensions["login_throttle"]
    with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.1"}):
        pending = User(username="pending", password_hash="x")
        db.session.add(pending)
        assert authenticate("admin", "wrong") == (None, 0)
        assert throttle.retry_after(*_keys("admin")) == 0
        user, wait = authenticate("admin", ADMIN_PASSWORD)
        assert (user.username, wait) == ("admin", 0)
        # Neither committed nor even flushed by the throttle or the lookup.
        assert pending in db.session.new
        db.session.rollback()
    with app.app_context():
        assert db.session.execute(select(User.username)).scalars().all() == ["admin"]
    # The success cleared the username and took itself off the address.
    assert failure_rows(app) == {"addr": 1}


def test_prune_deletes_expired_windows_only(app, client, clock):
    login(client, "old", "x", addr="192.0.2.1")
    clock.advance(45)
    login(client, "new", "x", addr="192.0.2.2")
    clock.advance(15)
    with app.app_context():
        # old's two rows: their window began 60 s ago
        assert app.extensions["login_throttle"].prune() == 2
    assert failure_rows(app) == {"user": 1, "addr": 1}


def test_throttle_counts_exactly_under_threads(app):
    throttle = LoginThrottle(limit=1000, window=60, clock=Clock())
    errors = []

    def hammer():
        try:
            with app.app_context():
                for _ in range(50):
                    assert throttle.attempt("user:x", "addr:y").wait == 0
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert failure_rows(app) == {"user": 400, "addr": 400}
    with app.app_context():
        assert throttle.retry_after("user:x") == 0
        throttle.limit = 400
        assert throttle.retry_after("user:x", "user:other") == 60
        assert throttle.attempt("user:x").wait == 60
    assert failure_rows(app) == {"user": 400, "addr": 400}


def _parallel_logins(app, count, credentials):
    """``count`` logins at once, each thread with its own client; their status codes."""
    barrier = threading.Barrier(count)
    statuses = [None] * count

    def run(i):
        client = app.test_client()
        username, password, addr = credentials(i)
        barrier.wait()
        statuses[i] = login(client, username, password, addr=addr).status_code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Counter(statuses)


ROUNDS = int(os.environ.get("LLM_TRACKER_LOGIN_STRESS_ROUNDS", "5"))


@pytest.mark.slow
def test_parallel_guesses_beyond_the_limit_are_all_refused(app, admin_user):
    """50 wrong passwords at once against a limit of 10: exactly 10 reach the hash."""
    for round_ in range(ROUNDS):
        # The same username from 50 addresses: its count is the one that must hold.
        user = f"victim{round_}"
        create_test_user(app, user, "right-pw")
        by_user = _parallel_logins(
            app, 50, lambda i, u=user, r=round_: (u, "wrong", f"10.{r}.0.{i}")
        )
        assert by_user == {401: 10, 429: 40}, (round_, by_user)
        # 50 usernames from one address: the address's count must hold.
        addr = f"198.51.100.{round_}"
        by_addr = _parallel_logins(app, 50, lambda i, a=addr: (f"name{i}", "wrong", a))
        assert by_addr == {401: 10, 429: 40}, (round_, by_addr)
        # The right password is refused too, until the window ends.
        assert login(app.test_client(), user, "right-pw", addr="192.0.2.200").status_code == 429


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
    response = client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": "The CSRF token is invalid."}
    assert client.get("/api/v1/auth/me").status_code == 401


def test_html_login_and_logout(client, admin_user):
    token = csrf_token(client)
    wrong = client.post("/login", data={"username": "admin", "password": "x", "csrf_token": token})
    assert wrong.status_code == 200
    assert "Invalid username or password." in wrong.get_data(as_text=True)

    response = client.post(
        "/login?next=/api/v1/admin/llm-usage/",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/v1/admin/llm-usage/"
    assert "HttpOnly" in response.headers["Set-Cookie"]
    home = client.get("/")
    assert home.status_code == 200
    # The label is translated by the page's script (data-i18n); the name is the server's.
    assert re.search(r">Logged in as</span> <strong>admin</strong>", home.get_data(as_text=True))
    # Already logged in: the form sends you on.
    assert client.get("/login").headers["Location"] == "/"

    logout = client.get("/logout")
    assert (logout.status_code, logout.headers["Location"]) == (302, "/login")
    assert client.get("/").status_code == 302
    assert client.get("/api/v1/admin/llm-usage/").status_code == 401


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/", "/\\evil", "javascript:alert(1)"]
)
def test_html_login_never_redirects_off_site(client, admin_user, target):
    token = csrf_token(client)
    response = client.post(
        "/login",
        query_string={"next": target},
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/"


def test_html_login_is_throttled(client, admin_user):
    token = csrf_token(client)
    for _ in range(10):
        client.post("/login", data={"username": "admin", "password": "x", "csrf_token": token})
    page = client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
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
        response.get_data(as_text=True)
    )


# --- sessions end on logout, password change and deactivation ------------------------

USAGE = "/api/v1/admin/llm-usage/"


def copy_of_session(app, client):
    """A second client holding a copy of ``client``'s session cookie."""
    other = app.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def test_a_cookie_copied_before_logout_gets_401_after_it(app, client, auth, admin_user):
    assert auth.login().status_code == 200
    copy = copy_of_session(app, client)
    assert copy.get(USAGE).status_code == 200
    assert auth.logout().status_code == 200
    response = copy.get(USAGE)
    assert response.status_code == 401
    assert response.get_json() == {"error": "authentication required: log in first"}
    assert copy.get("/api/v1/auth/me").status_code == 401
    # Logging in again works, with a session the old cookie does not share.
    assert auth.login().status_code == 200
    assert client.get(USAGE).status_code == 200
    assert copy.get(USAGE).status_code == 401


def test_html_logout_ends_copied_sessions_too(app, client, auth, admin_user):
    assert auth.login().status_code == 200
    copy = copy_of_session(app, client)
    assert client.get("/logout").status_code == 302
    assert copy.get(USAGE).status_code == 401
    assert copy.get("/").headers["Location"] == "/login?next=/"


def test_logout_ends_only_that_users_sessions(app, client, auth, admin_user):
    create_test_user(app, "root", "pw-root", admin=True)
    other = app.test_client()
    assert login(other, "root", "pw-root").status_code == 200
    assert auth.login().status_code == 200
    assert auth.logout().status_code == 200
    assert other.get(USAGE).status_code == 200


def test_a_password_change_ends_existing_sessions(app, client, auth, admin_user):
    assert auth.login().status_code == 200
    copy = copy_of_session(app, client)
    with app.app_context():
        user = db.session.get(User, admin_user)
        token = user.session_token
        user.set_password("new-pass-456")
        assert user.session_token != token
        db.session.commit()
    assert client.get(USAGE).status_code == 401
    assert copy.get(USAGE).status_code == 401
    assert auth.login().status_code == 401
    assert auth.login(password="new-pass-456").status_code == 200
    assert client.get(USAGE).status_code == 200


def test_a_first_password_keeps_the_token_it_was_made_with():
    user = User(username="new", session_token="t" * 32)
    user.set_password("first")
    assert user.session_token == "t" * 32


def test_deactivation_ends_existing_sessions(app, client, auth, admin_user):
    assert auth.login().status_code == 200
    copy = copy_of_session(app, client)
    with app.app_context():
        db.session.get(User, admin_user).deactivate()
        db.session.commit()
    # 401, not 403: the cookie no longer names anybody.
    assert copy.get(USAGE).status_code == 401
    assert client.get(USAGE).status_code == 401
    assert auth.login().status_code == 401


@pytest.mark.parametrize(
    "session_id",
    [
        "1",
        "1:",
        ":abc",
        "1:wrong-token",
        "x:y",
        "١:tok",
        "99999999999:tok",
        "2147483648:tok",
        "2:tok",
    ],
)
def test_a_malformed_or_stale_session_id_is_no_user(app, client, admin_user, session_id):
    # "1" is what sessions made before session tokens hold.
    with client.session_transaction() as session:
        session["_user_id"] = session_id
    assert client.get(USAGE).status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401


def test_the_session_holds_id_and_token(app, client, auth, admin_user):
    assert auth.login().status_code == 200
    with app.app_context():
        token = db.session.get(User, admin_user).session_token
    with client.session_transaction() as session:
        assert session["_user_id"] == f"{admin_user}:{token}"


# --- bad input ------------------------------------------------------------------------

NUL_OR_SURROGATE = "username and password must not contain NUL characters or lone surrogates"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"username": "ad\\u0000min", "password": "x"}', "username"),
        ('{"username": "admin", "password": "pw\\u0000"}', "password"),
        ('{"username": "\\ud800", "password": "x"}', "username"),
        ('{"username": "admin", "password": "a\\udfffb"}', "password"),
        ('{"username": "\\u0000", "password": "\\ud83d"}', "password, username"),
    ],
)
def test_api_login_refuses_nul_and_lone_surrogates(client, admin_user, body, field):
    response = client.post(LOGIN, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json() == {"error": f"{NUL_OR_SURROGATE} ({field})"}


def test_api_login_accepts_a_surrogate_pair(client, app):
    create_test_user(app, "emoji\U0001f600", "pw")
    response = client.post(
        LOGIN,
        content_type="application/json",
        data='{"username": "emoji\\ud83d\\ude00", "password": "pw"}',
    )
    assert response.status_code == 200


def test_api_login_refuses_deeply_nested_json(client, admin_user):
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        response = client.post(LOGIN, data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.get_json() == {"error": "JSON body is nested too deeply"}


@pytest.mark.parametrize(
    "data", [{"username": "ad\x00min", "password": "x"}, {"username": "admin", "password": "x\x00"}]
)
def test_html_login_refuses_nul(client, admin_user, data):
    token = csrf_token(client)
    response = client.post("/login", data={**data, "csrf_token": token})
    assert response.status_code == 200
    assert (
        "Username and password must not contain NUL characters or lone surrogates."
        in response.get_data(as_text=True)
    )
    assert client.get("/api/v1/auth/me").status_code == 401


@pytest.mark.parametrize(
    "target", ["/%0d%0aX", "/%0aSet-Cookie:%20x=1", "/a%00b", "/%7f", "/%c2%85x", "/%09x"]
)
def test_next_with_control_characters_goes_to_the_dashboard(client, auth, admin_user, target):
    token = csrf_token(client)
    response = client.post(
        f"/login?next={target}",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token},
    )
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    # Already logged in, the form sends you on the same way.
    response = client.get(f"/login?next={target}")
    assert (response.status_code, response.headers["Location"]) == (302, "/")


def test_next_keeps_a_local_path_with_a_query(client, auth, admin_user):
    assert auth.login().status_code == 200
    response = client.get("/login", query_string={"next": "/usage?model=gpt-4o&page=2"})
    assert response.headers["Location"] == "/usage?model=gpt-4o&page=2"


def test_retry_after_is_the_longest_wait_of_the_keys(app, client, admin_user, clock):
    for i in range(10):
        login(client, "admin", "wrong", addr=f"192.0.2.{i}")
    clock.advance(20)
    for i in range(10):
        login(client, f"guess{i}", "wrong", addr="203.0.113.7")
    clock.advance(10)
    # admin's window has 30 s left, the address's 50 s: the first key counted is the
    # username, but the answer is the address's wait.
    assert login(client, addr="203.0.113.7").headers["Retry-After"] == "50"
    assert login(client, addr="192.0.2.100").headers["Retry-After"] == "30"
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.7"}):
        user_key, addr_key = _keys("admin")
        throttle = app.extensions["login_throttle"]
        assert throttle.attempt(addr_key, user_key).wait == 50
        assert throttle.retry_after(user_key) == 30
    # Refusals counted nothing: still 10 each.
    assert sorted(failure_rows_all(app)) == [1] * 20 + [10, 10]


def failure_rows_all(app):
    with app.app_context():
        return db.session.execute(select(LoginFailures.failures)).scalars().all()
