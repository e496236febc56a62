"""Recording overhead per LLM call: UsageHandler against the baselines, in one run.

Times N invokes of an in-process fake chat model (no network) with: no handler;
langchain-core's in-memory UsageMetadataCallbackHandler; a minimal handler doing one raw
INSERT + COMMIT on a plain DBAPI connection; Langfuse's LangChain CallbackHandler
exporting to a loopback HTTP sink (bench/sink.py, in its own process); llm_tracker's
UsageHandler in background mode (the row journalled, a writer thread commits batches)
and in sync mode (the row and its rollups committed in the caller's thread), and in
background mode with 3 active block budgets covering every call (user, node and source
type: each call reserves its estimate on all three before the model runs). On SQLite
(file, WAL) and PostgreSQL. Prints microseconds per invoke, as the caller sees it and
with the background work (Langfuse's export, llm_tracker's writer) flushed too, and the
overhead ratios with their targets; checks that the sink received every span and the
database every row exactly once, priced and counted once in each rollup.

    .venv/bin/python bench/overhead.py [--calls 2000] [--postgres URL | --no-postgres]

Needs the ``bench`` extra (Langfuse): ``.venv/bin/pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

from langchain_core.callbacks import BaseCallbackHandler, UsageMetadataCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sink import Sink  # noqa: E402

import llm_tracker  # noqa: E402
from admin_app import create_app  # noqa: E402
from llm_tracker import UsageHandler, db, get_spool  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LANGFUSE_KEY = "pk-lf-bench"
WARM_UP = 50
MEASURES = ("caller", "settled", "cpu")
SHORT = {
    "in-memory handler": "in-memory",
    "raw INSERT handler": "raw INSERT",
    "Langfuse CallbackHandler": "Langfuse",
    "UsageHandler, background": "background",
    "UsageHandler, sync": "sync",
    "UsageHandler, background + 3 budgets": "3 budgets",
}
# (ours, theirs): the target for ours' overhead / theirs' (None: for information).
RATIOS = {
    ("UsageHandler, background", "Langfuse CallbackHandler"): 0.5,
    ("UsageHandler, background", "in-memory handler"): 2.0,
    ("UsageHandler, sync", "Langfuse CallbackHandler"): None,
    ("UsageHandler, background", "raw INSERT handler"): None,
    ("UsageHandler, sync", "raw INSERT handler"): None,
    ("UsageHandler, background + 3 budgets", "UsageHandler, background"): 2.0,
}
REPLY = AIMessage(
    content="Hello!",
    response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
    usage_metadata={
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "input_token_details": {"cache_read": 1024},
        "output_token_details": {"reasoning": 64},
    },
)


class BenchChatModel(GenericFakeChatModel):
    """The fake model, reporting itself as OpenAI's gpt-4o-mini with max_tokens 300 (as
    ChatOpenAI does), so budgets price their estimate as for a real call."""

    def _get_ls_params(self, stop=None, **kwargs):
        return {
            "ls_provider": "openai",
            "ls_model_name": "gpt-4o-mini",
            "ls_model_type": "chat",
            "ls_max_tokens": 300,
        }


RAW_INSERT = (
    "INSERT INTO llm_tracker_usage (id, run_id, user_id, model, node_name, prompt_tokens,"
    " completion_tokens, total_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,"
    " success, metadata, created_at) VALUES ({})"
)


class RawInsertHandler(BaseCallbackHandler):
    """The least a recording handler can do: one INSERT + COMMIT per finished run."""

    raise_error = True  # a failed INSERT stops the benchmark (LangChain would log it)

    def __init__(self, conn, paramstyle: str) -> None:
        self.conn = conn
        marks = ", ".join(["?"] * 14) if paramstyle == "qmark" else ", ".join(["%s"] * 14)
        self.sql = RAW_INSERT.format(marks)

    def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        um = response.generations[0][0].message.usage_metadata
        cur = self.conn.cursor()
        cur.execute(
            self.sql,
            (
                uuid.uuid4().hex,
                str(run_id),
                1,
                "gpt-4o-mini",
                "n",
                um["input_tokens"],
                um["output_tokens"],
                um["total_tokens"],
                1024,
                0,
                64,
                True,
                json.dumps({"node_name": "n"}),
                datetime.now(UTC).isoformat(),
            ),
        )
        self.conn.commit()


class Variant:
    """One way of running the invokes: its callbacks, and how its deferred work is finished.

    ``settle`` (None: nothing deferred) waits for what the variant left to background
    threads: Langfuse's span export, llm_tracker's writer. The caller never waits for it,
    so it is timed apart: the *caller* figure stops when the last invoke returns, the
    *settled* one when ``settle`` does as well; *cpu* is this process's CPU time (every
    thread, settled), which other work on the machine disturbs less than wall time. Every
    round settles before the next variant runs, so no variant's leftovers run in another's
    timing.
    """

    def __init__(self, callbacks: list, settle=None) -> None:
        self.callbacks = callbacks
        self.settle = settle

    def run(self, model, calls: int) -> tuple[float, float, float]:
        """(caller, settled, cpu) µs per invoke over ``calls`` invokes."""
        config = {"callbacks": self.callbacks}
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(calls):
            model.invoke("hi", config=config)
        returned = time.perf_counter()
        if self.settle is not None:
            self.settle()
        settled = time.perf_counter()
        cpu = time.process_time() - cpu
        return tuple(t / calls * 1e6 for t in (returned - start, settled - start, cpu))


def langfuse_client(sink: Sink):
    """Langfuse's client exporting to the loopback sink (dummy keys), as an app would set
    it up, and its LangChain handler. One client per process (Langfuse keeps it global)."""
    from langfuse import Langfuse
    from langfuse.langchain import CallbackHandler

    # The fake model has no model name Langfuse knows how to read: it says so once.
    logging.getLogger("langfuse").setLevel(logging.ERROR)
    client = Langfuse(public_key=LANGFUSE_KEY, secret_key="sk-lf-bench", host=sink.url)
    return client, CallbackHandler(public_key=LANGFUSE_KEY)


def raw_connection(url: str, timeout: float = 5.0):
    """A plain DBAPI connection (sqlite3: WAL, synchronous=NORMAL, busy ``timeout``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database, timeout=timeout)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn, "qmark"
    import psycopg

    options = parsed.query.get("options")
    conn = psycopg.connect(
        parsed.set(drivername="postgresql", query={}).render_as_string(False), options=options
    )
    return conn, "format"


