"""Lock waits on one hot rollup row: 32 writers recording the same key, background vs sync.

Every row has the same model, provider, user, node and a ``created_at`` in one 15-minute
bucket, so every write adds to the same two rollup rows (the 15-minute one and the daily
one): the worst case for row locks. ``--processes`` (4) × ``--threads`` (8) = 32 writers
each record ``--rows`` (1000) rows with ``record_usage`` as fast as they can, in
background mode (each process's writer thread commits batches; so at most one batch
transaction per process at a time) and then in sync mode (one transaction per call, in
the caller's thread). PostgreSQL only: SQLite has one writer at a time by design.

Measured, in the same run:

* **one batch**: first, one writer alone records the same hot key in batches of
  ``LLM_TRACKER_BATCH_SIZE`` (500) rows; the median duration of its batch transactions
  (checkout, insert, rollup upserts, commit, from the writer thread's point of view) is
  "one batch", the unit of the target. The same for one sync-mode call (one row).
* **lock waits**: while the writers run, this process samples ``pg_locks`` (ungranted
  locks of the writers' connections, tagged with an ``application_name``) every
  ``--sample-ms`` (2); each wait is identified by its backend and ``waitstart``, and its
  duration bounded from below (last sample that saw it) and above (first that did not).
* from the writers' side: every batch transaction's duration (background), every call's
  duration (both modes), and the time of each statement touching the rollup tables.

Target: **no lock wait longer than one batch** (upper bounds compared). At the end every
row is counted: ``processes × threads × rows`` rows, distinct run ids, and exactly one
rollup row per level holding all the calls and tokens.

    .venv/bin/python bench/hot_key.py [--postgres URL] [--processes 4] [--threads 8]
        [--rows 1000] [--batch-size 500] [--modes background,sync] [--json out.json]

Tables live in a scratch schema ``llm_tracker_bench_hot_key``, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scratch import DEFAULT_PG, drop_schema, libpq_url, scratch_schema  # noqa: E402

SCHEMA = "llm_tracker_bench_hot_key"
APP_NAME = "llm_tracker_bench_hot_key"
HOT = datetime(2026, 3, 1, 12, 3, tzinfo=UTC)  # one 15-minute bucket: 12:00–12:15


def _config(url: str, instance: str, mode: str, batch_size: int) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": "bench",
        "LLM_TRACKER_WRITE_MODE": mode,
        "LLM_TRACKER_INSTANCE_PATH": instance,
        "LLM_TRACKER_SPOOL_PATH": os.path.join(instance, "spool.jsonl"),
        "LLM_TRACKER_BATCH_SIZE": batch_size,
    }


class Timings:
    """Instruments this process: the writer's batch transactions and rollup statements."""

    def __init__(self) -> None:
        from llm_tracker.writer import BackgroundWriter

        self.batches: list[tuple[float, int]] = []  # (seconds, rows)
        self.rollup_statements: list[float] = []
        # From the start of a transaction's first statement on the rollup tables to the end
        # of its commit: how long it holds the hot rows' locks, as seen from the client.
        self.holds: list[float] = []
        self._local = threading.local()
        original = BackgroundWriter._commit
        batches = self.batches

        def timed_commit(writer, rows, lines):
            began = time.perf_counter()
            try:
                return original(writer, rows, lines)
            finally:
                batches.append((time.perf_counter() - began, len(rows)))
                self.end_transaction()

        BackgroundWriter._commit = timed_commit  # type: ignore[method-assign]
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def end_transaction(self) -> None:
        """After a commit: the hold time of this thread's transaction, if it took rollup
        rows."""
        first = getattr(self._local, "first_rollup", None)
        if first is not None:
            self.holds.append(time.perf_counter() - first)
            self._local.first_rollup = None

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info["bench_t0"] = now = time.perf_counter()
        if (
            "llm_tracker_usage_rollup" in statement
            and getattr(self._local, "first_rollup", None) is None
        ):
            self._local.first_rollup = now

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if "llm_tracker_usage_rollup" in statement:
            self.rollup_statements.append(time.perf_counter() - conn.info["bench_t0"])


def record_rows(record_usage, tag: str, rows: int, calls: list[float], timings: Timings) -> None:
    for i in range(rows):
        began = time.perf_counter()
        record_usage(
            "gpt-4o-mini",
            prompt_tokens=1200,
            completion_tokens=300,
            user_id=7,
            provider="openai",
            node_name="hot",
            run_id=f"{tag}-{i}",
            created_at=HOT + timedelta(seconds=i % 600),
        )
        calls.append(time.perf_counter() - began)
        timings.end_transaction()  # sync mode: the call's transaction has committed


