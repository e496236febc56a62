"""``flask chat``: one tracked call from the command line."""

from __future__ import annotations

import pytest
from support.fake_provider import DEFAULT_TEXT, openai_completion
from support.llm_settings import clear_llm_env, provider_config

from llm_tracker import LLMUsage, db, flush

pytestmark = pytest.mark.contract


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch):
    clear_llm_env(monkeypatch)


def rows(app) -> list[LLMUsage]:
    flush()  # a failed command records its row but exits without flushing it
    with app.app_context():
        return db.session.scalars(db.select(LLMUsage)).all()


@pytest.mark.parametrize(
    ("provider", "model", "tokens", "cost"),
    [
        ("openai", "gpt-4o-mini", (12, 5, 17), "0.000004800"),
        ("gemini", "gemini-2.5-flash", (9, 6, 15), "0.000017700"),
    ],
)
def test_chat_prints_reply_and_usage_and_records_the_row(
    make_app, fake_provider, provider, model, tokens, cost
):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    result = app.test_cli_runner().invoke(
        args=["chat", "你好", "--user-id", "4", "--node", "cli-test"]
    )
    assert result.exit_code == 0, result.output
    [row] = rows(app)
    prompt, completion, total = tokens
    assert result.output == (
        f"{DEFAULT_TEXT}\n--- usage ---\nmodel: {model}\nprompt_tokens: {prompt}\n"
        f"completion_tokens: {completion}\ntotal_tokens: {total}\ncached_tokens: 0\n"
        f"reasoning_tokens: 0\nlatency_ms: {row.latency_ms}\ncost_usd: {cost}\n"
    )
    assert (row.user_id, row.node_name, row.success, row.total_tokens) == (
        4,
        "cli-test",
        True,
        total,
    )
    assert row.meta == {"node_name": "cli-test", "source_type": "cli"}
    request = fake_provider.requests[0].json
    if provider == "gemini":
        assert request["contents"] == [{"role": "user", "parts": [{"text": "你好"}]}]
    else:
        assert request["messages"] == [{"role": "user", "content": "你好"}]


def test_chat_json_flag_asks_for_json(make_app, fake_provider):
    app = make_app(**provider_config("openai", fake_provider.base_url))
    fake_provider.enqueue(openai_completion("gpt-4o-mini", '{"a": 1}'))
    result = app.test_cli_runner().invoke(args=["chat", "JSON please", "--json"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith('{"a": 1}\n--- usage ---\n')
    assert fake_provider.requests[0].json["response_format"] == {"type": "json_object"}
    [row] = rows(app)
    assert (row.user_id, row.node_name) == (None, "unknown")


def test_chat_empty_reply_fails_with_the_message(make_app, fake_provider):
    app = make_app(**provider_config("openai", fake_provider.base_url))
    fake_provider.enqueue(openai_completion("gpt-4o-mini", ""))
    result = app.test_cli_runner().invoke(args=["chat", "hi"])
    assert result.exit_code == 1
    assert result.output == "Error: LLM returned empty response\n"
    [row] = rows(app)
    assert (row.success, row.error) == (False, "ValueError: LLM returned empty response")


def test_chat_provider_error_fails_and_is_recorded(make_app, fake_provider):
    app = make_app(**provider_config("openai", fake_provider.base_url))
    fake_provider.enqueue_error(401, "Incorrect API key provided")
    result = app.test_cli_runner().invoke(args=["chat", "hi"])
    assert result.exit_code == 1
    [row] = rows(app)
    assert row.success is False
    assert result.output == f"Error: {row.error}\n"
    assert row.error.startswith("OpenAIAuthenticationError: Error code: 401")


def test_chat_without_configuration_names_the_key(make_app, fake_provider):
    app = make_app()
    result = app.test_cli_runner().invoke(args=["chat", "hi"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: OPENAI_CONFIG['api_key'] is required for LLM_PROVIDER "
        "'openai' (or set OPENAI_API_KEY)\n"
    )
    assert rows(app) == []
    assert fake_provider.requests == []
