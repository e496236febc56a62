"""Fixtures: an app on a fresh database per test (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import gc
import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admin_app import create_app
from llm_tracker import db
from llm_tracker.writer import close_writer

PG_URL = os.environ.get("LLM_TRACKER_TEST_POSTGRES_URL")
# The write mode every test app uses (unset: the product's default).
WRITE_MODE = os.environ.get("LLM_TRACKER_TEST_WRITE_MODE")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build an app on this test's database; keyword arguments override config."""
    apps = []

    def factory(create_tables: bool = True, **config):
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "test-secret",
                "SQLALCHEMY_DATABASE_URI": database_url,
                "LLM_TRACKER_SPOOL_PATH": str(tmp_path / "spool.jsonl"),
                # The journal too: every test keeps its own.
                "LLM_TRACKER_INSTANCE_PATH": str(tmp_path),
                **({"LLM_TRACKER_WRITE_MODE": WRITE_MODE} if WRITE_MODE else {}),
                **config,
            }
        )
        if create_tables:
            with app.app_context():
                db.create_all()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        close_writer(app, timeout=30)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def app_ctx(app):
    """The ``app`` fixture's app, with an app context pushed for the whole test.

    For a test that simply runs inside one context. Not with the test client or CLI runner
    in between: a request on a pushed context reuses it (its ``g`` and database session),
    so such tests push their own contexts around the parts that need one.
    """
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def _fake_provider_server():
    from support.fake_provider import FakeProviderServer

    server = FakeProviderServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_provider(_fake_provider_server):
    """The fake OpenAI / Azure / Gemini server on 127.0.0.1, reset for this test."""
    _fake_provider_server.reset()
    yield _fake_provider_server
    gc.collect()  # this test's SDK clients, under its SDK_UNCLOSED filter (below)


# The SDK clients a test builds (get_llm_service() builds new ones for each service,
# sdk_support one per model) keep pooled connections to the fake provider and close them
# only in their __del__, and an async client's connections belong to the event loop of an
# asyncio.run() that has ended. Once such a client is in a reference cycle (pytest.raises
# keeps the traceback, and the traceback the frames that hold the model), the collector
# may finalize a socket before the client that would have closed it: "unclosed <socket"
# or "unclosed transport" ResourceWarnings from openai, google-genai and anthropic's httpx
# pools. A ResourceWarning names no module to filter on (it is raised in whatever frame
# the collector interrupts), so this ignore applies to the tests that use the fake
# provider only; the fixture collects their garbage before the next test starts.
SDK_UNCLOSED = (
    r"ignore:unclosed (<socket\.socket |transport <_SelectorSocketTransport )"
    ":ResourceWarning"
)


def pytest_collection_modifyitems(items):
    for item in items:
        if "fake_provider" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.filterwarnings(SDK_UNCLOSED))


# --- users and logging in ----------------------------------------------------------------

ADMIN_PASSWORD = "admin-pass-123"
USER_PASSWORD = "user-pass-123"


def create_test_user(app, username, password, *, admin=False, active=True):
    """Add a user directly (a cheap hash keeps tests fast; the CLI tests cover scrypt)."""
    from werkzeug.security import generate_password_hash

    from llm_tracker import User

    with app.app_context():
        user = User(
            username=username,
            is_staff=admin,
            is_superuser=admin,
            is_active=active,
            password_hash=generate_password_hash(password, method="pbkdf2:sha256:1000"),
        )
        db.session.add(user)
        db.session.commit()
        return user.id


@pytest.fixture
def admin_user(app):
    """An active admin ``admin`` / ADMIN_PASSWORD; its id."""
    return create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)


@pytest.fixture
def regular_user(app):
    """An active non-admin ``alice`` / USER_PASSWORD; its id."""
    return create_test_user(app, "alice", USER_PASSWORD)


class AuthActions:
    """Log the test client in and out through the JSON API."""

    def __init__(self, client):
        self._client = client

    def login(self, username="admin", password=ADMIN_PASSWORD):
        return self._client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )

    def logout(self):
        return self._client.post("/api/v1/auth/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)