def bench_schema(url: str) -> str:
    """PostgreSQL: a URL whose tables live in a scratch schema ``llm_tracker_bench``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    import psycopg

    with psycopg.connect(
        parsed.set(drivername="postgresql").render_as_string(False), autocommit=True
    ) as conn:
        conn.execute("DROP SCHEMA IF EXISTS llm_tracker_bench CASCADE")
        conn.execute("CREATE SCHEMA llm_tracker_bench")
    return parsed.update_query_dict(
        {"options": "-csearch_path=llm_tracker_bench"}
    ).render_as_string(False)


def make_apps(url: str, instance: str):
    """Apps on one database: background mode (the default), sync mode, and background mode
    for the budgets variant."""
    common = {
        "SQLALCHEMY_DATABASE_URI": url,
        "LLM_TRACKER_INSTANCE_PATH": instance,
        "LLM_TRACKER_SPOOL_PATH": os.path.join(instance, "spool.jsonl"),
    }
    return (
        create_app({**common, "LLM_TRACKER_WRITE_MODE": "background"}),
        create_app({**common, "LLM_TRACKER_WRITE_MODE": "sync"}),
        create_app({**common, "LLM_TRACKER_WRITE_MODE": "background"}),
    )


def add_budgets(app) -> None:
    """Three block budgets covering the budgets variant's calls only (user 2, node "bud",
    source type "bench"), far from their limits."""
    from llm_tracker.budget_admin import create_budget

    with app.app_context():
        for scope, value in (("user", "2"), ("node", "bud"), ("source_type", "bench")):
            create_budget(
                {
                    "name": f"bench-{scope}",
                    "scope": scope,
                    "scope_value": value,
                    "period": "month",
                    "limit_usd": "1000000",
                }
            )


def budget_counters(app) -> list[tuple]:
    """(budget, spent_usd, reserved_usd, rows' cost) per bench budget."""
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT b.name, c.spent_usd, c.reserved_usd FROM llm_tracker_budget_counter c"
                " JOIN llm_tracker_budget b ON b.id = c.budget_id ORDER BY b.name"
            )
        ).all()
        cost = db.session.execute(
            text("SELECT sum(cost_usd) FROM llm_tracker_usage WHERE node_name = 'bud'")
        ).scalar()
        db.session.remove()
    return [(*row, cost) for row in rows]


