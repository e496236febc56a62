"""Background mode: record_usage journals and returns; the writer commits in batches; flush()
waits for it; nothing is lost to an outage, a kill -9 or a fork."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from llm_tracker import LLMUsage, db, flush, get_spool, record_usage
from llm_tracker.llm_usage_stats import get_summary_stats
from llm_tracker.writer import journal_dir, orphan_journals, writer_for

ROOT = Path(__file__).resolve().parents[1]
WHEN = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _background(make_app, tmp_path, **config):
    return make_app(
        LLM_TRACKER_WRITE_MODE="background", LLM_TRACKER_INSTANCE_PATH=str(tmp_path), **config
    )


def _counts(app) -> tuple[int, int, int]:
    """Rows, distinct run ids, sum of prompt tokens."""
    with app.app_context():
        return tuple(
            db.session.execute(
                select(
                    func.count(),
                    func.count(func.distinct(LLMUsage.run_id)),
                    func.coalesce(func.sum(LLMUsage.prompt_tokens), 0),
                )
            ).one()
        )


def _journal_rows(app) -> int:
    directory = journal_dir(app)
    if not os.path.isdir(directory):
        return 0
    total = 0
    for name in os.listdir(directory):
        if name.endswith(".jsonl"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                rows = f.read().partition("\x00")[0]  # the unused rest of a segment is NUL
                total += sum(1 for line in rows.split("\n") if line.strip())
    return total


def test_threads_record_and_flush_commits_every_row_once(make_app, tmp_path):
    from support.rollup_check import assert_rollups_match

    app = _background(make_app, tmp_path, LLM_TRACKER_BATCH_SIZE=64)
    per_thread = 250

    def work(t: int) -> None:
        with app.app_context():
            for i in range(per_thread):
                record_usage(
                    ("gpt-4o-mini", "acme-llm-7")[i % 2],
                    prompt_tokens=t * 1000 + i,
                    completion_tokens=1,
                    user_id=(None, 1, 2)[i % 3],
                    node_name=f"n{i % 4}",
                    run_id=f"t{t}-{i}",
                    created_at=WHEN + timedelta(minutes=i),
                )

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.app_context():
        flush()
        assert writer_for(app).pending() == 0
        assert_rollups_match()
    expected = sum(t * 1000 + i for t in range(8) for i in range(per_thread))
    assert _counts(app) == (8 * per_thread, 8 * per_thread, expected)
    assert _journal_rows(app) == 0  # committed rows leave the journal
    with app.app_context():
        assert flush() == 0  # nothing left to write


def test_flush_returns_how_many_it_wrote_and_rows_are_returned_at_once(make_app, tmp_path):
    # A long interval: only flush() makes the writer commit.
    app = _background(make_app, tmp_path, LLM_TRACKER_FLUSH_INTERVAL_MS=3_600_000)
    with app.app_context():
        rows = [record_usage("gpt-4o-mini", 10 + i, 2, run_id=f"r{i}") for i in range(5)]
        assert [r.prompt_tokens for r in rows] == [10, 11, 12, 13, 14]
        assert rows[0].cost_usd is not None  # priced before it is journaled
        assert _counts(app) == (0, 0, 0)
        assert _journal_rows(app) == 5
        assert flush() == 5
    assert _counts(app) == (5, 5, 60)


def test_a_duplicate_run_id_in_a_batch_is_one_row(make_app, tmp_path):
    from support.rollup_check import assert_rollups_match

    app = _background(make_app, tmp_path, LLM_TRACKER_FLUSH_INTERVAL_MS=3_600_000)
    with app.app_context():
        record_usage("gpt-4o-mini", 10, 2, run_id="same", created_at=WHEN)
        # The second, different row of the same run is the one left out, rollups included.
        record_usage("gpt-4o", 99, 7, run_id="same", created_at=WHEN + timedelta(days=1))
        record_usage("gpt-4o-mini", 3, 1, run_id="other", created_at=WHEN)
        flush()
        assert_rollups_match()
        assert get_summary_stats()["total_calls"] == 2
        assert db.session.execute(
            select(LLMUsage.model, LLMUsage.completion_tokens).where(LLMUsage.run_id == "same")
        ).all() == [("gpt-4o-mini", 2)]
    assert _counts(app) == (2, 2, 13)


def test_outage_spools_the_batch_and_the_writer_replays_it_when_back(
    make_app, database_url, tmp_path
):
    from support.db_faults import outage

    with outage(
        make_app,
        database_url,
        LLM_TRACKER_WRITE_MODE="background",
        LLM_TRACKER_INSTANCE_PATH=str(tmp_path),
    ) as (app, cut, restore):
        with app.app_context():
            record_usage("gpt-4o-mini", 1, 1, run_id="before")
            flush()
            cut()
            for i in range(20):
                record_usage("gpt-4o-mini", 100 + i, 1, run_id=f"down-{i}")
            flush(timeout=60)  # the writer tried, failed and spooled
            assert len(get_spool().rows()) == 20
            restore()
            record_usage("gpt-4o-mini", 5, 1, run_id="after")
            flush()
            # The first batch after the outage also wrote the spool back.
            assert get_spool().rows() == []
        assert _counts(app) == (22, 22, 1 + sum(100 + i for i in range(20)) + 5)


def test_a_stalled_database_holds_the_writer_for_its_timeout_and_no_caller(
    make_app, database_url, tmp_path
):
    from support.db_faults import stall

    with stall(
        make_app,
        database_url,
        LLM_TRACKER_WRITE_MODE="background",
        LLM_TRACKER_INSTANCE_PATH=str(tmp_path),
        LLM_TRACKER_WRITER_TIMEOUT_S=1,
        LLM_TRACKER_FLUSH_INTERVAL_MS=20,
    ) as (app, pause, resume):
        with app.app_context():
            record_usage("gpt-4o-mini", 1, 1, run_id="before")
            assert flush() == 1
        pause()
        try:

            def call(worker: int) -> None:
                with app.app_context():
                    for i in range(25):
                        record_usage("gpt-4o-mini", 1000 * worker + i, 1, run_id=f"w{worker}-{i}")

            threads = [threading.Thread(target=call, args=(w,)) for w in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            # Every caller returned while the database was still stalled.
            assert not any(t.is_alive() for t in threads)
            # The writer gave up on each try after its 1 s timeout and spooled the rows.
            with app.app_context():
                assert flush(timeout=60) == 0
                assert writer_for(app).pending() == 0
                assert len(get_spool().rows()) == 200
        finally:
            resume()
        with app.app_context():
            record_usage("gpt-4o-mini", 5, 1, run_id="after")
            flush()
            assert get_spool().rows() == []
        expected = 1 + sum(1000 * w + i for w in range(8) for i in range(25)) + 5
        assert _counts(app) == (202, 202, expected)


def test_a_row_the_database_refuses_is_dead_lettered_and_the_batch_written(
    make_app, database_url, tmp_path
):
    from support.db_faults import REFUSED_MODEL, refuse_a_model

    app = _background(make_app, tmp_path, LLM_TRACKER_FLUSH_INTERVAL_MS=3_600_000)
    with app.app_context():
        refuse_a_model(database_url)
        for i in range(9):
            record_usage(REFUSED_MODEL if i == 4 else "gpt-4o-mini", 10, 1, run_id=f"b{i}")
        assert flush() == 8
        [dead] = get_spool().dead.entries()
    assert dead.row["run_id"] == "b4"
    assert dead.reason.startswith("database refused the row: ")
    assert _counts(app) == (8, 8, 80)


_RECORDER = """
import os, sys
sys.path[:0] = {paths!r}
from admin_app import create_app
from llm_tracker import record_usage
app = create_app({config!r})
with app.app_context():
    for i in range({rows}):
        record_usage("gpt-4o-mini", 10 + i, 1, run_id=f"killed-{{i}}")
