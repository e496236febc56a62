"""Added latency per LLM call while the database stalls, goes down and comes back.

8 threads (``--threads``) call an in-process fake chat model continuously, each
alternating a call without a handler ("bare") and a call with one shared ``UsageHandler``
in background mode, so both are timed in the same run, threads and moment. Meanwhile:

* PostgreSQL, reached through a proxy on 127.0.0.1 (bench/fault_proxy.py): healthy, then
  **stalled** ``--stall-s`` (20 s: the proxy keeps every connection open and accepts new
  ones but forwards no byte), then **down** ``--down-s`` (10 s: the proxy closed, every
  connection dropped, new ones refused), then back;
* SQLite: healthy, then **locked** ``--stall-s`` (20 s: another process holds ``BEGIN
  EXCLUSIVE`` on the file), then back.

For each phase it prints p50 / p99 / max of each variant and the added latency (the
handler's quantile minus the bare call's), against the target: **p99 added ≤ 1 ms**. A
call counts in every phase it overlapped. Every second it samples the rows committed
(on a direct connection) and the writer's backlog; it logs when batches were spooled. After
the last phase the callers stop, ``flush()`` is timed, and every row must be in the database
exactly once (run ids compared one by one, nothing left in the spool or dead letters, both
rollup levels counting every row).

Options beside the phases' lengths: ``--llm-ms N`` makes every fake call wait N ms first,
as a real LLM call waits for the network (by default the model answers at once, so the 8
threads compete for the interpreter without pause); ``--write-mode sync`` runs the first
release's behaviour through the same faults; ``--controls`` adds, in the same rotation,
langchain-core's in-memory handler, a handler that only appends one line to a file per call
(what any journal written before returning must do), and one that copies it into a shared
memory map instead (no system call).

    .venv/bin/python bench/faults.py [--backend postgresql|sqlite|both] [--postgres URL]
        [--stall-s 20] [--down-s 10] [--healthy-s 10] [--recovered-s 15] [--threads 8]
        [--writer-timeout-s 10] [--llm-ms 0] [--write-mode background|sync] [--controls]
        [--json results.json]

PostgreSQL tables live in a scratch schema ``llm_tracker_bench_faults``, dropped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import mmap
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fault_proxy import FaultProxy  # noqa: E402
from scratch import DEFAULT_PG, REPLY, drop_schema, libpq_url, scratch_schema  # noqa: E402

from admin_app import create_app  # noqa: E402
from llm_tracker import UsageHandler, db, flush, get_spool  # noqa: E402
from llm_tracker.writer import writer_for  # noqa: E402

SCHEMA = "llm_tracker_bench_faults"
TARGET_P99_ADDED_US = 1000.0
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


class FakeChat(GenericFakeChatModel):
    """The fake chat model; ``wait_s`` > 0 makes each call wait like a network round trip
    (the GIL free meanwhile, as in an application whose threads wait for their LLM)."""

    wait_s: float = 0.0

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.wait_s:
            time.sleep(self.wait_s)
        return super()._generate(*args, **kwargs)


class Spooled(logging.Handler):
    """Keeps llm_tracker's log records with the time they were emitted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.perf_counter(), record.getMessage()))


