"""The fake provider speaks each protocol well enough for the real SDKs (no database)."""

from __future__ import annotations

import anthropic
import openai
import pytest
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_google_genai.chat_models import GoogleRateLimitError
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from support.fake_provider import anthropic_message, anthropic_sse, anthropic_stream_events
from support.sdk_support import anthropic_model, completions_llm


def test_openai_json_and_stream(fake_provider):
    model = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=fake_provider.base_url + "/v1",
        api_key="sk-test",
        max_retries=0,
        stream_usage=True,
    )
    msg = model.invoke("hi")
    assert msg.content == "Hello from the fake provider."
    assert msg.usage_metadata["input_tokens"] == 12  # fake_provider.OPENAI_USAGE
    assert msg.usage_metadata["output_tokens"] == 5
    chunks = list(model.stream("hi"))
    total = sum(chunks[1:], chunks[0])
    assert total.content == "Hello from the fake provider."
    assert total.usage_metadata["total_tokens"] == 17
    req = fake_provider.requests[-1]
    assert (req.method, req.path, req.protocol) == ("POST", "/v1/chat/completions", "openai")
    assert req.json["stream_options"] == {"include_usage": True}
    assert req.headers["authorization"] == "Bearer sk-test"


def test_azure_path_and_served_model(fake_provider):
    model = AzureChatOpenAI(
        azure_endpoint=fake_provider.base_url,
        azure_deployment="gpt-4o",
        api_version="2024-12-01-preview",
        api_key="k",
        max_retries=0,
    )
    msg = model.invoke("hi")
    assert msg.response_metadata["model_name"] == "gpt-4o-2024-11-20"
    req = fake_provider.requests[-1]
    assert req.path == "/openai/deployments/gpt-4o/chat/completions"
    assert req.query == {"api-version": "2024-12-01-preview"}
    assert (req.protocol, req.deployment) == ("azure", "gpt-4o")


def test_gemini_paths_and_cumulative_stream_usage(fake_provider):
    model = ChatGoogleGenerativeAI(
        model="gemini-2.5-flash", base_url=fake_provider.base_url, google_api_key="k", max_retries=1
    )
    msg = model.invoke("hi")
    assert msg.usage_metadata["input_tokens"] == 9  # fake_provider.GEMINI_USAGE
    assert fake_provider.requests[-1].path == "/v1/models/gemini-2.5-flash:generateContent"
    chunks = list(model.stream("hi"))
    total = sum(chunks[1:], chunks[0])
    assert total.usage_metadata["output_tokens"] == 6
    assert total.usage_metadata["total_tokens"] == 15
    req = fake_provider.requests[-1]
    assert req.path == "/v1/models/gemini-2.5-flash:streamGenerateContent"
    assert req.query == {"alt": "sse"}
    assert req.headers["x-goog-api-key"] == "k"


def test_errors_in_provider_shape(fake_provider):
    oai = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=fake_provider.base_url + "/v1",
        api_key="sk-test",
        max_retries=0,
    )
    fake_provider.enqueue_error(429)
    with pytest.raises(openai.RateLimitError):
        oai.invoke("hi")
    gem = ChatGoogleGenerativeAI(
        model="gemini-2.5-flash", base_url=fake_provider.base_url, google_api_key="k", max_retries=1
    )
    fake_provider.enqueue(status=429)
    with pytest.raises(GoogleRateLimitError, match="RESOURCE_EXHAUSTED"):
        gem.invoke("hi")
    assert len(fake_provider.requests) == 2


def test_anthropic_json_stream_and_error(fake_provider):
    model = anthropic_model(fake_provider)
    msg = model.invoke("hi")
    assert msg.content == "Hello from the fake provider."
    # fake_provider.ANTHROPIC_USAGE: input_tokens 10 (no cache), output_tokens 6.
    assert msg.usage_metadata["input_tokens"] == 10
    assert msg.usage_metadata["output_tokens"] == 6
    assert msg.response_metadata["model_name"] == "claude-sonnet-4-5"
    req = fake_provider.requests[-1]
    assert (req.method, req.path, req.protocol, req.model) == (
        "POST",
        "/v1/messages",
        "anthropic",
        "claude-sonnet-4-5",
    )
    assert req.headers["anthropic-version"]
    chunks = list(model.stream("hi"))
    total = sum(chunks[1:], chunks[0])
    assert total.content == "Hello from the fake provider."
    assert total.usage_metadata["total_tokens"] == 16
    assert fake_provider.requests[-1].json["stream"] is True
    fake_provider.enqueue_error(429)
    with pytest.raises(anthropic.RateLimitError) as caught:
        model.invoke("hi")
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "This request would exceed the rate limit "
            "for your organization of 50 requests per minute.",
        },
    }
    assert len(fake_provider.requests) == 3


def test_anthropic_stream_events_in_the_real_order():
    usage = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 20,
        "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
        "output_tokens": 9,
    }
    events = anthropic_stream_events("claude-x", ["a", "b"], usage=usage)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"] == {**usage, "output_tokens": 1}
    # As the real API: the final counts, without the cache TTL breakdown.
    assert events[6]["usage"] == {
        "input_tokens": 3,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 20,
        "output_tokens": 9,
    }
    assert anthropic_sse(events[-1:]) == ('event: message_stop\ndata: {"type": "message_stop"}\n\n')
    assert anthropic_message("claude-x", usage=usage)["usage"] is not usage


def test_completions_batch_in_one_request_and_stream(fake_provider):
    llm = completions_llm(fake_provider)
    result = llm.generate(["a", "b", "c"])
    assert [g[0].text for g in result.generations] == ["Hello from the fake provider."] * 3
    # COMPLETION_USAGE_PER_PROMPT (4 + 5) for each of the 3 prompts, in one usage.
    assert result.llm_output["token_usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 15,
        "total_tokens": 27,
    }
    req = fake_provider.requests[-1]
    assert (req.path, req.protocol, req.model) == (
        "/v1/completions",
        "completions",
        "gpt-3.5-turbo-instruct",
    )
    assert req.json["prompt"] == ["a", "b", "c"]
    assert "".join(llm.stream("x")) == "Hello from the fake provider."
    assert fake_provider.requests[-1].json["stream"] is True
    fake_provider.enqueue_error(429)
    with pytest.raises(openai.RateLimitError):
        llm.invoke("x")
    assert len(fake_provider.requests) == 3
