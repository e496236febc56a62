"""Write throughput: rows committed per second through UsageHandler, threads and processes.

Each writer invokes an in-process fake chat model (no network), so every call becomes one
row. Each recorder with 1 thread, 8 threads and 4 processes, on SQLite (file, WAL) and
PostgreSQL, interleaved in one run:

- **no handler**: the invokes alone, no row: the ceiling any recorder can reach;
- **raw INSERT handler** (the baseline): one hand-written INSERT + COMMIT per call on a
  plain DBAPI connection, one connection per thread or process;
- **UsageHandler, background** (the default mode): ``record_usage`` journals the row, a
  writer thread per process commits batches; the clock stops when ``flush()`` has
  returned in every writer process, so the figure is rows *committed* per second;
- **UsageHandler, sync**: the row and its rollups committed in the caller's thread.

Threads share one handler (as an app does); processes are spawned, and the clock starts
when all have built their app and connection. Ends by counting rows: none lost, none
doubled, none spooled, and the rollups (both levels) count each UsageHandler row once.

    .venv/bin/python bench/throughput.py [--calls 2000] [--rounds 1]
                                         [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from overhead import (  # noqa: E402
    DEFAULT_PG,
    REPLY,
    RawInsertHandler,
    bench_schema,
    count_rows,
    make_apps,
    raw_connection,
)

import llm_tracker  # noqa: E402
from llm_tracker import UsageHandler, db  # noqa: E402

RECORDERS = ("no handler", "raw INSERT handler", "UsageHandler, background", "UsageHandler, sync")
NODE = {
    "raw INSERT handler": "n",
    "UsageHandler, background": "bg",
    "UsageHandler, sync": "sync",
}  # the rows of each recorder (no handler: none)
SHAPES = (("1 thread", 1, 0), ("8 threads", 8, 0), ("4 processes", 0, 4))
TARGET = 2.0  # background's rows/s over the raw INSERT handler's, 8 threads and 4 processes


class Recorder:
    """What one process needs to record through one of the RECORDERS."""

    def __init__(self, kind: str, url: str, instance: str, apps=None) -> None:
        self.kind = kind
        self.url = url
        if kind in ("UsageHandler, background", "UsageHandler, sync"):
            app_bg, app_sync = apps or make_apps(url, instance)
            app = app_bg if kind == "UsageHandler, background" else app_sync
            # One handler shared by the threads of the process, as an app does.
            self.shared = UsageHandler({"user_id": 1}, node_name=NODE[kind], app=app)

    def handler(self):
        """A handler for one thread (and what to close after it)."""
        if self.kind == "no handler":
            return None, None
        if self.kind == "raw INSERT handler":
            conn, style = raw_connection(self.url, timeout=60)
            return RawInsertHandler(conn, style), conn
        return self.shared, None

    def finish(self) -> None:
        """Wait until every row this process recorded is committed."""
        if self.kind == "UsageHandler, background":
            llm_tracker.flush()


def invoke_many(handler, calls: int) -> None:
    model = GenericFakeChatModel(messages=itertools.repeat(REPLY))
    config = {"callbacks": [] if handler is None else [handler]}
    for _ in range(calls):
        model.invoke("hi", config=config)


def threads_run(recorder: Recorder, threads: int, calls: int) -> float:
    """Rows committed per second by ``threads`` threads of this process."""
    start_line = threading.Barrier(threads + 1)

    def work() -> None:
        handler, conn = recorder.handler()  # in the thread: a connection per thread
        start_line.wait()
        invoke_many(handler, calls)
        if conn is not None:
            conn.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    start_line.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    recorder.finish()
    return threads * calls / (time.perf_counter() - start)


def _process_main(kind: str, url: str, instance: str, calls: int, events, go) -> None:
    recorder = Recorder(kind, url, instance)
    handler, conn = recorder.handler()
    invoke_many(handler, 5)  # warm the paths (5 rows more, counted by the parent)
    recorder.finish()
    events.put("ready")
    go.wait()
    invoke_many(handler, calls)
    recorder.finish()
    events.put("done")
    if conn is not None:
        conn.close()


def _await(events, procs, message: str, timeout: float = 600) -> None:
    """One ``message`` per process from ``events``; stops if a process dies first."""
    deadline = time.monotonic() + timeout
    for _ in procs:
        while True:
            try:
                got = events.get(timeout=0.05)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    for p in procs:
                        p.kill()
                    raise SystemExit(
                        f"writer processes failed (exit codes {dead}) or timed"
                        f" out waiting for {message!r}"
                    ) from None
                continue
            assert got == message, got
            break


def processes_run(kind: str, url: str, instance: str, processes: int, calls: int) -> float:
    """Rows committed per second by ``processes`` spawned processes, one thread each."""
    ctx = multiprocessing.get_context("spawn")
    events, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_process_main, args=(kind, url, instance, calls, events, go))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    _await(events, procs, "ready")  # every process has built its app and connection
    start = time.perf_counter()
    go.set()
    _await(events, procs, "done")  # every process has committed its rows (flush returned)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"writer process failed with exit code {p.exitcode}")
    return processes * calls / elapsed


def bench_backend(name: str, url: str, calls: int, rounds: int) -> dict:
    url = bench_schema(url)
    instance = tempfile.mkdtemp(prefix="llm_tracker_bench_")
    apps = make_apps(url, instance)
    with apps[1].app_context():
        db.drop_all()
        db.create_all()
    recorders = {kind: Recorder(kind, url, instance, apps) for kind in RECORDERS}
    for recorder in recorders.values():  # warm up every path in this process
        handler, conn = recorder.handler()
        invoke_many(handler, 20)
        recorder.finish()
        if conn is not None:
            conn.close()
    expected = dict.fromkeys(NODE, 20)
    samples: dict[tuple[str, str], list[float]] = {}
    for i in range(rounds):
        for shape, threads, processes in SHAPES:
            # Interleaved, each round starting one further along.
            order = RECORDERS[i % 4 :] + RECORDERS[: i % 4]
            for kind in order:
                if processes:
                    rate = processes_run(kind, url, instance, processes, calls)
                    if kind in expected:
                        expected[kind] += processes * (calls + 5)
                else:
                    rate = threads_run(recorders[kind], threads, calls)
                    if kind in expected:
                        expected[kind] += threads * calls
                samples.setdefault((shape, kind), []).append(rate)
    llm_tracker.flush()
    counts = count_rows(apps[1], nodes=NODE.values())
    with apps[1].app_context():
        db.session.remove()
        db.drop_all()
    shutil.rmtree(instance, ignore_errors=True)

    print(
        f"\n{name}: {calls} calls per thread or process, {rounds} round(s), rows committed"
        " per second (median over rounds; ratio to the raw INSERT handler in the same shape)"
    )
    print(f"  {'':12s}" + "".join(f"{kind:>27s}" for kind in RECORDERS))
    result = {}
    for shape, _threads, _processes in SHAPES:
        rates = {kind: statistics.median(samples[shape, kind]) for kind in RECORDERS}
        raw = rates["raw INSERT handler"]
        result[shape] = rates
        cells = "".join(f"{rates[k]:17.0f} ({rates[k] / raw:5.2f}x)" for k in RECORDERS)
        every = (
            ""
            if rounds == 1
            else "   rounds: "
            + "; ".join("/".join(f"{r:.0f}" for r in samples[shape, k]) for k in RECORDERS)
        )
        print(f"  {shape:12s}{cells}{every}")
    print("  (no handler: the fake model's invokes alone, the ceiling of any recorder)")
    for shape in ("8 threads", "4 processes"):
        rates = result[shape]
        ratio = rates["UsageHandler, background"] / rates["raw INSERT handler"]
        print(
            f"  target: background >= {TARGET:g}x raw INSERT handler, {shape}: {ratio:.2f}x, "
            + ("holds" if ratio >= TARGET else f"misses by {(1 - ratio / TARGET):.0%}")
            + f" (ceiling: {rates['no handler'] / rates['raw INSERT handler']:.2f}x)"
        )

    total = sum(expected.values())
    print(
        f"  rows: {counts['rows']} stored, {counts['run_ids']} distinct run ids, expected "
        f"{total}; {counts['spooled']} spooled"
    )
    problems = []
    if counts["rows"] != total or counts["run_ids"] != total or counts["spooled"]:
        problems.append("rows lost, doubled or spooled")
    for kind, node in NODE.items():
        line = f"  {kind:26s} {counts[node]} rows (expected {expected[kind]})"
        ok = counts[node] == expected[kind]
        if kind != "raw INSERT handler":  # the raw handler keeps no rollups
            rolled = [
                counts[f"{node} {t}"]
                for t in ("llm_tracker_usage_rollup", "llm_tracker_usage_rollup_day")
            ]
            line += (
                f", {counts[node + ' priced']} priced, rollup calls {rolled[0]} (15 min)"
                f" / {rolled[1]} (day)"
            )
            ok = (
                ok and counts[node + " priced"] == expected[kind] and rolled == [expected[kind]] * 2
            )
        print(line)
        if not ok:
            problems.append(f"{kind}: rows lost, doubled, unpriced or miscounted in rollups")
    if problems:
        raise SystemExit("; ".join(problems))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--postgres", default=os.environ.get("LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_backend(
            "SQLite (file, WAL)", f"sqlite:///{tmp}/bench.sqlite3", args.calls, args.rounds
        )
    if not args.no_postgres:
        bench_backend("PostgreSQL", args.postgres, args.calls, args.rounds)


if __name__ == "__main__":
    main()
