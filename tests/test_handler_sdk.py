"""UsageHandler against the real SDKs (langchain-openai, langchain-google-genai) talking HTTP
to the fake provider: the acceptance matrix of issue 2, one row per model run, exact numbers.

Default numbers come from ``fake_provider``: OpenAI/Azure 12 prompt + 5 completion
(``OPENAI_USAGE``), Gemini 9 + 6 (``GEMINI_USAGE``); see ``sdk_support.FLAVOURS``.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel
from langchain_core.tools import tool
from langchain_openai import OpenAI
from support.fake_provider import (
    DEFAULT_TEXT,
    gemini_response,
    gemini_stream_events,
    openai_chunk,
    openai_completion,
    openai_stream_events,
    sse,
)
from support.sdk_support import FLAVOURS, GEMINI, OPENAI, Flavour, cfg, only_row, tokens, usage_rows

from llm_tracker import UsageHandler

pytestmark = pytest.mark.contract


@pytest.fixture(params=FLAVOURS, ids=[f.name for f in FLAVOURS])
def flavour(request) -> Flavour:
    return request.param


@pytest.fixture
def handler(app) -> UsageHandler:
    return UsageHandler({"user_id": 42, "source_type": "task"}, node_name="matrix", app=app)


def assert_default_row(row, flavour: Flavour, *, success: bool = True) -> None:
    assert row.model == flavour.served_model
    assert row.provider == flavour.provider
    assert row.requested_model == flavour.requested_model
    assert row.deployment == flavour.deployment
    assert tokens(row) == (flavour.prompt, flavour.completion, flavour.total, 0, 0, 0)
    assert row.success is success
    assert row.error is None
    assert row.user_id == 42
    assert row.node_name == "matrix"
    assert row.meta["node_name"] == "matrix"
    assert row.meta["source_type"] == "task"
    if flavour.deployment:
        assert row.meta["deployment"] == flavour.deployment
    for flag in ("usage_missing", "llm_cache_hit", "cancelled"):
        assert flag not in row.meta
    assert row.latency_ms is not None and row.latency_ms >= 0


# --- invoke / batch, sync and async ------------------------------------------------------


def test_invoke(app, fake_provider, flavour, handler):
    msg = flavour.build(fake_provider).invoke("hi", config=cfg(handler))
    assert msg.content == DEFAULT_TEXT
    row = only_row(app)
    assert_default_row(row, flavour)
    assert len(fake_provider.requests) == 1


def test_batch_three_prompts_three_rows(app, fake_provider, flavour, handler):
    model = flavour.build(fake_provider)
    out = model.batch(["a", "b", "c"], config=cfg(handler))
    assert [m.content for m in out] == [DEFAULT_TEXT] * 3
    rows = usage_rows(app)
    assert len(rows) == 3
    for row in rows:
        assert_default_row(row, flavour)
    assert len({row.run_id for row in rows}) == 3
    assert sum(r.total_tokens for r in rows) == 3 * flavour.total


def test_ainvoke(app, fake_provider, flavour, handler):
    model = flavour.build(fake_provider)
    msg = asyncio.run(model.ainvoke("hi", config=cfg(handler)))
    assert msg.content == DEFAULT_TEXT
    assert_default_row(only_row(app), flavour)


def test_abatch(app, fake_provider, flavour, handler):
    model = flavour.build(fake_provider)
    out = asyncio.run(model.abatch(["a", "b", "c"], config=cfg(handler)))
    assert len(out) == 3
    rows = usage_rows(app)
    assert len(rows) == 3
    for row in rows:
        assert_default_row(row, flavour)
    assert len(fake_provider.requests) == 3


# --- streaming -----------------------------------------------------------------------------


def test_stream_with_usage(app, fake_provider, flavour, handler):
    chunks = list(flavour.build(fake_provider).stream("hi", config=cfg(handler)))
    assert "".join(c.content for c in chunks) == DEFAULT_TEXT
    assert_default_row(only_row(app), flavour)
    if flavour.name != "gemini":
        assert fake_provider.requests[0].json["stream_options"] == {"include_usage": True}


def test_stream_records_time_to_first_token(app, fake_provider, flavour, handler):
    if flavour.name == "gemini":
        body = sse(gemini_stream_events(flavour.served_model), done=False)
    else:
        body = sse(openai_stream_events(flavour.served_model, include_usage=True))
    events = body.count("data:")
    fake_provider.enqueue(body, sse=True, delay=0.1)  # 100 ms between events
    list(flavour.build(fake_provider).stream("hi", config=cfg(handler)))
    row = only_row(app)
    # The first token comes with the first events; pauses of 100 ms follow it.
    assert events >= 3
    assert row.ttft_ms is not None and 0 <= row.ttft_ms
    assert row.latency_ms - row.ttft_ms >= 100
    # Not streamed: no first token to time.
    flavour.build(fake_provider).invoke("hi", config=cfg(handler))
    streamed, invoked = usage_rows(app)
    assert (streamed.id, invoked.ttft_ms) == (row.id, None)


def test_astream_with_usage(app, fake_provider, flavour, handler):
    async def run() -> str:
        return "".join(
            [
                c.content
                async for c in flavour.build(fake_provider).astream("hi", config=cfg(handler))
            ]
        )

    assert asyncio.run(run()) == DEFAULT_TEXT
    assert_default_row(only_row(app), flavour)


def _gemini_sse_without_usage(model: str) -> str:
    events = [
        gemini_response(model, piece, finish=i == 1) for i, piece in enumerate(("Hello", " there"))
    ]
    for e in events:
        del e["usageMetadata"]
    return sse(events, done=False)


def test_stream_without_usage_row_kept(app, fake_provider, flavour, handler):
    if flavour.name == "openai":
        model = flavour.build(fake_provider, stream_usage=False)  # custom base_url: no usage
    elif flavour.name == "azure":
        model = flavour.build(fake_provider, stream_usage=False)
    else:  # Gemini always reports usage; script a stream whose chunks carry none
        model = flavour.build(fake_provider)
        fake_provider.enqueue(_gemini_sse_without_usage("gemini-2.5-flash"), sse=True)
    text = "".join(c.content for c in model.stream("hi", config=cfg(handler)))
    assert text in (DEFAULT_TEXT, "Hello there")
    row = only_row(app)
    assert row.meta["usage_missing"] is True
    assert tokens(row) == (0, 0, 0, 0, 0, 0)
    assert row.success is True
    assert row.model == flavour.served_model
    if flavour.name != "gemini":
        assert "stream_options" not in fake_provider.requests[0].json


def test_reply_without_usage_row_kept(app, fake_provider, handler):
    # Some OpenAI-compatible servers send no usage at all.
    body = openai_completion("gpt-4o-mini-2024-07-18")
    del body["usage"]
    fake_provider.enqueue(body)
    OPENAI.build(fake_provider).invoke("hi", config=cfg(handler))
    row = only_row(app)
    assert (row.meta["usage_missing"], row.success) == (True, True)
    assert tokens(row) == (0, 0, 0, 0, 0, 0)
    assert row.model == "gpt-4o-mini-2024-07-18"


@tool
def get_capital(country: str) -> str:
    """The capital city of a country."""
    return "Paris"


def _tool_call_stream(flavour: Flavour) -> str:
    """A scripted tool-calling stream; usage 61 prompt + 17 completion for every provider."""
    if flavour.name == "gemini":
        call = {"functionCall": {"name": "get_capital", "args": {"country": "France"}}}
        first = gemini_response(
            flavour.served_model,
            usage={"promptTokenCount": 61, "candidatesTokenCount": 17, "totalTokenCount": 78},
        )
        first["candidates"][0]["content"]["parts"] = [call]
        return sse([first], done=False)
    model = flavour.served_model

    def delta(d: dict, finish: str | None = None) -> dict:
        return openai_chunk(
            model,
            [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}],
            include_usage=True,
        )

    head = {
        "index": 0,
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_capital", "arguments": ""},
    }
    events = [delta({"role": "assistant", "content": None, "tool_calls": [head]})]
    for part in ('{"coun', 'try": "Fr', 'ance"}'):
        events.append(delta({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
    events.append(delta({}, "tool_calls"))
    events.append(
        openai_chunk(
            model, [], usage={"prompt_tokens": 61, "completion_tokens": 17, "total_tokens": 78}
        )
    )
    return sse(events)


def test_tool_calling_stream(app, fake_provider, flavour, handler):
    fake_provider.enqueue(_tool_call_stream(flavour), sse=True)
    model = flavour.build(fake_provider).bind_tools([get_capital])
    chunks = list(model.stream("What is the capital of France?", config=cfg(handler)))
    message = sum(chunks[1:], chunks[0])
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_capital", {"country": "France"})
    ]
    row = only_row(app)
    assert tokens(row) == (61, 17, 78, 0, 0, 0)  # the scripted usage above
    assert row.model == flavour.served_model
    assert row.success is True and "usage_missing" not in row.meta
    assert "get_capital" in json.dumps(fake_provider.requests[0].json["tools"])


# --- chains, errors, abandoned streams, cache, n ---------------------------------------


def test_nested_chain_one_row(app, fake_provider, flavour, handler):
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    chain = prompt | flavour.build(fake_provider) | StrOutputParser()
    assert chain.invoke({"q": "hi"}, config=cfg(handler)) == DEFAULT_TEXT
    assert_default_row(only_row(app), flavour)


def test_provider_error_recorded_and_raised(app, fake_provider, flavour, handler):
    fake_provider.enqueue_error(429)
    model = flavour.build(fake_provider)
    with pytest.raises(Exception) as info:
        model.invoke("hi", config=cfg(handler))
    assert "RateLimitError" in type(info.value).__name__
    row = only_row(app)
    assert row.success is False
    assert row.error.startswith(type(info.value).__name__ + ": ")
    assert "429" in row.error
    assert tokens(row) == (0, 0, 0, 0, 0, 0)
    assert row.model == flavour.requested_model  # nothing served: the requested name
    assert row.provider == flavour.provider
    assert "usage_missing" not in row.meta and "cancelled" not in row.meta
    assert len(fake_provider.requests) == 1  # no SDK retry


def test_provider_error_in_stream(app, fake_provider, flavour, handler):
    fake_provider.enqueue_error(500)
    with pytest.raises(Exception) as info:
        list(flavour.build(fake_provider).stream("hi", config=cfg(handler)))
    row = only_row(app)
    assert row.success is False
    assert row.error.startswith(type(info.value).__name__ + ": ")
    assert tokens(row) == (0, 0, 0, 0, 0, 0)


# Whatever usage arrived with the first chunk: nothing for OpenAI/Azure (usage comes last),
# Gemini's first chunk carries the running totals 9 prompt + 2 completion
# (fake_provider.gemini_stream_events: 6 * 1 // 3 completion tokens after one of 3 pieces).
ABANDONED_TOKENS = {"openai": (0, 0, 0), "azure": (0, 0, 0), "gemini": (9, 2, 11)}


def _assert_abandoned(row, flavour: Flavour) -> None:
    assert row.meta["cancelled"] is True
    assert "usage_missing" not in row.meta
    # Walking away is not a provider failure.
    assert (row.success, row.error) == (True, None)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == ABANDONED_TOKENS[
        flavour.name
    ]
    # langchain-openai reports the served model only on the finish chunk, which an abandoned
    # stream never reached: the requested name stands in. Every Gemini chunk names it.
    assert row.model == (
        flavour.served_model if flavour.name == "gemini" else flavour.requested_model
    )
    assert row.provider == flavour.provider


def test_abandoned_stream(app, fake_provider, flavour, handler):
    for _chunk in flavour.build(fake_provider).stream("hi", config=cfg(handler)):
        break
    _assert_abandoned(only_row(app), flavour)


def test_abandoned_astream(app, fake_provider, flavour, handler):
    async def run() -> None:
        async for _chunk in flavour.build(fake_provider).astream("hi", config=cfg(handler)):
            break

    asyncio.run(run())  # the loop closes the abandoned generator on shutdown
    _assert_abandoned(only_row(app), flavour)


def test_cancelled_astream_task(app, fake_provider, flavour, handler):
    if flavour.name == "gemini":
        body = sse(gemini_stream_events(flavour.served_model), done=False)
    else:
        body = sse(openai_stream_events(flavour.served_model, include_usage=True))
    fake_provider.enqueue(body, sse=True, delay=0.5)  # slow stream: cancelled mid-way

    async def run() -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _chunk in flavour.build(fake_provider).astream("hi", config=cfg(handler)):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    _assert_abandoned(only_row(app), flavour)


def test_llm_cache_hit(app, fake_provider, flavour, handler):
    model = flavour.build(fake_provider, cache=InMemoryCache())
    first = model.invoke("same question", config=cfg(handler))
    second = model.invoke("same question", config=cfg(handler))
    assert second.content == first.content == DEFAULT_TEXT
    assert len(fake_provider.requests) == 1  # the cache answered the second call
    real, hit = usage_rows(app)
    assert_default_row(real, flavour)
    assert tokens(hit) == (0, 0, 0, 0, 0, 0)
    assert hit.meta["llm_cache_hit"] is True
    cached = hit.meta["cached_usage"]
    assert (cached["input_tokens"], cached["output_tokens"], cached["total_tokens"]) == (
        flavour.prompt,
        flavour.completion,
        flavour.total,
    )
    assert hit.model == flavour.served_model
    assert "llm_cache_hit" not in real.meta


def test_llm_cache_hit_async_and_streams_bypass_cache(app, fake_provider, flavour, handler):
    model = flavour.build(fake_provider, cache=InMemoryCache())

    async def run() -> None:
        await model.ainvoke("same question", config=cfg(handler))
        await model.ainvoke("same question", config=cfg(handler))

    asyncio.run(run())
    # LangChain's stream() does not read the cache: a real call, a real row.
    list(model.stream("same question", config=cfg(handler)))
    assert len(fake_provider.requests) == 2
    real, hit, streamed = usage_rows(app)
    assert_default_row(real, flavour)
    assert tokens(hit) == (0, 0, 0, 0, 0, 0)
    assert hit.meta["llm_cache_hit"] is True
    assert hit.meta["cached_usage"]["total_tokens"] == flavour.total
    assert_default_row(streamed, flavour)


def test_n2_counts_usage_once(app, fake_provider, flavour, handler):
    model = flavour.build(fake_provider, n=2)
    result = model.generate([[HumanMessage("hi")]], callbacks=[handler])
    assert [len(g) for g in result.generations] == [2]
    assert_default_row(only_row(app), flavour)
    req = fake_provider.requests[0].json
    if flavour.name == "gemini":
        assert req["generationConfig"]["candidateCount"] == 2
    else:
        assert req["n"] == 2


def test_sdk_retry_is_one_run_one_row(app, fake_provider, handler):
    fake_provider.enqueue_error(429)  # the SDK retries once (retry-after-ms: 1), then 200
    model = OPENAI.build(fake_provider, max_retries=1)
    assert model.invoke("hi", config=cfg(handler)).content == DEFAULT_TEXT
    assert len(fake_provider.requests) == 2
    assert_default_row(only_row(app), OPENAI)


# --- one row per model run in composed runnables ------------------------------------------


def test_runnable_retry_one_row_per_attempt(app, fake_provider, flavour, handler):
    fake_provider.enqueue_error(429)  # first attempt fails, the retry gets the default reply
    model = flavour.build(fake_provider).with_retry(
        stop_after_attempt=2, wait_exponential_jitter=False
    )
    assert model.invoke("hi", config=cfg(handler)).content == DEFAULT_TEXT
    failed, ok = sorted(usage_rows(app), key=lambda r: r.success)
    assert (failed.success, tokens(failed)) == (False, (0, 0, 0, 0, 0, 0))
    assert "RateLimitError" in failed.error
    assert_default_row(ok, flavour)
    assert len(fake_provider.requests) == 2


def test_fallback_and_parallel_branches(app, fake_provider, handler):
    fake_provider.enqueue_error(503)  # the OpenAI primary fails, Gemini answers
    with_fallback = OPENAI.build(fake_provider).with_fallbacks([GEMINI.build(fake_provider)])
    assert with_fallback.invoke("hi", config=cfg(handler)).content == DEFAULT_TEXT
    both = RunnableParallel(a=OPENAI.build(fake_provider), b=GEMINI.build(fake_provider))
    out = both.invoke("hi", config=cfg(handler))
    assert out["a"].content == out["b"].content == DEFAULT_TEXT
    rows = usage_rows(app)
    assert len(rows) == 4
    assert sorted((r.provider, r.success, r.total_tokens) for r in rows) == [
        ("google_genai", True, 15),
        ("google_genai", True, 15),
        ("openai", False, 0),
        ("openai", True, 17),
    ]


def test_plain_llm_completion(app, fake_provider, handler):
    # A legacy completions reply: usage 7 prompt + 3 completion, served
    # "gpt-3.5-turbo-instruct:20230824-v2" — which langchain-openai's plain LLM does not pass
    # on (its llm_output names the requested model), so the requested name stands in.
    fake_provider.enqueue(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1_750_000_000,
            "model": "gpt-3.5-turbo-instruct:20230824-v2",
            "choices": [{"text": "Hello!", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
    )
    llm = OpenAI(
        model="gpt-3.5-turbo-instruct",
        base_url=fake_provider.base_url + "/v1",
        api_key="sk-test",
        max_retries=0,
    )
    assert llm.invoke("Say hello", config=cfg(handler)) == "Hello!"
    row = only_row(app)
    assert tokens(row) == (7, 3, 10, 0, 0, 0)
    assert (row.model, row.requested_model) == ("gpt-3.5-turbo-instruct",) * 2
    assert (row.provider, row.success) == ("openai", True)
    assert fake_provider.requests[0].path == "/v1/completions"
