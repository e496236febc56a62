"""Statistics and list latency at 100k, 1M and 10M rows, against a plain GROUP BY, in one run.

For each size: loads synthetic rows (PostgreSQL: COPY; SQLite: executemany; never the ORM)
spread over the same 92 days, builds the indexes and the rollups (``rollup.rebuild``: the
15-minute and the daily level), then times, through the library's functions:

- token-stats: ``get_token_stats_from_query`` for the last month (summary + by_model +
  daily series), read from the rollups (+ raw rows for ragged edges);
- the same through ``raw_scan()`` (the raw aggregation the rollups replace);
- a plain ``SELECT model, count(*), sum(...) FROM llm_tracker_usage GROUP BY model``;
- list page 1 with a model filter (``get_llm_usage_list(model_filter="mini")``), total
  included;
- the breakdowns ``group_by=user`` and ``group_by=node`` for the same month
  (``get_stats_by_dimension``; the data has 1,000 users and 50 nodes), the same through
  ``raw_scan()``, and a plain ``GROUP BY user_id`` / ``GROUP BY node_name`` over the raw
  table.

Prints the median of ``--repeat`` runs and the ratios.

    .venv/bin/python bench/stats.py --rows 100000 --rows 1000000 --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from overhead import DEFAULT_PG, bench_schema  # noqa: E402

from admin_app import create_app  # noqa: E402
from llm_tracker import LLMUsage, db  # noqa: E402
from llm_tracker.llm_usage import get_llm_usage_list  # noqa: E402
from llm_tracker.llm_usage_stats import (  # noqa: E402
    get_stats_by_dimension,
    get_token_stats_from_query,
    raw_scan,
)
from llm_tracker.rollup import rebuild  # noqa: E402

END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 92
# (model, provider, input $/Mtok, output $/Mtok, weight); None prices: an unpriced model.
MODELS = [
    ("gpt-4o-mini", "openai", 0.15, 0.60, 40),
    ("gpt-4o", "openai", 2.50, 10.0, 20),
    ("claude-sonnet-4", "anthropic", 3.0, 15.0, 15),
    ("gemini-2.5-flash", "google", 0.30, 2.50, 12),
    ("o3-mini", "openai", 1.10, 4.40, 8),
    ("acme-internal-7", None, None, None, 5),
]
# 1,000 users, most calls from a few (1/k weights), plus calls without a user; 50 nodes
# (features), a few used most; three kinds of work.
USERS = [None, *range(1, 1001)]
USER_WEIGHTS = [20, *(60 / k for k in range(1, 1001))]
NODES = [f"node-{k:02d}" for k in range(1, 51)]
NODE_WEIGHTS = [1 / k for k in range(1, 51)]
SOURCES = ["api", "task", "batch"]
COLUMNS = (
    "id",
    "run_id",
    "user_id",
    "model",
    "provider",
    "node_name",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "latency_ms",
    "success",
    "error",
    "metadata",
    "created_at",
    "cost_usd",
    "input_cost_usd",
    "output_cost_usd",
    "cache_savings_usd",
    "price_source",
    "source_type",
)
CHUNK = 100_000
MONTH_QUERY = {"start_date": "2026-10-01", "end_date": "2026-10-31", "granularity": "month"}
RAW_GROUP_BY = """SELECT {column}, count(*), sum(prompt_tokens), sum(completion_tokens),
    sum(total_tokens), sum(cached_tokens), sum(reasoning_tokens), sum(cost_usd)