def _writer_process(
    index: int, config: dict[str, Any], threads: int, rows: int, ready, go, results
) -> None:
    from admin_app import create_app
    from llm_tracker import flush, record_usage

    app = create_app(config)
    timings = Timings()
    calls: list[float] = []
    ready.wait()
    go.wait()
    began = time.perf_counter()

    def work(t: int) -> None:
        with app.app_context():
            mine: list[float] = []
            record_rows(
                record_usage,
                f"{config['LLM_TRACKER_WRITE_MODE']}-p{index}-t{t}",
                rows,
                mine,
                timings,
            )
            calls.extend(mine)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    recorded = time.perf_counter()
    with app.app_context():
        flush()
    done = time.perf_counter()
    results.put(
        {
            "index": index,
            "calls": calls,
            "batches": timings.batches,
            "rollup statements": timings.rollup_statements,
            "holds": timings.holds,
            "record s": recorded - began,
            "flush s": done - recorded,
            "wall": (began, done),
        }
    )


class LockSampler:
    """Samples the writers' ungranted locks; one entry per (backend, waitstart), tagged
    with its statement (backend, query_start): a statement may wait several times, once per
    transaction ahead of it that takes the row."""

    QUERY = text("""
        SELECT extract(epoch FROM clock_timestamp()),
               coalesce(json_agg(json_build_array(l.pid, extract(epoch FROM l.waitstart),
                                                  l.locktype, left(a.query, 60),
                                                  extract(epoch FROM a.query_start))), '[]')
        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE NOT l.granted AND a.application_name = :app
    """)

    def __init__(self, engine, interval_s: float) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.waits: dict[tuple[int, float], dict[str, Any]] = {}
        self.samples = 0
        self.max_gap = 0.0  # a wait no sample saw was shorter than this
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockSampler:
        self.began = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.elapsed = time.perf_counter() - self.began

    def _run(self) -> None:
        open_waits: set[tuple[int, float]] = set()
        last = None
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            while not self.stop.is_set():
                now, found = conn.execute(self.QUERY, {"app": APP_NAME}).one()
                now = float(now)
                if last is not None:
                    self.max_gap = max(self.max_gap, now - last)
                last = now
                self.samples += 1
                seen = set()
                for pid, waitstart, locktype, query, query_start in found:
                    if waitstart is None:  # not set yet, for an instant after the wait began
                        continue
                    key = (pid, float(waitstart))
                    seen.add(key)
                    wait = self.waits.setdefault(
                        key,
                        {
                            "locktype": locktype,
                            "query": query,
                            "statement": (pid, query_start),
                            "upper": None,
                        },
                    )
                    wait["lower"] = now - key[1]
                for key in open_waits - seen:  # ended between the last sample and this one
                    self.waits[key]["upper"] = now - key[1]
                open_waits = seen
                time.sleep(self.interval_s)
            for key in open_waits:
                self.waits[key]["upper"] = float("inf")