def quantile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank quantile of sorted nanoseconds, in µs."""
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def summarise(bare: list[int], other: list[int]) -> dict[str, float]:
    """p50 / p99 / max of both (µs) and what ``other`` adds at each quantile."""
    bare, other = sorted(bare), sorted(other)
    out: dict[str, float] = {"calls": len(other)}
    for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        out[f"bare {label}"] = quantile(bare, q)
        out[f"handler {label}"] = quantile(other, q)
        out[f"added {label}"] = out[f"handler {label}"] - out[f"bare {label}"]
    return out


class AppendHandler(BaseCallbackHandler):
    """Control: only what any journal-before-return must do, one line written to a file
    (and handed to the OS) per call."""

    def __init__(self, path: str) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self.lock = threading.Lock()

    def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        line = json.dumps({"run_id": str(run_id), "model": "gpt-4o-mini", "pad": "x" * 500})
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()


class MmapAppendHandler(BaseCallbackHandler):
    """Control: the same line copied into a shared memory map of a file: in the page cache
    (it survives the process being killed) without a system call, so without giving the
    GIL away. Wraps around at the end of its 256 MB."""

    SIZE = 256 << 20

    def __init__(self, path: str) -> None:
        with open(path, "wb") as f:
            f.truncate(self.SIZE)
        with open(path, "r+b") as f:
            self.map = mmap.mmap(f.fileno(), self.SIZE)
        self.pos = 0
        self.lock = threading.Lock()

    def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        line = (
            json.dumps({"run_id": str(run_id), "model": "gpt-4o-mini", "pad": "x" * 500}).encode()
            + b"\n"
        )
        with self.lock:
            if self.pos + len(line) > self.SIZE:
                self.pos = 0
            self.map[self.pos : self.pos + len(line)] = line
            self.pos += len(line)


class Run:
    """The callers, the monitor and the phases of one backend."""

    def __init__(
        self,
        app,
        threads: int,
        count_rows,
        wait_s: float,
        controls: str | None,
    ) -> None:
        self.app = app
        self.threads = threads
        self.wait_s = wait_s
        self.mode = app.config["LLM_TRACKER_WRITE_MODE"]
        self.count_rows = count_rows
        self.handler = UsageHandler({"user_id": 1}, node_name="faults", app=app)
        # Each caller runs every variant in turn (its order rotating), so all see the same
        # moment, phase and contention; "bare" is the model without any handler.
        self.variants: dict[str, list] = {"bare": [], "UsageHandler": [self.handler]}
        if controls:
            self.variants["in-memory handler"] = [UsageMetadataCallbackHandler()]
            self.variants["append-only handler"] = [AppendHandler(controls)]
            self.variants["mmap-append handler"] = [MmapAppendHandler(controls + ".mmap")]
        self.phase_names = ["warm-up"]
        self.phase_index = 0
        self.stop = threading.Event()
        self.samples: dict[str, dict[str, list[int]]] = {
            name: defaultdict(list) for name in self.variants
        }
        self.run_ids: list[str] = []
        self.timeline: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()

    def caller(self, index: int) -> None:
        model = FakeChat(messages=itertools.repeat(REPLY), wait_s=self.wait_s)
        variants = list(self.variants.items())
        samples: dict[str, dict[str, list[int]]] = {
            name: defaultdict(list) for name in self.variants
        }
        run_ids: list[str] = []
        clock = time.perf_counter_ns
        for n in itertools.count(index):
            if self.stop.is_set():
                break
            shift = n % len(variants)  # no variant always goes first
            for name, callbacks in variants[shift:] + variants[:shift]:
                run_id = uuid.uuid4()
                config = {"callbacks": callbacks, "run_id": run_id}
                first = self.phase_index
                a = clock()
                model.invoke("hi", config=config)
                took = clock() - a
                for phase in self.phase_names[first : self.phase_index + 1]:
                    samples[name][phase].append(took)  # in every phase it overlapped
                if name == "UsageHandler":
                    run_ids.append(str(run_id))
        with self.lock:
            for name, by_phase in samples.items():
                for phase, values in by_phase.items():
                    self.samples[name][phase] += values
            self.run_ids += run_ids

    def monitor(self) -> None:
        writer = writer_for(self.app)
        while not self.stop.wait(1.0):
            try:
                rows = self.count_rows()
            except Exception as exc:  # the monitor's own connection is direct; report it
                rows = f"error: {exc}"
            self.timeline.append(
                {
                    "t": round(time.perf_counter() - self.t0, 1),
                    "phase": self.phase_names[self.phase_index],
                    "committed": rows,
                    "backlog": writer.pending(),
                }
            )

    def run(self, phases: list[tuple[str, float, Any]]) -> dict[str, float]:
        """Run the callers through ``phases`` (name, seconds, what starts it); phase -> start."""
        workers = [
            threading.Thread(target=self.caller, args=(i,), name=f"caller-{i}")
            for i in range(self.threads)
        ]
        monitor = threading.Thread(target=self.monitor, name="monitor", daemon=True)
        starts: dict[str, float] = {}
        self.t0 = time.perf_counter()
        for w in workers:
            w.start()
        monitor.start()
        self.phase_names += [name for name, _seconds, _begin in phases]
        for index, (name, seconds, begin) in enumerate(phases, 1):
            if begin is not None:
                begin()
            starts[name] = time.perf_counter()
            self.phase_index = index
            print(f"  {time.perf_counter() - self.t0:6.1f} s  {name} ({seconds:g} s)", flush=True)
            time.sleep(seconds)
        self.stop.set()
        for w in workers:
            w.join()
        monitor.join()
        return starts


def warm_up(app, handler) -> None:
    model = GenericFakeChatModel(messages=itertools.repeat(REPLY))
    for _ in range(200):
        model.invoke("hi")
        model.invoke("hi", config={"callbacks": [handler]})
    with app.app_context():
        flush()


def verify(app, run_ids: list[str], warmed: int) -> dict[str, Any]:
    """Every recorded run id stored exactly once, in the rollups, nothing kept aside."""
    with app.app_context():
        run = db.session.execute
        stored = run(text("SELECT count(*), count(DISTINCT run_id) FROM llm_tracker_usage")).one()
        wanted = set(run_ids)
        found = set(
            run(text("SELECT run_id FROM llm_tracker_usage WHERE node_name = 'faults'")).scalars()
        )
        rollups = [
            run(text(f"SELECT coalesce(sum(calls), 0) FROM {table}")).scalar()
            for table in ("llm_tracker_usage_rollup", "llm_tracker_usage_rollup_day")
        ]
        spool = get_spool(app)
        result = {
            "recorded": len(run_ids) + warmed,
            "rows": stored[0],
            "distinct run ids": stored[1],
            "missing": len(wanted - found),
            "rollup calls (15 min, day)": rollups,
            "spooled left": len(spool.rows()),
            "dead letters": len(spool.dead.entries()),
        }
        db.session.remove()
    result["ok"] = (
        result["rows"] == result["distinct run ids"] == result["recorded"]
        and result["missing"] == 0
        and rollups == [result["rows"]] * 2
        and result["spooled left"] == 0
        and result["dead letters"] == 0
    )
    return result


def report(
    name: str,
    run: Run,
    starts: dict[str, float],
    spooled: Spooled,
    flush_s: float,
    checked: dict[str, Any],
) -> dict[str, Any]:
    llm = f"each call waits {run.wait_s * 1000:g} ms" if run.wait_s else "instant model"
    print(
        f"\n{name}: µs per LLM call ({run.threads} threads, {llm}; handler = "
        f"UsageHandler, {run.mode} mode; added = handler − bare at the same quantile)"
    )
    header = (
        "phase",
        "calls",
        "bare p50",
        "bare p99",
        "bare max",
        "hdl p50",
        "hdl p99",
        "hdl max",
        "added p50",
        "added p99",
        "added max",
        "p99 ≤ 1 ms",
    )
    print("  " + " ".join(f"{h:>10s}" for h in header))
    phases: dict[str, Any] = {}
    controls: dict[str, Any] = {}
    bare = run.samples["bare"]
    for phase in starts:
        s = summarise(bare[phase], run.samples["UsageHandler"][phase])
        s["holds"] = s["added p99"] <= TARGET_P99_ADDED_US
        phases[phase] = s
        cells = (
            [phase, f"{s['calls']:.0f}"]
            + [
                f"{s[k]:.0f}"
                for k in (
                    "bare p50",
                    "bare p99",
                    "bare max",
                    "handler p50",
                    "handler p99",
                    "handler max",
                    "added p50",
                    "added p99",
                    "added max",
                )
            ]
            + ["yes" if s["holds"] else "NO"]
        )
        print("  " + " ".join(f"{c:>10s}" for c in cells))
    for name in run.samples:
        if name in ("bare", "UsageHandler"):
            continue
        print(f"  control: {name}, added p50 / p99 / max µs by phase:")
        for phase in starts:
            s = controls.setdefault(name, {})[phase] = summarise(
                bare[phase], run.samples[name][phase]
            )
            print(
                f"    {phase:10s} {s['added p50']:8.0f} {s['added p99']:8.0f} {s['added max']:8.0f}"
            )
    print("  timeline (every ~2 s: committed rows, the writer's backlog):")
    for sample in run.timeline[1::2]:
        print(
            f"    {sample['t']:6.1f} s  {sample['phase']:10s} committed {sample['committed']}"
            f"  backlog {sample['backlog']}"
        )
    events = [(t - run.t0, msg) for t, msg in spooled.records]
    spools = [(t, msg) for t, msg in events if "write failed" in msg]
    reasons: dict[str, list[float]] = {}
    for t, msg in spools:
        reason = msg.split("failed (", 1)[-1].rsplit("); ", 1)[0]
        reasons.setdefault(reason[:150], []).append(t)
    for reason, times in reasons.items():
        print(f"  {len(times)} batch(es) spooled {times[0]:.1f}–{times[-1]:.1f} s: {reason}")
    for t, msg in events:
        if "write failed" not in msg:
            print(f"  {t:6.1f} s  log: {msg[:160]}")
    print(f"  flush() after the callers stopped: {flush_s:.2f} s")
    print(f"  check: {checked}")
    return {
        "llm ms": run.wait_s * 1000,
        "threads": run.threads,
        "mode": run.mode,
        "phases": phases,
        "starts": {k: v - run.t0 for k, v in starts.items()},
        "timeline": run.timeline,
        "spooled batches": len(spools),
        "first spool at": spools[0][0] if spools else None,
        "flush s": flush_s,
        "spooled": {reason: [round(t, 2) for t in times] for reason, times in reasons.items()},
        "log": [(round(t, 2), msg) for t, msg in events if "write failed" not in msg],
        "controls": controls,
        "check": checked,
    }


def _bench(
    name: str, app_url: str, direct_url: str, instance: str, args, phases_for, count_rows
) -> dict[str, Any]:
    config = {
        "SQLALCHEMY_DATABASE_URI": app_url,
        "SECRET_KEY": "bench",
        "LLM_TRACKER_WRITE_MODE": args.write_mode,
        "LLM_TRACKER_INSTANCE_PATH": instance,
        "LLM_TRACKER_SPOOL_PATH": os.path.join(instance, "spool.jsonl"),
        "LLM_TRACKER_WRITER_TIMEOUT_S": args.writer_timeout_s,
    }
    checker = create_app(
        {**config, "SQLALCHEMY_DATABASE_URI": direct_url, "LLM_TRACKER_WRITE_MODE": "sync"}
    )
    with checker.app_context():
        db.create_all()
    app = create_app(config)
    run = Run(
        app,
        args.threads,
        count_rows,
        args.llm_ms / 1000,
        os.path.join(instance, "append-only.jsonl") if args.controls else None,
    )
    warm_up(app, run.handler)
    spooled = Spooled()
    log = logging.getLogger("llm_tracker")
    log.addHandler(spooled)
    log.propagate = False
    try:
        load_before = os.getloadavg()
        print(f"\n{name} (load average {load_before[0]:.1f}):")
        starts = run.run(phases_for(run))
        load_after = os.getloadavg()
        began = time.perf_counter()
        with app.app_context():
            flush(timeout=600)
        flush_s = time.perf_counter() - began
    finally:
        log.removeHandler(spooled)
        log.propagate = True
    if args.write_mode == "sync":  # nothing replays a sync-mode spool on its own
        with checker.app_context():
            replayed = get_spool(checker).replay()
        print(f"  sync mode: {replayed.written} spooled row(s) replayed")
    checked = verify(checker, run.run_ids, warmed=200)
    result = report(name, run, starts, spooled, flush_s, checked)
    print(
        f"  load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f}"
        f" on {os.cpu_count()} CPUs"
    )
    result["load average"] = (load_before[0], load_after[0])
    with checker.app_context():
        db.session.remove()
        db.engine.dispose()
    with app.app_context():
        db.engine.dispose()
        writer_for(app).engine().dispose()
    return result


def bench_postgresql(url: str, args) -> dict[str, Any]:
    direct = scratch_schema(url, SCHEMA)
    parsed = make_url(url)
    proxy = FaultProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    proxy.open()
    proxied = make_url(direct).set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    import psycopg

    monitor_conn = psycopg.connect(libpq_url(url), autocommit=True)

    def count_rows() -> int:
        return monitor_conn.execute(f"SELECT count(*) FROM {SCHEMA}.llm_tracker_usage").fetchone()[
            0
        ]

    def phases(run: Run):
        return [
            ("healthy", args.healthy_s, None),
            ("stalled", args.stall_s, proxy.pause),
            ("down", args.down_s, proxy.close),
            ("recovered", args.recovered_s, proxy.open),
        ]

    try:
        with tempfile.TemporaryDirectory() as instance:
            return _bench(
                "PostgreSQL through the fault proxy",
                proxied,
                direct,
                instance,
                args,
                phases,
                count_rows,
            )
    finally:
        proxy.close()
        monitor_conn.close()
        drop_schema(url, SCHEMA)


def bench_sqlite(args) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as instance:
        path = os.path.join(instance, "bench.sqlite3")
        url = f"sqlite:///{path}"
        locker: list[subprocess.Popen] = []
        monitor_conn: list[sqlite3.Connection] = []

        def count_rows() -> int:
            if not monitor_conn:
                monitor_conn.append(sqlite3.connect(path, check_same_thread=False))
            return monitor_conn[0].execute("SELECT count(*) FROM llm_tracker_usage").fetchone()[0]

        def lock() -> None:
            child = subprocess.Popen(
                [sys.executable, "-c", LOCKER, path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            locker.append(child)
            assert child.stdout is not None
            if child.stdout.readline().strip() != "locked":
                raise SystemExit("the locking process did not take the lock")

        def unlock() -> None:
            child = locker.pop()
            child.communicate("go\n", timeout=30)

        def phases(run: Run):
            return [
                ("healthy", args.healthy_s, None),
                ("locked", args.stall_s, lock),
                ("recovered", args.recovered_s, unlock),
            ]

        try:
            return _bench(
                "SQLite (file, WAL) with an outside BEGIN EXCLUSIVE",
                url,
                url,
                instance,
                args,
                phases,
                count_rows,
            )
        finally:
            for child in locker:
                child.kill()
            for conn in monitor_conn:
                conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument(
        "--postgres", default=os.environ.get("LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--healthy-s", type=float, default=10)
    parser.add_argument("--stall-s", type=float, default=20)
    parser.add_argument("--down-s", type=float, default=10)
    parser.add_argument("--recovered-s", type=float, default=15)
    parser.add_argument("--writer-timeout-s", type=float, default=10)
    parser.add_argument(
        "--llm-ms",
        type=float,
        default=0,
        help="each fake LLM call waits this long (default 0: instant)",
    )
    parser.add_argument(
        "--write-mode",
        choices=["background", "sync"],
        default="background",
        help="sync: the first release's behaviour, for comparison",
    )
    parser.add_argument(
        "--controls",
        action="store_true",
        help="also time langchain-core's in-memory handler and a handler that "
        "only appends a line to a file",
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.backend in ("postgresql", "both"):
        results["postgresql"] = bench_postgresql(args.postgres, args)
    if args.backend in ("sqlite", "both"):
        results["sqlite"] = bench_sqlite(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    failed = [name for name, r in results.items() if not r["check"]["ok"]]
    missed = [
        f"{name} {phase}"
        for name, r in results.items()
        for phase, s in r["phases"].items()
        if not s["holds"]
    ]
    rows = "all there, once" if not failed else f"LOST OR DOUBLED in {failed}"
    target = "holds in every phase" if not missed else "misses in " + ", ".join(missed)
    print(f"\nrows: {rows}; p99 added ≤ 1 ms: {target}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
