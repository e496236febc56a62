"""Recording overhead per LLM call: UsageHandler against the baselines, in one run.

Times N invokes of an in-process fake chat model (no network) with: no handler;
langchain-core's in-memory UsageMetadataCallbackHandler; a minimal handler doing one raw
INSERT + COMMIT on a plain DBAPI connection; llm_tracker's UsageHandler, which prices each
row and adds it to its rollup row in the same transaction. On SQLite (file, WAL) and
PostgreSQL. Prints microseconds per invoke and the overhead ratios, and checks that the
rollups count every UsageHandler row.

    .venv/bin/python bench/overhead.py [--calls 2000] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from admin_app import create_app  # noqa: E402
from llm_tracker import UsageHandler, db  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPLY = AIMessage(
    content="Hello!",
    response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
    usage_metadata={"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500,
                    "input_token_details": {"cache_read": 1024},
                    "output_token_details": {"reasoning": 64}},
)
RAW_INSERT = (
    "INSERT INTO llm_tracker_usage (id, run_id, user_id, model, node_name, prompt_tokens,"
    " completion_tokens, total_tokens, cached_tokens, cache_write_tokens, reasoning_tokens,"
    " success, metadata, created_at) VALUES ({})"
)


class RawInsertHandler(BaseCallbackHandler):
    """The least a recording handler can do: one INSERT + COMMIT per finished run."""

    def __init__(self, conn, paramstyle: str) -> None:
        self.conn = conn
        marks = ", ".join(["?"] * 14) if paramstyle == "qmark" else ", ".join(["%s"] * 14)
        self.sql = RAW_INSERT.format(marks)

    def on_llm_end(self, response, *, run_id, **kwargs) -> None:
        um = response.generations[0][0].message.usage_metadata
        cur = self.conn.cursor()
        cur.execute(self.sql, (
            uuid.uuid4().hex, str(run_id), 1, "gpt-4o-mini", "n", um["input_tokens"],
            um["output_tokens"], um["total_tokens"], 1024, 0, 64, True,
            json.dumps({"node_name": "n"}), datetime.now(UTC).isoformat(),
        ))
        self.conn.commit()


def time_invokes(model, callbacks, calls: int, rounds: int) -> float:
    """Median over rounds of µs per invoke."""
    config = {"callbacks": callbacks}
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            model.invoke("hi", config=config)
        per_round.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(per_round)


def raw_connection(url: str):
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn, "qmark"
    import psycopg

    options = parsed.query.get("options")
    conn = psycopg.connect(parsed.set(drivername="postgresql", query={}).render_as_string(False),
                           options=options)
    return conn, "format"


def bench_schema(url: str) -> str:
    """PostgreSQL: a URL whose tables live in a scratch schema ``llm_tracker_bench``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    import psycopg

    with psycopg.connect(parsed.set(drivername="postgresql").render_as_string(False),
                         autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS llm_tracker_bench CASCADE")
        conn.execute("CREATE SCHEMA llm_tracker_bench")
    return parsed.update_query_dict({"options": "-csearch_path=llm_tracker_bench"}
                                    ).render_as_string(False)


def bench_backend(name: str, url: str, calls: int, rounds: int) -> dict[str, float]:
    url = bench_schema(url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "LLM_TRACKER_SPOOL_PATH":
                      os.path.join(tempfile.gettempdir(), "llm_tracker_bench_spool.jsonl")})
    with app.app_context():
        db.drop_all()
        db.create_all()
    model = GenericFakeChatModel(messages=itertools.repeat(REPLY))
    conn, style = raw_connection(url)
    handlers = {
        "no handler": [],
        "UsageMetadataCallbackHandler": [UsageMetadataCallbackHandler()],
        "raw INSERT handler": [RawInsertHandler(conn, style)],
        "UsageHandler": [UsageHandler({"user_id": 1}, node_name="n", app=app)],
    }
    for callbacks in handlers.values():  # warm up every path
        time_invokes(model, callbacks, 50, 1)
    # Interleave the variants round by round so machine noise hits them alike.
    samples: dict[str, list[float]] = {k: [] for k in handlers}
    for _ in range(rounds):
        for label, callbacks in handlers.items():
            samples[label].append(time_invokes(model, callbacks, calls, 1))
    result = {label: statistics.median(v) for label, v in samples.items()}
    with app.app_context():
        stored = db.session.execute(text("SELECT count(*) FROM llm_tracker_usage")).scalar()
        priced = db.session.execute(text(
            "SELECT count(*) FROM llm_tracker_usage WHERE cost_usd IS NOT NULL")).scalar()
        rolled = db.session.execute(text(
            "SELECT coalesce(sum(calls), 0) FROM llm_tracker_usage_rollup")).scalar()
        db.session.remove()
        db.drop_all()
    conn.close()
    expected = (calls * rounds + 50) * 2
    print(f"\n{name}: {calls} invokes x {rounds} rounds per variant, median µs per invoke")
    base = result["no handler"]
    for label, us in result.items():
        extra = "" if label == "no handler" else f"  overhead {us - base:8.1f} µs"
        print(f"  {label:30s} {us:8.1f} µs{extra}")
    raw = result["raw INSERT handler"] - base
    ours = result["UsageHandler"] - base
    print(f"  UsageHandler overhead / raw INSERT overhead = {ours / raw:.2f}x (target <= 2x)")
    print(f"  rows stored: {stored} (expected {expected}); UsageHandler rows priced: {priced},"
          f" in the rollups: {rolled} (expected {expected // 2} each)")
    if stored != expected or priced != rolled or rolled != expected // 2:
        raise SystemExit("rows lost, unpriced or missing from the rollups")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get(
        "LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_backend("SQLite (file, WAL)", f"sqlite:///{tmp}/bench.sqlite3",
                      args.calls, args.rounds)
    if not args.no_postgres:
        bench_backend("PostgreSQL", args.postgres, args.calls, args.rounds)


if __name__ == "__main__":
    main()