def ms(seconds: float) -> float:
    return seconds * 1000


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    s = sorted(values)
    return {
        "n": len(s),
        "p50": ms(s[len(s) // 2]),
        "p99": ms(s[min(len(s) - 1, int(0.99 * len(s)))]),
        "max": ms(s[-1]),
    }


def calibrate(url: str, instance: str, batch_size: int) -> dict[str, Any]:
    """One writer alone on the hot key: its batch transaction (background) and its call
    (sync) durations."""
    from admin_app import create_app
    from llm_tracker import flush, record_usage

    timings = Timings()
    app = create_app(
        {
            **_config(url, instance, "background", batch_size),
            "LLM_TRACKER_FLUSH_INTERVAL_MS": 3_600_000,
        }
    )  # full batches only
    with app.app_context():
        calls: list[float] = []
        for n in range(12):
            record_rows(record_usage, f"calibrate-b{n}", batch_size, calls, timings)
            flush()
    batches = [seconds for seconds, rows in timings.batches[2:]]  # after a warm-up
    batch_holds = timings.holds[2:]
    del timings.holds[:]
    sync_app = create_app(_config(url, instance, "sync", batch_size))
    with sync_app.app_context():
        sync_calls: list[float] = []
        record_rows(record_usage, "calibrate-sync", 300, sync_calls, timings)
    return {
        "batch": statistics.median(batches),
        "batches": quantiles(batches),
        "batch lock holds": quantiles(batch_holds),
        "sync call": statistics.median(sync_calls[50:]),
        "sync calls": quantiles(sync_calls[50:]),
        "sync lock holds": quantiles(timings.holds[50:]),
        "rows": 12 * batch_size + 300,
    }


def run_mode(mode: str, url: str, instance: str, args, sampler_engine) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(args.processes + 1)
    go = ctx.Event()
    results = ctx.Queue()
    config = _config(url, os.path.join(instance, mode), mode, args.batch_size)
    procs = [
        ctx.Process(
            target=_writer_process, args=(i, config, args.threads, args.rows, ready, go, results)
        )
        for i in range(args.processes)
    ]
    for p in procs:
        p.start()
    ready.wait()  # every process has built its app
    load_before = os.getloadavg()[0]
    with LockSampler(sampler_engine, args.sample_ms / 1000) as sampler:
        started = time.perf_counter()
        go.set()
        out = [results.get(timeout=1800) for _ in procs]
        finished = time.perf_counter()
    for p in procs:
        p.join()
    waits = list(sampler.waits.values())
    lower = [w["lower"] for w in waits]
    upper = [w["upper"] for w in waits]
    per_statement: dict[Any, list[float]] = {}
    for w in waits:
        total = per_statement.setdefault(tuple(w["statement"]), [0.0, 0.0])
        total[0] += w["lower"]
        total[1] += w["upper"]
    queries: dict[str, int] = {}
    for w in waits:
        label = ("rollup upsert" if "rollup" in w["query"] else w["query"]) + f" ({w['locktype']})"
        queries[label] = queries.get(label, 0) + 1
    batches = [s for r in out for s, _rows in r["batches"]]
    batch_rows = [n for r in out for _s, n in r["batches"]]
    rows = args.processes * args.threads * args.rows
    return {
        "mode": mode,
        "rows": rows,
        "seconds": finished - started,
        "load average": (load_before, os.getloadavg()[0]),
        "rows/s": rows / (finished - started),
        "record s (slowest process)": max(r["record s"] for r in out),
        "flush s (slowest process)": max(r["flush s"] for r in out),
        "calls": quantiles([c for r in out for c in r["calls"]]),
        "batches": quantiles(batches),
        "batch rows": statistics.mean(batch_rows) if batch_rows else 0,
        "rollup statements": quantiles([s for r in out for s in r["rollup statements"]]),
        "lock holds": quantiles([s for r in out for s in r["holds"]]),
        "lock samples": sampler.samples,
        "lock waits": len(waits),
        "waiting on": queries,
        "sample interval ms": ms(sampler.elapsed / max(sampler.samples, 1)),
        "largest sample gap ms": ms(sampler.max_gap),
        "wait lower": quantiles(lower),
        "wait upper": quantiles(upper),
        "statements that waited": len(per_statement),
        "wait per statement lower": quantiles([t[0] for t in per_statement.values()]),
        "wait per statement upper": quantiles([t[1] for t in per_statement.values()]),
        "max wait upper ms": ms(max(t[1] for t in per_statement.values()))
        if per_statement
        else 0.0,
        "total wait s": sum(lower),
    }


def count(engine, expected: int) -> dict[str, Any]:
    with engine.connect() as conn:
        raw = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT run_id), coalesce(sum(total_tokens), 0)"
                " FROM llm_tracker_usage WHERE node_name = 'hot' AND run_id NOT LIKE 'calib%'"
            )
        ).one()
        rollups = {}
        for table in ("llm_tracker_usage_rollup", "llm_tracker_usage_rollup_day"):
            rollups[table] = [
                tuple(r)
                for r in conn.execute(
                    text(f"SELECT calls, total_tokens FROM {table} WHERE node_name = 'hot'")
                )
            ]
        calibration = conn.execute(
            text("SELECT count(*) FROM llm_tracker_usage WHERE run_id LIKE 'calib%'")
        ).scalar()
    total = expected + calibration
    ok = (
        raw[0] == raw[1] == expected
        and raw[2] == expected * 1500
        and all(r == [(total, total * 1500)] for r in rollups.values())
    )
    return {
        "rows": raw[0],
        "distinct run ids": raw[1],
        "tokens": int(raw[2]),
        "expected rows": expected,
        "calibration rows": calibration,
        "rollup rows (calls, tokens)": rollups,
        "ok": ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres", default=os.environ.get("LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1000, help="rows per writer")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--sample-ms", type=float, default=2)
    parser.add_argument("--modes", default="background,sync")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    from sqlalchemy import create_engine

    from admin_app import create_app
    from llm_tracker import db

    direct = scratch_schema(args.postgres, SCHEMA)
    url = make_url(direct).update_query_dict({"application_name": APP_NAME}).render_as_string(False)
    results: dict[str, Any] = {
        "writers": f"{args.processes} processes × {args.threads} threads",
        "rows per writer": args.rows,
    }
    sampler_engine = create_engine(
        libpq_url(args.postgres).replace("postgresql://", "postgresql+psycopg://", 1)
    )
    try:
        with tempfile.TemporaryDirectory() as instance:
            app = create_app(_config(direct, instance, "sync", args.batch_size))
            with app.app_context():
                db.create_all()
            results["uncontended"] = cal = calibrate(url, instance, args.batch_size)
            print(
                f"one writer alone on the hot key: a batch of {args.batch_size} rows "
                f"{ms(cal['batch']):.1f} ms (median; {cal['batches']}; the hot rows held "
                f"{cal['batch lock holds']}), a sync call {ms(cal['sync call']):.2f} ms "
                f"(median; the hot rows held {cal['sync lock holds']})"
            )
            expected = 0
            for mode in args.modes.split(","):
                r = results[mode] = run_mode(mode, url, instance, args, sampler_engine)
                expected += r["rows"]
                unit = cal["batch"] if mode == "background" else cal["sync call"]
                r["max wait / unit"] = r["max wait upper ms"] / ms(unit)
                print(
                    f"\n{mode}: {results['writers']}, {r['rows']} rows in "
                    f"{r['seconds']:.1f} s ({r['rows/s']:.0f} rows/s; recording "
                    f"{r['record s (slowest process)']:.1f} s, then flush "
                    f"{r['flush s (slowest process)']:.1f} s; load average "
                    f"{r['load average'][0]:.1f} / {r['load average'][1]:.1f} on "
                    f"{os.cpu_count()} CPUs)"
                )
                print(f"  record_usage per call, ms: {r['calls']}")
                if r["batches"]["n"]:
                    print(
                        f"  batch transactions, ms: {r['batches']} "
                        f"(mean {r['batch rows']:.0f} rows)"
                    )
                print(f"  statements on the rollup tables, ms: {r['rollup statements']}")
                print(
                    f"  hot-row lock held (first rollup statement to commit), ms: {r['lock holds']}"
                )
                print(
                    f"  lock waits seen: {r['lock waits']} in {r['lock samples']} samples "
                    f"(one per {r['sample interval ms']:.1f} ms; {r['waiting on']}); "
                    f"total ≥ {r['total wait s']:.2f} s"
                )
                print(f"  one wait, ms: ≥ {r['wait lower']}, ≤ {r['wait upper']}")
                print(
                    f"  waits of one statement, added up, ms ({r['statements that waited']} "
                    f"statements): ≥ {r['wait per statement lower']}, "
                    f"≤ {r['wait per statement upper']}"
                )
                print(
                    f"  longest sampled lock wait of a statement ≤ "
                    f"{r['max wait upper ms']:.1f} ms = "
                    f"{r['max wait / unit']:.2f} × "
                    f"{'one batch' if mode == 'background' else 'one sync call'} "
                    f"({ms(unit):.1f} ms)"
                )
                if mode == "background":
                    # Two bounds on every lock wait, each valid alone: the samples' (a wait
                    # no sample saw was shorter than the largest gap between samples), and
                    # the longest statement on the rollup tables, inside one of which every
                    # wait on the hot rows happens (it also counts the time its writer
                    # thread waited for a CPU or the GIL, so it is the looser one).
                    sampled = max(r["max wait upper ms"], r["largest sample gap ms"])
                    longest = min(sampled, r["rollup statements"]["max"])
                    r["longest wait bound ms"] = longest
                    r["holds"] = longest <= ms(cal["batch"])
                    print(
                        f"  target, no lock wait longer than one batch: "
                        f"{'holds' if r['holds'] else 'MISSES'}: every lock wait ≤ "
                        f"{longest:.1f} ms = {longest / ms(cal['batch']):.2f} × one batch "
                        f"({ms(cal['batch']):.1f} ms); bounds: samples {sampled:.1f} ms "
                        f"(largest gap between samples {r['largest sample gap ms']:.1f} ms), "
                        f"longest statement on the rollup tables "
                        f"{r['rollup statements']['max']:.1f} ms"
                    )
            results["count"] = counted = _count(direct, expected)
            print(f"\ncount: {counted}")
    finally:
        sampler_engine.dispose()
        drop_schema(args.postgres, SCHEMA)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    if not results["count"]["ok"]:
        raise SystemExit("rows lost or doubled, or the rollups do not add up")


def _count(direct: str, expected: int) -> dict[str, Any]:
    from sqlalchemy import create_engine

    engine = create_engine(direct)
    try:
        return count(engine, expected)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
