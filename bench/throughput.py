"""Write throughput: rows recorded per second through UsageHandler, threads and processes.

Each writer invokes an in-process fake chat model (no network) with one shared
UsageHandler, so every call becomes one row. Runs with 1, 4 and 8 threads and with 4
processes, on SQLite (file, WAL) and PostgreSQL, next to a raw INSERT + COMMIT loop on a
plain DBAPI connection in the same run: bare (the database's own speed) and as a
minimal callback handler on the same fake-model invokes (the like-for-like baseline).
Ends by counting rows: none may be lost, and the rollups (kept by UsageHandler's writes
in the same transaction) must count exactly the UsageHandler rows.

    .venv/bin/python bench/throughput.py [--calls 2000] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.outputs import ChatGeneration, LLMResult
from sqlalchemy import text

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from overhead import (  # noqa: E402
    DEFAULT_PG,
    REPLY,
    RawInsertHandler,
    bench_schema,
    raw_connection,
)

from admin_app import create_app  # noqa: E402
from llm_tracker import UsageHandler, db, get_spool  # noqa: E402


def make_app(url: str, spool: str):
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "LLM_TRACKER_SPOOL_PATH": spool})


def invoke_many(app, calls: int) -> None:
    model = GenericFakeChatModel(messages=itertools.repeat(REPLY))
    handler = UsageHandler({"user_id": 1}, node_name="bench", app=app)
    for _ in range(calls):
        model.invoke("hi", config={"callbacks": [handler]})


def threads_run(app, threads: int, calls: int) -> float:
    model = GenericFakeChatModel(messages=itertools.repeat(REPLY))
    handler = UsageHandler({"user_id": 1}, node_name="bench", app=app)

    def work():
        for _ in range(calls):
            model.invoke("hi", config={"callbacks": [handler]})

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return threads * calls / (time.perf_counter() - start)


def _process_main(url: str, spool: str, calls: int, ready, go) -> None:
    app = make_app(url, spool)
    ready.wait()
    go.wait()
    invoke_many(app, calls)


def processes_run(url: str, spool: str, processes: int, calls: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(processes + 1)
    go = ctx.Barrier(processes + 1)
    procs = [ctx.Process(target=_process_main, args=(url, spool, calls, ready, go))
             for _ in range(processes)]
    for p in procs:
        p.start()
    ready.wait()  # every process has built its app: time the writes only
    start = time.perf_counter()
    go.wait()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"writer process failed with exit code {p.exitcode}")
    return processes * calls / (time.perf_counter() - start)


def raw_loop(url: str, calls: int, through_langchain: bool) -> float:
    """Rows/s of the raw INSERT handler: called directly, or on real (fake-model) invokes."""
    conn, style = raw_connection(url)
    handler = RawInsertHandler(conn, style)
    model = GenericFakeChatModel(messages=itertools.repeat(REPLY))
    result = LLMResult(generations=[[ChatGeneration(message=REPLY)]])
    start = time.perf_counter()
    for _ in range(calls):
        if through_langchain:
            model.invoke("hi", config={"callbacks": [handler]})
        else:
            handler.on_llm_end(result, run_id=uuid.uuid4())
    rate = calls / (time.perf_counter() - start)
    conn.close()
    return rate


def bench_backend(name: str, url: str, calls: int) -> None:
    url = bench_schema(url)
    spool = os.path.join(tempfile.mkdtemp(), "spool.jsonl")
    app = make_app(url, spool)
    with app.app_context():
        db.drop_all()
        db.create_all()
    print(f"\n{name}: {calls} calls per writer")
    bare = raw_loop(url, calls, through_langchain=False)
    print(f"  raw INSERT loop, bare          {bare:8.0f} rows/s   (no LangChain at all)")
    raw = raw_loop(url, calls, through_langchain=True)
    print(f"  raw INSERT handler, 1 thread   {raw:8.0f} rows/s   (the baseline below)")
    expected = 2 * calls
    for threads in (1, 4, 8):
        rate = threads_run(app, threads, calls)
        expected += threads * calls
        print(f"  UsageHandler, {threads} thread(s)      {rate:8.0f} rows/s"
              f"   ({rate / raw:.2f}x raw)")
    rate = processes_run(url, spool, 4, calls)
    expected += 4 * calls
    print(f"  UsageHandler, 4 processes      {rate:8.0f} rows/s   ({rate / raw:.2f}x raw)")
    with app.app_context():
        stored = db.session.execute(text("SELECT count(*) FROM llm_tracker_usage")).scalar()
        spooled = len(get_spool().rows())
        rolled = db.session.execute(text(
            "SELECT coalesce(sum(calls), 0) FROM llm_tracker_usage_rollup")).scalar()
        db.session.remove()
        db.drop_all()
    lost = expected - stored - spooled
    print(f"  rows stored: {stored}, spooled: {spooled}, expected: {expected}, lost: {lost}")
    # The two raw loops wrote 2 * calls rows that bypass record_usage (no rollups).
    print(f"  rollup calls: {rolled} (UsageHandler rows stored: {stored - 2 * calls})")
    if lost:
        raise SystemExit(f"{lost} rows lost")
    if rolled != stored - 2 * calls:
        raise SystemExit("the rollups do not match the rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get(
        "LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_backend("SQLite (file, WAL)", f"sqlite:///{tmp}/bench.sqlite3", args.calls)
    if not args.no_postgres:
        bench_backend("PostgreSQL", args.postgres, args.calls)


if __name__ == "__main__":
    main()