FROM llm_tracker_usage GROUP BY {column}"""
BREAKDOWNS = {"user": "user_id", "node": "node_name"}


def generate(n: int, seed: int = 7):
    """Rows in time order (as an application writes them), ``CHUNK`` at a time."""
    rng = random.Random(seed)
    start = END - timedelta(days=DAYS)
    step = DAYS * 86400 / n
    models = list(MODELS)
    weights = [m[4] for m in MODELS]
    for base in range(0, n, CHUNK):
        count = min(CHUNK, n - base)
        picks = rng.choices(models, weights, k=count)
        users = rng.choices(USERS, USER_WEIGHTS, k=count)
        nodes = rng.choices(NODES, NODE_WEIGHTS, k=count)
        chunk = []
        for j in range(count):
            i = base + j
            model, provider, pin, pout, _ = picks[j]
            prompt = rng.randint(50, 4000)
            completion = rng.randint(10, 800)
            cached = prompt // 4 if i % 3 == 0 else 0
            success = rng.random() >= 0.02
            created = start + timedelta(seconds=i * step + rng.random() * step)
            if pin is None:
                cost = cin = cout = None
            else:
                # Integer 1e-12 USD: exact, and what SQLite stores.
                cin = round(prompt * pin * 1_000_000)
                cout = round(completion * pout * 1_000_000)
                cost = cin + cout
            node = nodes[j]
            chunk.append(
                (
                    f"{i:032x}",
                    f"{i:032x}",
                    users[j],
                    model,
                    provider,
                    node,
                    prompt,
                    completion,
                    prompt + completion,
                    cached,
                    0,
                    0,
                    rng.randint(200, 3000),
                    success,
                    None if success else "RateLimitError",
                    node,
                    created,
                    cost,
                    cin,
                    cout,
                    0 if cost is not None else None,
                    SOURCES[i % 3],
                )
            )
        yield chunk


def _money(units: int | None) -> str:
    if units is None:
        return "\\N"
    return f"{units // 10**12}.{units % 10**12:012d}"


def load_postgres(url: str, n: int) -> None:
    import psycopg

    parsed = make_url(url)
    conn = psycopg.connect(
        parsed.set(drivername="postgresql", query={}).render_as_string(False),
        options=parsed.query.get("options"),
    )
    with conn:
        cols = ", ".join(f'"{c}"' for c in COLUMNS)
        with conn.cursor() as cur:
            with cur.copy(f"COPY llm_tracker_usage ({cols}) FROM STDIN") as copy:
                for chunk in generate(n):
                    lines = []
                    for r in chunk:
                        lines.append(
                            "\t".join(
                                (
                                    r[0],
                                    r[1],
                                    "\\N" if r[2] is None else str(r[2]),
                                    r[3],
                                    r[4] or "\\N",
                                    r[5],
                                    str(r[6]),
                                    str(r[7]),
                                    str(r[8]),
                                    str(r[9]),
                                    "0",
                                    "0",
                                    str(r[12]),
                                    "t" if r[13] else "f",
                                    r[14] or "\\N",
                                    f'{{"node_name": "{r[15]}"}}',
                                    r[16].isoformat(),
                                    _money(r[17]),
                                    _money(r[18]),
                                    _money(r[19]),
                                    _money(r[20]),
                                    "bench" if r[17] is not None else "\\N",
                                    r[21],
                                )
                            )
                        )
                    copy.write("\n".join(lines) + "\n")
        conn.execute("SET maintenance_work_mem = '1GB'")
    conn.close()


def load_sqlite(path: str, n: int) -> None:
    conn = sqlite3.connect(path)
    marks = ", ".join("?" * len(COLUMNS))
    sql = f"INSERT INTO llm_tracker_usage ({', '.join(COLUMNS)}) VALUES ({marks})"
    for chunk in generate(n):
        conn.executemany(
            sql,
            [
                (
                    *r[:15],
                    json.dumps({"node_name": r[15]}),
                    r[16].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),
                    *r[17:21],
                    "bench" if r[17] is not None else None,
                    r[21],
                )
                for r in chunk
            ],
        )
        conn.commit()
    conn.close()


def drop_indexes(conn, dialect: str) -> list[Any]:
    """Drop the raw table's indexes (bulk loads are faster without); returns what to rebuild."""
    table = LLMUsage.__table__
    indexes = list(table.indexes)
    for index in indexes:
        index.drop(conn)
    if dialect == "postgresql":
        for name in ("uq_llm_tracker_usage_run_id", "pk_llm_tracker_usage"):
            conn.execute(text(f"ALTER TABLE llm_tracker_usage DROP CONSTRAINT {name}"))
    return indexes


