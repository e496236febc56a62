"""LLMTracker.call_and_track over HTTP against the fake provider: content, usage, rows, errors."""

from __future__ import annotations

from decimal import Decimal

import google.genai.errors
import openai
import pytest
from langchain_core.exceptions import ModelRateLimitError
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from support.fake_provider import DEFAULT_TEXT, gemini_response, openai_completion
from support.llm_settings import AZURE_DEPLOYMENT, PROVIDERS, clear_llm_env, provider_config
from typing_extensions import TypedDict

from llm_tracker import LLMUsage, UsageHandler, db, flush
from llm_tracker.llm_service import get_llm_service
from llm_tracker.llm_tracker import LLMTracker

HELLO = [{"role": "user", "content": "你好"}]
STATE = {
    "user_id": 7,
    "source_type": "task",
    "source_task_id": "celery-uuid",
    "source_path": "/api/foo",
    "metadata": {"doc": "a.pdf"},
}
# provider -> (served model, provider column, prompt, completion, total) of default replies.
DEFAULTS = {
    "openai": ("gpt-4o-mini-2024-07-18", "openai", 12, 5, 17),
    "azure_openai": ("gpt-4o-2024-11-20", "azure", 12, 5, 17),
    "gemini": ("gemini-2.5-flash", "google_genai", 9, 6, 15),
}
REQUESTED = {"openai": "gpt-4o-mini", "azure_openai": "gpt-4o", "gemini": "gemini-2.5-flash"}
# 12 in x $0.15 + 5 out x $0.60; 12 x $2.50 + 5 x $10; 9 x $0.30 + 6 x $2.50 (per MTok).
COSTS = {"openai": "0.000004800", "azure_openai": "0.000080000", "gemini": "0.000017700"}

pytestmark = pytest.mark.contract


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch):
    clear_llm_env(monkeypatch)


@pytest.fixture
def served(fake_provider):
    # The real API answers a request for "gpt-4o-mini" with the dated snapshot.
    fake_provider.served_models["gpt-4o-mini"] = "gpt-4o-mini-2024-07-18"
    return fake_provider


def rows(app) -> list[LLMUsage]:
    flush()  # what the calls recorded (background mode) is committed before reading
    with app.app_context():
        return db.session.scalars(db.select(LLMUsage)).all()


def empty_reply(provider: str) -> dict:
    """A well-formed reply with empty content and the default usage."""
    if provider == "gemini":
        return gemini_response("gemini-2.5-flash", "")
    return openai_completion(DEFAULTS[provider][0], "")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_content_usage_and_row_agree(make_app, served, provider):
    app = make_app(**provider_config(provider, served.base_url))
    with app.app_context():
        content, usage = LLMTracker.call_and_track(
            messages=HELLO, node_name="interpret", state=STATE
        )
    model, provider_name, prompt, completion, total = DEFAULTS[provider]
    [row] = rows(app)
    assert content == DEFAULT_TEXT
    assert usage == {
        "model": model,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "latency_ms": row.latency_ms,
        "cost_usd": COSTS[provider],
    }
    assert row.cost_usd == Decimal(COSTS[provider])
    assert isinstance(row.latency_ms, int) and row.latency_ms >= 0
    assert (row.model, row.provider, row.requested_model) == (
        model,
        provider_name,
        REQUESTED[provider],
    )
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        prompt,
        completion,
        total,
    )
    assert (row.cached_tokens, row.reasoning_tokens) == (0, 0)
    assert (row.success, row.error, row.user_id, row.node_name) == (True, None, 7, "interpret")
    expected_meta = {
        "doc": "a.pdf",
        "node_name": "interpret",
        "source_type": "task",
        "source_task_id": "celery-uuid",
        "source_path": "/api/foo",
    }
    if provider == "azure_openai":
        expected_meta["deployment"] = AZURE_DEPLOYMENT
        assert row.deployment == AZURE_DEPLOYMENT
    assert row.meta == expected_meta
    assert len(served.requests) == 1


