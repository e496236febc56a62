"""Recorded real provider responses (``tests/payloads/``, provenance in its
SOURCES.md) replayed through the real SDKs: each row holds exactly the provider's numbers.

Expected numbers are read off the payload files by hand (quoted next to each test);
``tokens(row)`` is (prompt, completion, total, cached, reasoning, cache_write).
"""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.tools import tool
from support.sdk_support import azure_model, cfg, gemini_model, only_row, openai_model, tokens

from llm_tracker import UsageHandler


@pytest.fixture
def handler(app) -> UsageHandler:
    return UsageHandler({"user_id": 1}, node_name="replay", app=app)


# --- OpenAI chat completions ------------------------------------------------------------


def test_openai_cached_tokens(app, fake_provider, handler):
    # usage: prompt_tokens 4020 (prompt_tokens_details.cached_tokens 4012, cache_write 0),
    # completion_tokens 4 (reasoning 0), total 4024; model "gpt-5.6-sol".
    fake_provider.enqueue_payload("openai_chat_completion_cached_tokens.json")
    msg = openai_model(fake_provider, model="gpt-5.6").invoke("hi", config=cfg(handler))
    assert msg.content == "OK"
    row = only_row(app)
    assert tokens(row) == (4020, 4, 4024, 4012, 0, 0)
    assert (row.model, row.requested_model, row.provider) == ("gpt-5.6-sol", "gpt-5.6", "openai")
    assert fake_provider.requests[0].path == "/v1/chat/completions"


def test_openai_cache_write_tokens(app, fake_provider, handler):
    # usage: prompt_tokens 4020 (cached_tokens 0, cache_write_tokens 4012),
    # completion_tokens 4, total 4024; model "gpt-5.6-sol".
    fake_provider.enqueue_payload("openai_chat_completion_cache_write_tokens.json")
    openai_model(fake_provider, model="gpt-5.6").invoke("hi", config=cfg(handler))
    row = only_row(app)
    assert tokens(row) == (4020, 4, 4024, 0, 0, 4012)
    assert row.model == "gpt-5.6-sol"


def test_openai_reasoning_tokens(app, fake_provider, handler):
    # usage: prompt_tokens 13, completion_tokens 238 (completion_tokens_details.
    # reasoning_tokens 192, included), total 251; model "o3-mini-2025-01-31".
    fake_provider.enqueue_payload("openai_chat_completion_reasoning_tokens.json")
    msg = openai_model(fake_provider, model="o3-mini").invoke(
        "Capital of Mexico?", config=cfg(handler)
    )
    assert msg.content.startswith("The capital of Mexico is Mexico City.")
    row = only_row(app)
    assert tokens(row) == (13, 238, 251, 0, 192, 0)
    assert (row.model, row.requested_model) == ("o3-mini-2025-01-31", "o3-mini")


@tool
def get_capital(country: str) -> str:
    """The capital city of a country."""
    return "London"


# The recorded stream: a get_capital tool call in 6 deltas, then a last chunk with
# choices [] and usage prompt 53, completion 15, total 68; model "gpt-4o-mini-2024-07-18".
STREAM_ROW = (53, 15, 68, 0, 0, 0)


def test_openai_stream_include_usage_tool_call(app, fake_provider, handler):
    fake_provider.enqueue_payload("openai_chat_completion_stream_include_usage.sse")
    model = openai_model(fake_provider, model="gpt-4o-mini").bind_tools([get_capital])
    chunks = list(model.stream("Capital of the UK?", config=cfg(handler)))
    message = sum(chunks[1:], chunks[0])
    assert message.tool_calls[0]["name"] == "get_capital"
    assert message.tool_calls[0]["args"] == {"country": "UK"}
    row = only_row(app)
    assert tokens(row) == STREAM_ROW
    assert (row.model, row.requested_model) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")
    assert fake_provider.requests[0].json["stream_options"] == {"include_usage": True}


def test_openai_astream_include_usage_tool_call(app, fake_provider, handler):
    fake_provider.enqueue_payload("openai_chat_completion_stream_include_usage.sse")
    model = openai_model(fake_provider, model="gpt-4o-mini").bind_tools([get_capital])

    async def run() -> int:
        return len([c async for c in model.astream("Capital of the UK?", config=cfg(handler))])

    assert asyncio.run(run()) > 1
    row = only_row(app)
    assert tokens(row) == STREAM_ROW
    assert row.model == "gpt-4o-mini-2024-07-18"


def test_openai_responses_api_cached_and_reasoning(app, fake_provider, handler):
    # Responses API usage: input_tokens 1493 (input_tokens_details.cached_tokens 1280),
    # output_tokens 125 (output_tokens_details.reasoning_tokens 64), total 1618;
    # model "gpt-5-2025-08-07".
    fake_provider.enqueue_payload("openai_responses_cached_and_reasoning_tokens.json")
    model = openai_model(fake_provider, model="gpt-5", use_responses_api=True)
    msg = model.invoke("65465-6544*65464-6+1.02255", config=cfg(handler))
    assert "-428,330,955.97745" in msg.text
    row = only_row(app)
    assert tokens(row) == (1493, 125, 1618, 1280, 64, 0)
    assert (row.model, row.requested_model) == ("gpt-5-2025-08-07", "gpt-5")
    assert fake_provider.requests[0].path == "/v1/responses"


