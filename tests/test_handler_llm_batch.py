"""Plain (non-chat) LLM batches: several prompts in one request make one row per prompt.

LangChain gives the request's usage to the first run only and empties the others'
(``LLMResult.flatten``): those are billed, not missing — ``metadata.usage_billed_to_run``
names the run that carries them. Runs that really carried no usage are still flagged
``usage_missing``. Real SDKs over HTTP against the fake provider.

``tokens(row)`` is (prompt, completion, total, cached, reasoning, cache_write).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from support.sdk_support import anthropic_llm, completions_llm, tokens, usage_rows

from llm_tracker import UsageHandler

PROMPTS = ["Say one.", "Say two.", "Say three."]
# fake_provider.COMPLETION_USAGE_PER_PROMPT (4 prompt + 5 completion) x 3 prompts.
REQUEST_ROW = (12, 15, 27, 0, 0, 0)
# gpt-3.5-turbo-instruct (genai-prices 0.2.3): input 1.50, output 2 USD per million:
# 12 x 1.5 + 15 x 2 = 48 / 1M.
REQUEST_COST = Decimal("0.000048")
NO_TOKENS = (0, 0, 0, 0, 0, 0)


@pytest.fixture
def handler(app) -> UsageHandler:
    return UsageHandler({"user_id": 1}, node_name="batch", app=app)


def by_run(app) -> dict[str, Any]:
    return {row.run_id: row for row in usage_rows(app)}


def assert_billed_to_first(app, run_ids: list[str]) -> None:
    rows = by_run(app)
    assert sorted(rows) == sorted(run_ids)
    first, *others = (rows[r] for r in run_ids)
    assert tokens(first) == REQUEST_ROW
    assert first.cost_usd == REQUEST_COST
    assert first.model == "gpt-3.5-turbo-instruct"
    for row in rows.values():
        assert "usage_missing" not in row.meta, row.meta
    assert "usage_billed_to_run" not in first.meta
    for row in others:
        assert tokens(row) == NO_TOKENS
        assert row.cost_usd == Decimal(0)
        assert row.meta["usage_billed_to_run"] == run_ids[0]
        assert row.success is True


def test_batch_in_one_request(app, fake_provider, handler):
    result = completions_llm(fake_provider).generate(PROMPTS, callbacks=[handler])
    assert len(fake_provider.requests) == 1
    assert fake_provider.requests[0].json["prompt"] == PROMPTS
    assert result.llm_output["token_usage"]["total_tokens"] == 27
    assert_billed_to_first(app, [str(r.run_id) for r in result.run])


def test_runnable_batch_in_one_request(app, fake_provider, handler):
    texts = completions_llm(fake_provider).batch(PROMPTS, config={"callbacks": [handler]})
    assert texts == ["Hello from the fake provider."] * 3
    assert len(fake_provider.requests) == 1
    rows = usage_rows(app)
    assert sorted(tokens(r) for r in rows) == [NO_TOKENS, NO_TOKENS, REQUEST_ROW]
    assert sum(r.cost_usd for r in rows) == REQUEST_COST
    assert [r.meta.get("usage_missing") for r in rows] == [None] * 3
    # (generate() without metadata gets no ls_provider from LangChain; batch() does.)
    assert [(r.model, r.provider) for r in rows] == [("gpt-3.5-turbo-instruct", "openai")] * 3


def test_async_batch_in_one_request(app, fake_provider, handler):
    llm = completions_llm(fake_provider)
    result = asyncio.run(llm.agenerate(PROMPTS, callbacks=[handler]))
    assert len(fake_provider.requests) == 1
    assert_billed_to_first(app, [str(r.run_id) for r in result.run])


class Recorder(BaseCallbackHandler):
    """Keeps the start and end events LangChain sends, to send them again."""

    def __init__(self) -> None:
        self.starts: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.ends: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append((args, kwargs))

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.ends.append((args, kwargs))


def test_ends_in_any_order(app, fake_provider, handler):
    # Async callbacks of a sync handler run in a thread pool: the first run (the one with
    # the usage) may end last. The real events of a real batch, ended in reverse.
    recorder = Recorder()
    result = completions_llm(fake_provider).generate(PROMPTS, callbacks=[recorder])
    run_ids = [str(r.run_id) for r in result.run]
    assert [str(kw["run_id"]) for _, kw in recorder.ends] == run_ids
    for args, kwargs in recorder.starts:
        handler.on_llm_start(*args, **kwargs)
    for args, kwargs in reversed(recorder.ends[1:]):
        handler.on_llm_end(*args, **kwargs)
    assert usage_rows(app) == []  # held: billed or missing is known once the first ends
    handler.on_llm_end(*recorder.ends[0][0], **recorder.ends[0][1])
    assert_billed_to_first(app, run_ids)


def test_handler_on_some_runs_only(app, fake_provider, handler):
    # The first prompt's run (with the request's usage) is not this handler's: the two it
    # sees carried none, so they are missing, and written once both have ended.
    completions_llm(fake_provider).batch(
        PROMPTS, config=[{"callbacks": []}, {"callbacks": [handler]}, {"callbacks": [handler]}]
    )
    rows = usage_rows(app)
    assert [tokens(r) for r in rows] == [NO_TOKENS, NO_TOKENS]
    assert [r.meta.get("usage_missing") for r in rows] == [True, True]
    assert [r.meta.get("usage_billed_to_run") for r in rows] == [None, None]


def test_stream_without_usage_is_still_missing(app, fake_provider, handler):
    # langchain-openai's plain-LLM stream reads no usage (the API sends none unless asked).
    text = "".join(completions_llm(fake_provider).stream("Hi", config={"callbacks": [handler]}))
    assert text == "Hello from the fake provider."
    (row,) = usage_rows(app)
    assert tokens(row) == NO_TOKENS
    assert row.meta["usage_missing"] is True
    assert "usage_billed_to_run" not in row.meta


def test_batch_without_usage_is_still_missing(app, fake_provider, handler):
    # AnthropicLLM sends one request per prompt and drops each response's usage, so no
    # run of the batch carries any: all three are missing, none billed elsewhere.
    texts = anthropic_llm(fake_provider).batch(PROMPTS, config={"callbacks": [handler]})
    assert texts == ["Hello from the fake provider."] * 3
    assert [r.path for r in fake_provider.requests] == ["/v1/messages"] * 3
    rows = usage_rows(app)
    assert [tokens(r) for r in rows] == [NO_TOKENS] * 3
    assert [r.meta.get("usage_missing") for r in rows] == [True] * 3
    assert [r.meta.get("usage_billed_to_run") for r in rows] == [None] * 3
    assert [(r.model, r.provider) for r in rows] == [("claude-sonnet-4-5", "anthropic")] * 3