def count_rows(app, nodes=("bg", "sync", "bud")) -> dict[str, int]:
    """Rows by node name, rollup calls by node at both levels, rows still spooled."""
    with app.app_context():
        run = db.session.execute
        counts = {
            "rows": run(text("SELECT count(*) FROM llm_tracker_usage")).scalar(),
            "run_ids": run(text("SELECT count(DISTINCT run_id) FROM llm_tracker_usage")).scalar(),
            "spooled": len(get_spool(app).rows()),
        }
        for node in nodes:
            where = {"node": node}
            counts[node] = run(
                text("SELECT count(*) FROM llm_tracker_usage WHERE node_name = :node"), where
            ).scalar()
            counts[node + " priced"] = run(
                text(
                    "SELECT count(*) FROM llm_tracker_usage"
                    " WHERE node_name = :node AND cost_usd IS NOT NULL"
                ),
                where,
            ).scalar()
            for table in ("llm_tracker_usage_rollup", "llm_tracker_usage_rollup_day"):
                counts[f"{node} {table}"] = run(
                    text(f"SELECT coalesce(sum(calls), 0) FROM {table} WHERE node_name = :node"),
                    where,
                ).scalar()
        db.session.remove()
    return counts


def bench_backend(
    name: str,
    url: str,
    calls: int,
    rounds: int,
    sink: Sink,
    langfuse,
) -> dict[str, tuple[float, ...]]:
    url = bench_schema(url)
    instance = tempfile.mkdtemp(prefix="llm_tracker_bench_")
    app_bg, app_sync, app_budgets = make_apps(url, instance)
    with app_sync.app_context():
        db.drop_all()
        db.create_all()
    add_budgets(app_budgets)
    model = BenchChatModel(messages=itertools.repeat(REPLY))
    conn, style = raw_connection(url)
    client, langfuse_handler = langfuse
    variants = {
        "no handler": Variant([]),
        "in-memory handler": Variant([UsageMetadataCallbackHandler()]),
        "raw INSERT handler": Variant([RawInsertHandler(conn, style)]),
        "Langfuse CallbackHandler": Variant([langfuse_handler], client.flush),
        "UsageHandler, background": Variant(
            [UsageHandler({"user_id": 1}, node_name="bg", app=app_bg)], llm_tracker.flush
        ),
        "UsageHandler, sync": Variant(
            [UsageHandler({"user_id": 1}, node_name="sync", app=app_sync)]
        ),
        "UsageHandler, background + 3 budgets": Variant(
            [
                UsageHandler(
                    {"user_id": 2, "source_type": "bench"}, node_name="bud", app=app_budgets
                )
            ],
            llm_tracker.flush,
        ),
    }
    spans_before = sink.stats()["spans"]
    for variant in variants.values():  # warm up every path
        variant.run(model, WARM_UP)
    # Interleave the variants round by round (each round starting one further along) so
    # machine noise and the garbage one leaves for the next hit them alike.
    samples: dict[str, list[tuple[float, ...]]] = {k: [] for k in variants}
    order = list(variants)
    for i in range(rounds):
        for label in order[i % len(order) :] + order[: i % len(order)]:
            samples[label].append(variants[label].run(model, calls))
    # Median per measure over the rounds.
    result = {
        label: tuple(statistics.median(column) for column in zip(*v, strict=True))
        for label, v in samples.items()
    }
    llm_tracker.flush()  # already done by the last round; counts must not race the writer
    sink_stats = sink.stats()
    counts = count_rows(app_sync)
    counters = budget_counters(app_sync)
    with app_sync.app_context():
        db.drop_all()
    conn.close()
    shutil.rmtree(instance, ignore_errors=True)

    per_variant = calls * rounds + WARM_UP
    print(
        f"\n{name}: {calls} invokes x {rounds} rounds per variant, median µs per invoke"
        " and overhead over no handler (caller: until the last invoke returns; settled:"
        " until the background work is flushed too; cpu: this process's CPU, settled)"
    )
    print(f"  {'':38s}" + "".join(f"{m:>9s} {'+':>7s}" for m in MEASURES))
    base = result["no handler"]
    overhead = {
        label: tuple(v - b for v, b in zip(values, base, strict=True))
        for label, values in result.items()
    }
    for label, values in result.items():
        print(
            f"  {label:38s}"
            + "".join(
                f"{v:9.1f} {'' if label == 'no handler' else f'{o:7.1f}':>7s}"
                for v, o in zip(values, overhead[label], strict=True)
            )
        )
    print(f"  {'overhead ratios':38s}" + "".join(f"{m:>17s}" for m in MEASURES) + "   target")
    for (ours, theirs), target in RATIOS.items():
        ratios = [o / t for o, t in zip(overhead[ours], overhead[theirs], strict=True)]
        verdict = (
            ""
            if target is None
            else f"<= {target:g}x: "
            + ", ".join(
                f"{m} {'holds' if r <= target else 'misses'}"
                for m, r in zip(MEASURES, ratios, strict=True)
            )
        )
        print(
            f"  {SHORT[ours] + ' / ' + SHORT[theirs]:38s}"
            + "".join(f"{r:16.2f}x" for r in ratios)
            + f"   {verdict}"
        )

    spans = sink_stats["spans"] - spans_before
    print(
        f"  Langfuse: {spans} spans received by the sink (expected {per_variant}), "
        f"{sink_stats['requests']} requests so far"
    )
    print(
        f"  rows: {counts['rows']} stored, {counts['run_ids']} distinct run ids (expected "
        f"{4 * per_variant}: raw, background, sync, budgets), {counts['spooled']} spooled"
    )
    problems = []
    if spans != per_variant:
        problems.append(f"Langfuse exported {spans} spans, not {per_variant}")
    if counts["rows"] != 4 * per_variant or counts["run_ids"] != counts["rows"]:
        problems.append("rows lost or doubled")
    if counts["spooled"]:
        problems.append("rows spooled")
    for name_, spent, reserved, cost in counters:
        print(f"  budget {name_}: spent {spent} (rows: {cost}), reserved {reserved}")
        if spent != cost or reserved != 0 or len(counters) != 3:
            problems.append(f"budget {name_}: counter {spent} / {reserved} vs rows {cost}")
    for node in ("bg", "sync", "bud"):
        rolled = [
            counts[f"{node} {t}"]
            for t in ("llm_tracker_usage_rollup", "llm_tracker_usage_rollup_day")
        ]
        print(
            f"  UsageHandler {node:4s}: {counts[node]} rows (expected {per_variant}), "
            f"{counts[node + ' priced']} priced, rollup calls {rolled[0]} (15 min) /"
            f" {rolled[1]} (day)"
        )
        if (
            counts[node] != per_variant
            or counts[node + " priced"] != per_variant
            or rolled != [per_variant, per_variant]
        ):
            problems.append(f"{node}: rows lost, doubled, unpriced or miscounted in rollups")
    if problems:
        raise SystemExit("; ".join(problems))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--postgres", default=os.environ.get("LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sink = Sink()
    try:
        langfuse = langfuse_client(sink)
        with tempfile.TemporaryDirectory() as tmp:
            bench_backend(
                "SQLite (file, WAL)",
                f"sqlite:///{tmp}/bench.sqlite3",
                args.calls,
                args.rounds,
                sink,
                langfuse,
            )
        if not args.no_postgres:
            bench_backend("PostgreSQL", args.postgres, args.calls, args.rounds, sink, langfuse)
        langfuse[0].shutdown()
    finally:
        sink.close()


if __name__ == "__main__":
    main()