@pytest.mark.parametrize(
    ("provider", "payload", "content", "expected", "cost"),
    [
        (
            "openai",
            "openai_chat_completion_cached_tokens.json",
            "OK",
            {
                "model": "gpt-5.6-sol",
                "prompt_tokens": 4020,
                "completion_tokens": 4,
                "total_tokens": 4024,
                "cached_tokens": 4012,
                "reasoning_tokens": 0,
            },
            # since 2026-08-21: 8 x $4 + 4012 cached x $0.40 + 4 x $20 per MTok
            "0.001716800",
        ),
        (
            "openai",
            "openai_chat_completion_reasoning_tokens.json",
            "The capital of Mexico is Mexico City. It is not only the seat of the federal government "  # noqa: E501
            "but also a major cultural, political, and economic center in the country.",
            {
                "model": "o3-mini-2025-01-31",
                "prompt_tokens": 13,
                "completion_tokens": 238,
                "total_tokens": 251,
                "cached_tokens": 0,
                "reasoning_tokens": 192,
            },
            # 13 x $1.10 + 238 (192 of them reasoning) x $4.40 per MTok
            "0.001061500",
        ),
        (
            "gemini",
            "gemini_generate_content_cached_and_thoughts.json",
            "Paris.",
            {
                "model": "gemini-2.5-flash",
                "prompt_tokens": 3520,
                "completion_tokens": 44,
                "total_tokens": 3564,
                "cached_tokens": 3512,
                "reasoning_tokens": 42,
            },
            # 8 x $0.30 + 3512 cached x $0.03 + 44 (42 of them thoughts) x $2.50 per MTok
            "0.000217760",
        ),
    ],
)
def test_cached_and_reasoning_tokens_of_real_payloads(
    make_app, fake_provider, provider, payload, content, expected, cost
):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    fake_provider.enqueue_payload(payload)
    with app.app_context():
        got, usage = LLMTracker.call_and_track(HELLO)
    [row] = rows(app)
    assert got == content
    assert usage == {**expected, "latency_ms": row.latency_ms, "cost_usd": cost}
    assert {k: getattr(row, k) for k in expected} == expected
    assert row.cost_usd == Decimal(cost)
    assert (row.success, row.node_name) == (True, "unknown")