print("recorded", flush=True)
sys.stdin.read()  # wait to be killed
"""


@pytest.mark.slow
def test_kill_9_loses_nothing_recorded_and_the_next_start_writes_it_once(
    make_app, database_url, tmp_path
):
    app = _background(make_app, tmp_path)
    config = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "x",
        "LLM_TRACKER_WRITE_MODE": "background",
        "LLM_TRACKER_INSTANCE_PATH": str(tmp_path),
        "LLM_TRACKER_SPOOL_PATH": app.config["LLM_TRACKER_SPOOL_PATH"],
        # The writer never gets to commit: every row is in the journal only.
        "LLM_TRACKER_FLUSH_INTERVAL_MS": 3_600_000,
        "LLM_TRACKER_BATCH_SIZE": 10**6,
    }
    script = _RECORDER.format(paths=[str(ROOT), str(ROOT / "tests")], config=config, rows=300)
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "recorded"
        assert orphan_journals(app) == []  # its journal is locked while it lives
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdin.close()
        child.stdout.close()
    assert _counts(app) == (0, 0, 0)
    assert _journal_rows(app) == 300
    [orphan] = orphan_journals(app)
    status = app.test_cli_runner().invoke(args=["spool", "status"])
    assert "journals of stopped processes: 1 (300 rows; replay writes them)" in status.output
    # The next process to record (here: this one) replays it, exactly once.
    with app.app_context():
        record_usage("gpt-4o-mini", 1, 1, run_id="next")
        flush()
    assert _counts(app) == (301, 301, sum(10 + i for i in range(300)) + 1)
    assert not os.path.exists(orphan)
    again = app.test_cli_runner().invoke(args=["spool", "replay"])
    assert again.exit_code == 0, again.output
    assert _counts(app) == (301, 301, sum(10 + i for i in range(300)) + 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_has_its_own_writer_and_journal(make_app, tmp_path):
    app = _background(make_app, tmp_path)
    with app.app_context():
        record_usage("gpt-4o-mini", 1, 1, run_id="parent-1")
        parent = writer_for(app)
        parent_fd = parent._segments[0].fd
        pid = os.fork()
        if pid == 0:  # the child: record, flush, leave without running the parent's atexit
            code = 1
            try:
                # The parent's journal descriptor is closed here: a copy would share the
                # parent's lock and keep its journal from replay once the parent died.
                try:
                    os.fstat(parent_fd)
                except OSError:
                    pass
                else:
                    raise AssertionError("the child kept the parent's journal open")
                child = writer_for(app)
                assert child is not parent and child.pid == os.getpid()
                for i in range(50):
                    record_usage("gpt-4o-mini", 2, 1, run_id=f"child-{i}")
                flush()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        record_usage("gpt-4o-mini", 1, 1, run_id="parent-2")
        assert writer_for(app) is parent
        flush()
    assert _counts(app) == (52, 52, 102)


def test_sync_mode_writes_in_the_callers_transaction(make_app, tmp_path):
    app = make_app(LLM_TRACKER_WRITE_MODE="sync", LLM_TRACKER_INSTANCE_PATH=str(tmp_path))
    with app.app_context():
        record_usage("gpt-4o-mini", 10, 2)
    assert _counts(app) == (1, 1, 10)  # no flush needed
    assert _journal_rows(app) == 0


def test_an_unknown_write_mode_is_a_one_line_config_error(make_app):
    from llm_tracker import ConfigError

    with pytest.raises(
        ConfigError, match="LLM_TRACKER_WRITE_MODE must be one of background, sync, got 'later'"
    ):
        make_app(LLM_TRACKER_WRITE_MODE="later")


def test_journal_lines_are_the_rows(make_app, tmp_path):
    app = _background(make_app, tmp_path, LLM_TRACKER_FLUSH_INTERVAL_MS=3_600_000)
    with app.app_context():
        row = record_usage("gpt-4o-mini", 7, 3, run_id="j1", user_id=42)
        [name] = os.listdir(journal_dir(app))
        with open(os.path.join(journal_dir(app), name), encoding="utf-8") as f:
            journal = f.read()
        flush()
    # One line, then the segment's unused (NUL) rest.
    line, _, rest = journal.partition("\n")
    assert rest.strip("\x00") == ""
    stored = json.loads(line)
    assert (stored["run_id"], stored["prompt_tokens"], stored["user_id"]) == ("j1", 7, 42)
    assert stored["cost_usd"] == str(row.cost_usd)


def test_every_cli_command_ends_with_its_rows_committed(make_app, tmp_path):
    import click

    # The writer would wait an hour: only the command's end commits the rows.
    app = _background(make_app, tmp_path, LLM_TRACKER_FLUSH_INTERVAL_MS=3_600_000)

    @app.cli.command("record-one")
    def record_one():
        record_usage("gpt-4o-mini", 1, 1, run_id="cli-ok")

    @app.cli.command("record-and-fail")
    def record_and_fail():
        record_usage("gpt-4o-mini", 2, 1, run_id="cli-failed")
        raise click.ClickException("the command failed after recording")

    runner = app.test_cli_runner()
    assert runner.invoke(args=["record-one"]).exit_code == 0
    assert _counts(app) == (1, 1, 1)
    result = runner.invoke(args=["record-and-fail"])
    assert result.exit_code == 1 and "the command failed" in result.output
    assert _counts(app) == (2, 2, 3)
