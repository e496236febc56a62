"""Bench helpers: a PostgreSQL scratch schema per benchmark, and the fake model's reply."""

from __future__ import annotations

from langchain_core.messages import AIMessage
from sqlalchemy.engine import make_url

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# A reply whose model genai-prices knows, so every row is priced.
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


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg takes it (no driver, no query)."""
    return make_url(url).set(drivername="postgresql", query={}).render_as_string(False)


def scratch_schema(url: str, schema: str) -> str:
    """(Re)create ``schema`` and return ``url`` with it as the search path."""
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return (
        make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(False)
    )


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