def test_langchain_messages_are_accepted(make_app, served):
    app = make_app(**provider_config("openai", served.base_url))
    with app.app_context():
        content, usage = LLMTracker.call_and_track([SystemMessage("Be brief."), HumanMessage("Hi")])
    assert content == DEFAULT_TEXT
    assert usage["total_tokens"] == 17
    assert served.requests[0].json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_config_defaults_then_explicit_overrides_including_zero(make_app, served, provider):
    app = make_app(**provider_config(provider, served.base_url, max_tokens=256, temperature=0.3))
    with app.app_context():
        LLMTracker.call_and_track(HELLO)
        LLMTracker.call_and_track(HELLO, max_tokens=0, temperature=0.0)
        LLMTracker.call_and_track(HELLO, max_tokens=40, temperature=1.1)
    sent = []
    for request in served.requests:
        if provider == "gemini":
            gen = request.json["generationConfig"]
            sent.append((gen["maxOutputTokens"], gen["temperature"]))
        else:
            sent.append((request.json["max_completion_tokens"], request.json["temperature"]))
    assert sent == [(256, 0.3), (0, 0.0), (40, 1.1)]
    assert len(rows(app)) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_json_mode(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    if provider == "gemini":
        fake_provider.enqueue(gemini_response("gemini-2.5-flash", '{"answer": "hi"}'))
    else:
        fake_provider.enqueue(openai_completion(DEFAULTS[provider][0], '{"answer": "hi"}'))
    with app.app_context():
        content, usage = LLMTracker.call_and_track(HELLO, json_mode=True)
    assert content == '{"answer": "hi"}'
    assert usage["prompt_tokens"] == DEFAULTS[provider][2]
    body = fake_provider.requests[0].json
    if provider == "gemini":
        assert body["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("provider", ["openai", "azure_openai"])
def test_response_format_is_passed_through(make_app, served, provider):
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    app = make_app(**provider_config(provider, served.base_url))
    with app.app_context():
        LLMTracker.call_and_track(HELLO, response_format=fmt)
    assert served.requests[0].json["response_format"] == fmt


@pytest.mark.parametrize("messages", [[], None, ()])
def test_empty_messages_raise_before_any_call(make_app, fake_provider, messages):
    app = make_app(**provider_config("openai", fake_provider.base_url))
    with app.app_context(), pytest.raises(ValueError) as info:
        LLMTracker.call_and_track(messages)
    assert str(info.value) == "Messages cannot be empty"
    assert fake_provider.requests == []
    assert rows(app) == []


def test_empty_messages_raise_even_without_provider_config(make_app):
    app = make_app(LLM_PROVIDER="nonsense")
    with app.app_context(), pytest.raises(ValueError) as info:
        LLMTracker.call_and_track([])
    assert str(info.value) == "Messages cannot be empty"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_empty_response_raises_and_is_recorded_as_failure(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    fake_provider.enqueue(empty_reply(provider))
    with app.app_context(), pytest.raises(ValueError) as info:
        LLMTracker.call_and_track(HELLO, node_name="interpret", state={"user_id": 3})
    assert str(info.value) == "LLM returned empty response"
    model, _, prompt, completion, total = DEFAULTS[provider]
    [row] = rows(app)
    assert (row.success, row.error) == (False, "ValueError: LLM returned empty response")
    # The provider billed the call: its tokens are kept.
    assert (row.model, row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        model,
        prompt,
        completion,
        total,
    )
    assert (row.user_id, row.node_name) == (3, "interpret")


def test_whitespace_only_response_counts_as_empty(make_app, fake_provider):
    app = make_app(**provider_config("openai", fake_provider.base_url))
    fake_provider.enqueue(openai_completion("gpt-4o-mini", " \n "))
    with app.app_context(), pytest.raises(ValueError, match="^LLM returned empty response$"):
        LLMTracker.call_and_track(HELLO)
    [row] = rows(app)
    assert (row.success, row.error, row.total_tokens) == (
        False,
        "ValueError: LLM returned empty response",
        17,
    )


@pytest.mark.parametrize(
    ("provider", "status", "error_type"),
    [
        ("openai", 429, openai.RateLimitError),
        ("openai", 400, openai.BadRequestError),
        ("azure_openai", 429, openai.RateLimitError),
        ("azure_openai", 429, ModelRateLimitError),  # LangChain's provider-neutral type
        ("gemini", 429, ModelRateLimitError),
        ("gemini", 500, google.genai.errors.ServerError),
    ],
)
def test_provider_exception_propagates_unchanged_and_is_recorded(
    make_app, fake_provider, provider, status, error_type
):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    fake_provider.enqueue_error(status, "quota says no")
    fake_provider.enqueue_error(status, "quota says no")
    with app.app_context():
        # What the SDK (through LangChain) raises without call_and_track...
        with pytest.raises(error_type) as direct:
            get_llm_service().chat(HELLO)
        # ...is what call_and_track lets through.
        with pytest.raises(error_type) as info:
            LLMTracker.call_and_track(HELLO, node_name="interpret", state={"user_id": 3})
    assert type(info.value) is type(direct.value)
    assert str(info.value) == str(direct.value)
    assert "quota says no" in str(info.value)
    assert len(fake_provider.requests) == 2  # max_retries=0: no retry
    [row] = rows(app)
    assert row.success is False
    assert row.error == f"{type(info.value).__name__}: {info.value}"
    assert (row.model, row.prompt_tokens, row.completion_tokens, row.total_tokens) == (
        REQUESTED[provider],
        0,
        0,
        0,
    )
    assert (row.user_id, row.node_name) == (3, "interpret")


def test_default_node_name_is_unknown(make_app, served):
    app = make_app(**provider_config("openai", served.base_url))
    with app.app_context():
        LLMTracker.call_and_track(HELLO)
    [row] = rows(app)
    assert (row.node_name, row.meta) == ("unknown", {"node_name": "unknown"})
    assert row.user_id is None


class GraphState(TypedDict):
    question: str
    answer: str


def _graph(node_name: str = "unknown"):
    def answer(state: GraphState) -> dict:
        content, _ = LLMTracker.call_and_track(
            [{"role": "user", "content": state["question"]}], node_name=node_name
        )
        return {"answer": content}

    builder = StateGraph(GraphState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def test_inside_langgraph_node_the_graph_node_names_the_row(make_app, served):
    app = make_app(**provider_config("openai", served.base_url))
    with app.app_context():
        result = _graph().invoke({"question": "hi"})
        _graph("explicit").invoke({"question": "hi"})
    assert result["answer"] == DEFAULT_TEXT
    assert sorted(r.node_name for r in rows(app)) == ["answer", "explicit"]


def test_inside_a_tracked_graph_the_call_is_recorded_once(make_app, served):
    app = make_app(**provider_config("openai", served.base_url))
    with app.app_context():
        outer = UsageHandler({"user_id": 9})
        _graph().invoke({"question": "hi"}, config={"callbacks": [outer]})
    [row] = rows(app)
    assert (row.total_tokens, row.node_name) == (17, "answer")
