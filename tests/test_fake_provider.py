"""The fake provider speaks each protocol well enough for the real SDKs (no database)."""

from __future__ import annotations

import openai
import pytest
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_google_genai.chat_models import GoogleRateLimitError
from langchain_openai import AzureChatOpenAI, ChatOpenAI


def test_openai_json_and_stream(fake_provider):
    model = ChatOpenAI(model="gpt-4o-mini", base_url=fake_provider.base_url + "/v1",
                       api_key="sk-test", max_retries=0, stream_usage=True)
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
    model = AzureChatOpenAI(azure_endpoint=fake_provider.base_url, azure_deployment="gpt-4o",
                            api_version="2024-12-01-preview", api_key="k", max_retries=0)
    msg = model.invoke("hi")
    assert msg.response_metadata["model_name"] == "gpt-4o-2024-11-20"
    req = fake_provider.requests[-1]
    assert req.path == "/openai/deployments/gpt-4o/chat/completions"
    assert req.query == {"api-version": "2024-12-01-preview"}
    assert (req.protocol, req.deployment) == ("azure", "gpt-4o")


def test_gemini_paths_and_cumulative_stream_usage(fake_provider):
    model = ChatGoogleGenerativeAI(model="gemini-2.5-flash", base_url=fake_provider.base_url,
                                   google_api_key="k", max_retries=1)
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
    oai = ChatOpenAI(model="gpt-4o-mini", base_url=fake_provider.base_url + "/v1",
                     api_key="sk-test", max_retries=0)
    fake_provider.enqueue_error(429)
    with pytest.raises(openai.RateLimitError):
        oai.invoke("hi")
    gem = ChatGoogleGenerativeAI(model="gemini-2.5-flash", base_url=fake_provider.base_url,
                                 google_api_key="k", max_retries=1)
    fake_provider.enqueue(status=429)
    with pytest.raises(GoogleRateLimitError, match="RESOURCE_EXHAUSTED"):
        gem.invoke("hi")
    assert len(fake_provider.requests) == 2
