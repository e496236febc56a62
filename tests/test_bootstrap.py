"""First start: an admin with a printed password and demo rows; `make run`'s commands."""

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.helpers import free_port

from llm_tracker import LLMUsage, User, db, flush

ROOT = Path(__file__).resolve().parents[1]


def test_bootstrap_on_empty_database_only(app, runner):
    result = runner.invoke(args=["bootstrap"])
    assert result.exit_code == 0, result.output
    flush()  # bootstrap records the demo rows and returns without flushing them
    password = re.search(r"password: (\S+)", result.output).group(1)
    with app.app_context():
        admin = db.session.execute(select(User).filter_by(username="admin")).scalar_one()
        assert admin.is_admin and admin.check_password(password)
        users = db.session.execute(select(func.count()).select_from(User)).scalar_one()
        rows, demo_users = db.session.execute(
            select(func.count(), func.count(func.distinct(LLMUsage.user_id)))
        ).one()
    assert (users, rows, demo_users) == (3, 400, 2)

    again = runner.invoke(args=["bootstrap"])
    assert again.exit_code == 0 and again.output == ""
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(LLMUsage)).scalar_one() == 400


@pytest.mark.slow
def test_make_run_commands_serve_the_app(tmp_path):
    """What `make run` does, in a fresh instance folder: upgrade, bootstrap, serve."""
    env = {**os.environ, "LLM_TRACKER_INSTANCE_PATH": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    upgrade = subprocess.run(
        [*flask, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr
    boot = subprocess.run(
        [*flask, "bootstrap"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert boot.returncode == 0, boot.stderr
    assert re.search(r"username: admin\n\s+password: \S{12,}", boot.stdout)

    port = free_port()
    server = subprocess.Popen(
        [*flask, "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login") as resp:
                    status = resp.status
                break
            except urllib.error.HTTPError as exc:
                status = exc.code
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200
    finally:
        server.terminate()
        server.wait(timeout=10)
