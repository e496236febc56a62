"""create_app: defaults -> instance/config.py -> environment -> test_config."""

from admin_app import create_app


def test_sources_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TRACKER_INSTANCE_PATH", str(tmp_path))
    (tmp_path / "config.py").write_text(
        "GREETING = 'file'\nCOLOUR = 'file'\nSIZE = 'file'\n"
        "SQLALCHEMY_DATABASE_URI = 'sqlite:///file.db'\n"
    )
    monkeypatch.setenv("FLASK_COLOUR", '"env"')
    monkeypatch.setenv("FLASK_SIZE", "3")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")

    app = create_app({"SIZE": 4})
    assert app.instance_path == str(tmp_path)
    assert app.config["GREETING"] == "file"
    assert app.config["COLOUR"] == "env"
    assert app.config["SIZE"] == 4
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'env.db'}"
    assert app.config["LLM_TRACKER_SPOOL_PATH"] == str(tmp_path / "llm_tracker_spool.jsonl")

    assert create_app().config["SIZE"] == 3


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TRACKER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == (
        f"sqlite:///{tmp_path / 'llm_tracker.sqlite3'}"
    )
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["SESSION_COOKIE_SECURE"] is False
    # A generated secret key is kept, so sessions survive a restart.
    key = app.config["SECRET_KEY"]
    assert len(key) == 64 and create_app().config["SECRET_KEY"] == key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
