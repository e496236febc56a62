"""A real 4-worker gunicorn serving the app in background mode, with and without
``--preload``: each worker records through its own writer and journal, and a graceful stop
(SIGTERM) leaves every row in the database exactly once.

The writer's interval is an hour, so no worker commits on its own while the test runs:
every row is in a worker's journal until the stop, and only the flush each worker runs as
it exits can write it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from llm_tracker import LLMUsage, db, get_spool
from llm_tracker.writer import journal_dir, orphan_journals

pytest.importorskip("gunicorn", reason="in the server extra: pip install -e '.[server]'")

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 4
REQUESTS = 400
CLIENTS = 8
DEADLINE_S = 90  # for the start, the requests and the stop, each


def _get(port: int, path: str, method: str = "GET") -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:500])
        return json.loads(body)
    finally:
        conn.close()


def _wait_until_serving(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        try:
            _get(port, "/pid")
            return
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not serve within {DEADLINE_S} s:\n{log.read_text()}")
            time.sleep(0.2)


def _journals(app) -> dict[int, list[Path]]:
    """This app's journal files by the pid in their name (journal-<host>-<pid>-<rand>)."""
    found: dict[int, list[Path]] = {}
    directory = Path(journal_dir(app))
    for path in directory.glob("journal-*.jsonl") if directory.is_dir() else []:
        pid = int(path.name.rsplit("-", 2)[1])
        found.setdefault(pid, []).append(path)
    return found


def _lines(path: Path) -> int:
    rows = path.read_text(encoding="utf-8").partition("\x00")[0]  # the rest of a segment is NUL
    return sum(1 for line in rows.split("\n") if line.strip())


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_four_gunicorn_workers_each_journal_and_a_graceful_stop_writes_every_row_once(
    make_app, database_url, tmp_path, preload
):
    from support.rollup_check import assert_rollups_match

    instance = tmp_path / "instance"
    config = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "test-secret",
        "LLM_TRACKER_WRITE_MODE": "background",
        "LLM_TRACKER_INSTANCE_PATH": str(instance),
        "LLM_TRACKER_SPOOL_PATH": str(tmp_path / "spool.jsonl"),
        "LLM_TRACKER_FLUSH_INTERVAL_MS": 3_600_000,  # only the stop's flush commits
    }
    app = make_app(**config)  # creates the tables; this process records nothing

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # loopback only; the port is free since it is bound
    listener.listen(128)
    port = listener.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(WORKERS),
        "--bind",
        f"fd://{listener.fileno()}",
        "--pythonpath",
        f"{ROOT},{ROOT / 'tests'}",
        "--graceful-timeout",
        "60",
        "--timeout",
        "120",
        "--log-level",
        "info",
        *(["--preload"] if preload else []),
        "support.gunicorn_app:app",
    ]
    env = {**os.environ, "LLM_TRACKER_TEST_APP_CONFIG": json.dumps(config)}
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
            cwd=tmp_path,
        )
    listener.close()  # gunicorn holds it now
    try:
        _wait_until_serving(server, port, log)

        def call(i: int) -> int:
            return _get(port, f"/record?run_id=g-{i}&tokens={i}&hold_ms=5", "POST")["pid"]

        with ThreadPoolExecutor(CLIENTS) as pool:
            pids = list(pool.map(call, range(REQUESTS), timeout=DEADLINE_S))
        served_by = set(pids)
        assert len(served_by) >= 2, f"every request went to one worker: {served_by}"
        assert server.pid not in served_by

        # While they run: one journal per worker that served, named by its pid, locked by
        # it (none is an orphan), holding exactly the rows that worker recorded; the
        # master (which imported the app under --preload) has none.
        journals = _journals(app)
        assert set(journals) == served_by, (journals, served_by)
        assert all(len(paths) == 1 for paths in journals.values()), journals
        for pid, [path] in journals.items():
            assert _lines(path) == pids.count(pid), (pid, path)
        assert orphan_journals(app) == []
        with app.app_context():
            assert db.session.execute(select(func.count()).select_from(LLMUsage)).scalar() == 0
            db.session.remove()

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=DEADLINE_S) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)

    log_text = log.read_text()
    assert "Traceback" not in log_text, log_text
    # Every row exactly once, written by the workers' own flush at exit: their journals
    # are empty (nothing left for a later replay) and nothing was spooled.
    for paths in _journals(app).values():
        assert [_lines(path) for path in paths] == [0] * len(paths)
    with app.app_context():
        assert get_spool().rows() == []
        count, distinct, tokens = db.session.execute(
            select(
                func.count(),
                func.count(func.distinct(LLMUsage.run_id)),
                func.sum(LLMUsage.prompt_tokens),
            )
        ).one()
        run_ids = set(db.session.execute(select(LLMUsage.run_id)).scalars())
        assert_rollups_match()
    assert (count, distinct, tokens) == (REQUESTS, REQUESTS, sum(range(REQUESTS)))
    assert run_ids == {f"g-{i}" for i in range(REQUESTS)}
    print(
        f"\npreload={preload}: {REQUESTS} requests served by {len(served_by)} workers "
        f"({sorted(pids.count(p) for p in served_by)} each)"
    )