# --- Azure OpenAI -------------------------------------------------------------------------


# usage: prompt_tokens 14, completion_tokens 9, total 23 (cached 0, reasoning 0);
# model "gpt-4o-2024-11-20", deployment "gpt-4o" (from the recorded request URI).
AZURE_ROW = (14, 9, 23, 0, 0, 0)


def test_azure_chat_completion(app, fake_provider, handler):
    fake_provider.enqueue_payload("azure_openai_chat_completion.json")
    msg = azure_model(fake_provider, deployment="gpt-4o").invoke(
        "Capital of France?", config=cfg(handler)
    )
    assert msg.content == "The capital of France is **Paris**."
    row = only_row(app)
    assert tokens(row) == AZURE_ROW
    assert (row.model, row.deployment, row.provider) == ("gpt-4o-2024-11-20", "gpt-4o", "azure")
    assert row.meta["deployment"] == "gpt-4o"
    req = fake_provider.requests[0]
    assert req.path == "/openai/deployments/gpt-4o/chat/completions"
    assert req.query == {"api-version": "2024-12-01-preview"}


def test_azure_with_model_version_not_doubled(app, fake_provider, handler):
    # AzureChatOpenAI appends model_version to llm_output's model name ("...-2024-11-20-
    # 2024-11-20"); the row keeps the served name once.
    fake_provider.enqueue_payload("azure_openai_chat_completion.json")
    model = azure_model(
        fake_provider, deployment="prod-4o", model="gpt-4o", model_version="2024-11-20"
    )
    model.invoke("Capital of France?", config=cfg(handler))
    row = only_row(app)
    assert tokens(row) == AZURE_ROW
    assert (row.model, row.deployment) == ("gpt-4o-2024-11-20", "prod-4o")


# --- Gemini -------------------------------------------------------------------------------


def test_gemini_cached_and_thoughts(app, fake_provider, handler):
    # usageMetadata: promptTokenCount 3520 (cachedContentTokenCount 3512 of them),
    # candidatesTokenCount 2 + thoughtsTokenCount 42 = 44 completion, totalTokenCount 3564;
    # modelVersion "gemini-2.5-flash".
    fake_provider.enqueue_payload("gemini_generate_content_cached_and_thoughts.json")
    msg = gemini_model(fake_provider, model="gemini-2.5-flash").invoke(
        "Capital of France?", config=cfg(handler)
    )
    assert msg.text == "Paris."
    row = only_row(app)
    assert tokens(row) == (3520, 44, 3564, 3512, 42, 0)
    assert (row.model, row.provider) == ("gemini-2.5-flash", "google_genai")
    assert fake_provider.requests[0].path == "/v1/models/gemini-2.5-flash:generateContent"


def test_gemini_thoughts_model_prefix_stripped(app, fake_provider, handler):
    # usageMetadata: promptTokenCount 15, candidatesTokenCount 8 + thoughtsTokenCount 275
    # = 283 completion, totalTokenCount 298; modelVersion "models/gemini-2.5-pro".
    fake_provider.enqueue_payload("gemini_generate_content_thoughts.json")
    gemini_model(fake_provider, model="gemini-2.5-pro-preview-03-25").invoke(
        "Capital of France?", config=cfg(handler)
    )
    row = only_row(app)
    assert tokens(row) == (15, 283, 298, 0, 275, 0)
    assert (row.model, row.requested_model) == ("gemini-2.5-pro", "gemini-2.5-pro-preview-03-25")


# The recorded stream: 3 chunks with cumulative usageMetadata; the last says
# promptTokenCount 18, candidatesTokenCount 80 + thoughtsTokenCount 35 = 115 completion,
# totalTokenCount 133 — counted once, not summed over chunks (that would give 18*3 ...).
GEMINI_STREAM_ROW = (18, 115, 133, 0, 35, 0)


def test_gemini_stream_cumulative_usage(app, fake_provider, handler):
    fake_provider.enqueue_payload("gemini_stream_generate_content_cumulative_usage.sse")
    model = gemini_model(fake_provider, model="gemini-2.5-flash")
    text = "".join(c.text for c in model.stream("Count to 30", config=cfg(handler)))
    assert text == "\n".join(str(i) for i in range(1, 31))
    row = only_row(app)
    assert tokens(row) == GEMINI_STREAM_ROW
    assert row.model == "gemini-2.5-flash"
    req = fake_provider.requests[0]
    assert (req.path, req.query) == (
        "/v1/models/gemini-2.5-flash:streamGenerateContent",
        {"alt": "sse"},
    )


def test_gemini_astream_cumulative_usage(app, fake_provider, handler):
    fake_provider.enqueue_payload("gemini_stream_generate_content_cumulative_usage.sse")
    model = gemini_model(fake_provider, model="gemini-2.5-flash")

    async def run() -> None:
        async for _chunk in model.astream("Count to 30", config=cfg(handler)):
            pass

    asyncio.run(run())
    assert tokens(only_row(app)) == GEMINI_STREAM_ROW