def create_indexes(conn, dialect: str, indexes: list[Any]) -> None:
    if dialect == "postgresql":
        conn.execute(text("SET maintenance_work_mem = '1GB'"))
        conn.execute(
            text(
                "ALTER TABLE llm_tracker_usage ADD CONSTRAINT pk_llm_tracker_usage PRIMARY KEY (id)"
            )
        )
        conn.execute(
            text(
                "ALTER TABLE llm_tracker_usage ADD CONSTRAINT"
                " uq_llm_tracker_usage_run_id UNIQUE (run_id)"
            )
        )
    for index in indexes:
        index.create(conn)
    conn.execute(text("ANALYZE"))


def timed(fn, repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls (after one warm-up) and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_size(backend: str, url: str, n: int, repeat: int) -> dict[str, float]:
    url = bench_schema(url)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "LLM_TRACKER_SPOOL_PATH": os.path.join(
                tempfile.gettempdir(), "llm_tracker_bench_spool.jsonl"
            ),
        }
    )
    figures: dict[str, float] = {}
    with app.app_context():
        db.drop_all()
        db.create_all()
        with db.engine.begin() as conn:
            indexes = drop_indexes(conn, backend)
        t0 = time.perf_counter()
        if backend == "postgresql":
            load_postgres(url, n)
        else:
            load_sqlite(make_url(url).database, n)
        figures["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with db.engine.begin() as conn:
            create_indexes(conn, backend, indexes)
        figures["indexes"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rebuild()
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            rollup_rows = conn.execute(
                text("SELECT count(*) FROM llm_tracker_usage_rollup")
            ).scalar_one()
            day_rows = conn.execute(
                text("SELECT count(*) FROM llm_tracker_usage_rollup_day")
            ).scalar_one()
            slice_rows = conn.execute(
                text("SELECT count(*) FROM llm_tracker_usage_slice_day")
            ).scalar_one()
        figures["rebuild"] = time.perf_counter() - t0

        def stats():
            result = get_token_stats_from_query(MONTH_QUERY)
            db.session.remove()
            return result

        def stats_raw():
            with raw_scan():
                return stats()

        def group_by(column="model"):
            with db.engine.connect() as conn:
                return conn.execute(text(RAW_GROUP_BY.format(column=column))).all()

        def breakdown(dimension):
            result = get_stats_by_dimension(
                dimension, MONTH_QUERY["start_date"], MONTH_QUERY["end_date"]
            )
            db.session.remove()
            return result

        def page_one():
            result = get_llm_usage_list(page=1, page_size=20, model_filter="mini")
            db.session.remove()
            return result

        figures["stats"], fast = timed(stats, repeat)
        figures["stats_raw"], slow = timed(stats_raw, repeat)
        if fast != slow:
            raise SystemExit("rollup statistics differ from the raw scan")
        figures["group_by"], _ = timed(group_by, repeat)
        figures["list"], listed = timed(page_one, repeat)
        for dimension, column in BREAKDOWNS.items():
            figures[dimension], fast = timed(lambda d=dimension: breakdown(d), repeat)
            with raw_scan():
                figures[f"{dimension}_raw"], slow = timed(lambda d=dimension: breakdown(d), repeat)
            if fast != slow:
                raise SystemExit(f"the {dimension} breakdown differs from the raw scan")
            figures[f"{dimension}_group_by"], _ = timed(lambda c=column: group_by(c), repeat)
        db.session.remove()
    print(
        f"\n{backend}, {n:,} rows over {DAYS} days ({rollup_rows:,} 15-minute rollup rows, "
        f"{n / max(rollup_rows, 1):.1f} raw rows each; {day_rows:,} daily rollup rows; "
        f"{slice_rows:,} daily slice rows)"
    )
    print(
        f"  load {figures['load']:.1f} s, indexes {figures['indexes']:.1f} s, "
        f"rollup rebuild {figures['rebuild']:.1f} s"
    )
    print(
        f"  token-stats (month: summary + by_model + daily series)  "
        f"{figures['stats'] * 1000:9.1f} ms"
    )
    slower = figures["stats_raw"] / figures["stats"]
    print(
        f"  same via raw_scan()                                    "
        f"{figures['stats_raw'] * 1000:9.1f} ms   ({slower:.1f}x token-stats)"
    )
    slower = figures["group_by"] / figures["stats"]
    print(
        f"  plain GROUP BY model over the raw table               "
        f"{figures['group_by'] * 1000:9.1f} ms   ({slower:.1f}x token-stats)"
    )
    print(
        f"  list page 1, model filter 'mini' (total {listed['total']:,})      "
        f"{figures['list'] * 1000:9.1f} ms"
    )
    for dimension, column in BREAKDOWNS.items():
        fast = figures[dimension]
        print(
            f"  breakdown group_by={dimension:<5} (month, top 10 + others)      "
            f"{fast * 1000:9.1f} ms"
        )
        print(
            f"    same via raw_scan()                                  "
            f"{figures[f'{dimension}_raw'] * 1000:9.1f} ms   "
            f"({figures[f'{dimension}_raw'] / fast:.1f}x)"
        )
        print(
            f"    plain GROUP BY {column:<9} over the raw table         "
            f"{figures[f'{dimension}_group_by'] * 1000:9.1f} ms   "
            f"({figures[f'{dimension}_group_by'] / fast:.1f}x)"
        )
    figures["rollup_rows"] = rollup_rows
    return figures


def drop_bench_schema(url: str) -> None:
    """Drop the scratch schema (10M rows take a few GB)."""
    import psycopg

    parsed = make_url(url)
    with psycopg.connect(
        parsed.set(drivername="postgresql", query={}).render_as_string(False), autocommit=True
    ) as conn:
        conn.execute("DROP SCHEMA IF EXISTS llm_tracker_bench CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        action="append",
        help="table size (repeatable; default 100000, 1000000, 10000000)",
    )
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--postgres", default=os.environ.get("LLM_TRACKER_TEST_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the last size's data (PostgreSQL: schema llm_tracker_bench)",
    )
    args = parser.parse_args()
    sizes = args.rows or [100_000, 1_000_000, 10_000_000]
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            url = (
                args.postgres
                if args.backend == "postgresql"
                else f"sqlite:///{tmp}/bench-{n}.sqlite3"
            )
            results[n] = bench_size(args.backend, url, n, args.repeat)
            if args.backend == "sqlite" and not args.keep:
                os.remove(f"{tmp}/bench-{n}.sqlite3")
    if args.backend == "postgresql" and not args.keep:
        drop_bench_schema(args.postgres)
    first = results[sizes[0]]
    print(
        f"\nsummary ({args.backend}; median of {args.repeat}; total run "
        f"{time.perf_counter() - started:.0f} s)"
    )
    print(
        "  rows        token-stats   vs smallest   raw GROUP BY   speed-up   "
        "list page 1   vs smallest"
    )
    for n, f in results.items():
        print(
            f"  {n:>10,}  {f['stats'] * 1000:9.1f} ms  {f['stats'] / first['stats']:9.2f}x"
            f"  {f['group_by'] * 1000:10.1f} ms  {f['group_by'] / f['stats']:7.1f}x"
            f"  {f['list'] * 1000:9.1f} ms  {f['list'] / first['list']:9.2f}x"
        )
    print("  targets: speed-up >= 50x at 10M rows; token-stats <= 2x its 100k time")
    for dimension in BREAKDOWNS:
        print(f"\n  rows        group_by={dimension:<5}  vs smallest   raw GROUP BY   speed-up")
        for n, f in results.items():
            print(
                f"  {n:>10,}  {f[dimension] * 1000:9.1f} ms  "
                f"{f[dimension] / first[dimension]:9.2f}x"
                f"  {f[f'{dimension}_group_by'] * 1000:10.1f} ms"
                f"  {f[f'{dimension}_group_by'] / f[dimension]:7.1f}x"
            )
    print("  targets: each <= 2x its 100k time at 10M rows, >= 50x faster than the raw GROUP BY")


if __name__ == "__main__":
    main()
