"""get_llm_service: configuration (app config and environment), request bodies, no rows."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import AzureChatOpenAI, ChatOpenAI
from support.fake_provider import AZURE_SERVED_MODEL, DEFAULT_TEXT
from support.llm_settings import (
    AZURE_API_VERSION,
    AZURE_DEPLOYMENT,
    PROVIDERS,
    clear_llm_env,
    provider_config,
)

from llm_tracker import LLMUsage, UsageHandler, db, flush
from llm_tracker.llm_service import (
    AzureOpenAIService,
    GeminiService,
    OpenAIService,
    get_llm_service,
)

HELLO = [{"role": "user", "content": "Say hello"}]
MODEL_CLASSES = {
    "openai": ChatOpenAI,
    "azure_openai": AzureChatOpenAI,
    "gemini": ChatGoogleGenerativeAI,
}
SERVICE_CLASSES = {
    "openai": OpenAIService,
    "azure_openai": AzureOpenAIService,
    "gemini": GeminiService,
}
# (input, output, total) tokens of the fake server's default replies.
DEFAULT_USAGE = {"openai": (12, 5, 17), "azure_openai": (12, 5, 17), "gemini": (9, 6, 15)}

pytestmark = pytest.mark.contract


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch):
    clear_llm_env(monkeypatch)


def row_count(app) -> int:
    flush()  # a row recorded in background mode is committed before it is counted
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(LLMUsage))


def sent(request: Any, provider: str) -> dict[str, Any]:
    """max_tokens / temperature as the request body carried them, per wire protocol."""
    body = request.json
    if provider == "gemini":
        gen = body["generationConfig"]
        return {"max_tokens": gen.get("maxOutputTokens"), "temperature": gen.get("temperature")}
    assert "max_tokens" not in body  # the SDKs send the current name only
    return {"max_tokens": body.get("max_completion_tokens"), "temperature": body.get("temperature")}


# --- calls over HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_returns_reply_text_and_writes_no_row(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        svc = get_llm_service()
        assert type(svc) is SERVICE_CLASSES[provider]
        assert type(svc.model) is MODEL_CLASSES[provider]
        assert svc.chat(HELLO) == DEFAULT_TEXT
    assert len(fake_provider.requests) == 1
    assert row_count(app) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_raw_response_is_the_ai_message(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        message = get_llm_service().chat(HELLO, raw_response=True)
    assert isinstance(message, AIMessage)
    assert message.text == DEFAULT_TEXT
    prompt, completion, total = DEFAULT_USAGE[provider]
    assert message.usage_metadata["input_tokens"] == prompt
    assert message.usage_metadata["output_tokens"] == completion
    assert message.usage_metadata["total_tokens"] == total
    assert row_count(app) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat_with_callbacks_records_through_them_only(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        handler = UsageHandler({"user_id": 5}, node_name="svc")
        assert get_llm_service().chat(HELLO, callbacks=[handler]) == DEFAULT_TEXT
        flush()
        rows = db.session.scalars(db.select(LLMUsage)).all()
    assert len(rows) == 1
    prompt, completion, total = DEFAULT_USAGE[provider]
    assert (rows[0].prompt_tokens, rows[0].completion_tokens, rows[0].total_tokens) == (
        prompt,
        completion,
        total,
    )
    assert (rows[0].user_id, rows[0].node_name) == (5, "svc")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_messages_dicts_and_langchain_messages_reach_the_provider(
    make_app, fake_provider, provider
):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    dicts = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    objects = [
        SystemMessage("Be brief."),
        HumanMessage("Hi"),
        AIMessage("Hello!"),
        HumanMessage("Bye"),
    ]
    with app.app_context():
        svc = get_llm_service()
        svc.chat(dicts)
        svc.chat(objects)
    first, second = (r.json for r in fake_provider.requests)
    if provider == "gemini":
        assert first["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert first["contents"] == [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "Bye"}]},
        ]
        assert second["contents"] == first["contents"]
    else:
        assert [(m["role"], m["content"]) for m in first["messages"]] == [
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello!"),
            ("user", "Bye"),
        ]
        assert second["messages"] == first["messages"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_configured_max_tokens_and_temperature_are_sent(make_app, fake_provider, provider):
    app = make_app(
        **provider_config(provider, fake_provider.base_url, max_tokens=256, temperature=0.3)
    )
    with app.app_context():
        get_llm_service().chat(HELLO)
    assert sent(fake_provider.requests[0], provider) == {"max_tokens": 256, "temperature": 0.3}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("max_tokens", "temperature"), [(0, 0.0), (64, 1.25)])
def test_explicit_max_tokens_and_temperature_win(
    make_app, fake_provider, provider, max_tokens, temperature
):
    app = make_app(
        **provider_config(provider, fake_provider.base_url, max_tokens=256, temperature=0.3)
    )
    with app.app_context():
        get_llm_service().chat(HELLO, max_tokens=max_tokens, temperature=temperature)
    assert sent(fake_provider.requests[0], provider) == {
        "max_tokens": max_tokens,
        "temperature": temperature,
    }


@pytest.mark.parametrize("provider", ["openai", "azure_openai"])
def test_nothing_configured_sends_no_max_tokens_or_temperature(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        get_llm_service().chat(HELLO)
    body = fake_provider.requests[0].json
    assert "max_completion_tokens" not in body
    assert "temperature" not in body


@pytest.mark.parametrize("provider", ["openai", "azure_openai"])
def test_json_mode_openai_asks_for_json_object(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        get_llm_service().chat(HELLO)
        get_llm_service().chat(HELLO, json_mode=True)
    plain, json_mode = (r.json for r in fake_provider.requests)
    assert "response_format" not in plain
    assert json_mode["response_format"] == {"type": "json_object"}


def test_json_mode_gemini_asks_for_json_mime_type(make_app, fake_provider):
    app = make_app(**provider_config("gemini", fake_provider.base_url))
    with app.app_context():
        get_llm_service().chat(HELLO)
        get_llm_service().chat(HELLO, json_mode=True)
    plain, json_mode = (r.json["generationConfig"] for r in fake_provider.requests)
    assert "responseMimeType" not in plain
    assert json_mode["responseMimeType"] == "application/json"


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA},
}


@pytest.mark.parametrize("provider", ["openai", "azure_openai"])
def test_response_format_is_passed_through_openai(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        get_llm_service().chat(HELLO, response_format=RESPONSE_FORMAT)
    assert fake_provider.requests[0].json["response_format"] == RESPONSE_FORMAT


def test_response_format_is_passed_through_gemini(make_app, fake_provider):
    app = make_app(**provider_config("gemini", fake_provider.base_url))
    with app.app_context():
        get_llm_service().chat(HELLO, response_format=RESPONSE_FORMAT)
    gen = fake_provider.requests[0].json["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == SCHEMA


def test_azure_deployment_path_api_version_and_key(make_app, fake_provider):
    app = make_app(**provider_config("azure_openai", fake_provider.base_url))
    with app.app_context():
        message = get_llm_service().chat(HELLO, raw_response=True)
    request = fake_provider.requests[0]
    assert request.path == f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
    assert request.query == {"api-version": AZURE_API_VERSION}
    assert request.headers["api-key"] == "azure-key"
    assert request.json["model"] == "gpt-4o"
    assert message.response_metadata["model_name"] == AZURE_SERVED_MODEL


def test_azure_defaults_deployment_to_model_and_api_version(make_app, fake_provider):
    config = provider_config("azure_openai", fake_provider.base_url)
    for key in ("deployment", "api_version"):
        del config["AZURE_OPENAI_CONFIG"][key]
    app = make_app(**config)
    with app.app_context():
        svc = get_llm_service()
        svc.chat(HELLO)
    assert svc.settings["deployment"] == "gpt-4o"
    request = fake_provider.requests[0]
    assert request.path == "/openai/deployments/gpt-4o/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}


def test_openai_and_gemini_send_the_api_key(make_app, fake_provider):
    for provider in ("openai", "gemini"):
        app = make_app(**provider_config(provider, fake_provider.base_url))
        with app.app_context():
            get_llm_service().chat(HELLO)
    openai_request, gemini_request = fake_provider.requests
    assert openai_request.path == "/v1/chat/completions"
    assert openai_request.headers["authorization"] == "Bearer sk-test"
    assert gemini_request.path == "/v1/models/gemini-2.5-flash:generateContent"
    assert gemini_request.headers["x-goog-api-key"] == "gemini-key"


@pytest.mark.parametrize("provider", ["openai", "azure_openai"])
def test_openai_clients_ask_for_usage_on_streams(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    with app.app_context():
        handler = UsageHandler(node_name="stream")
        chunks = list(get_llm_service().model.stream(HELLO, config={"callbacks": [handler]}))
        flush()
        row = db.session.scalars(db.select(LLMUsage)).one()
    assert "".join(c.text for c in chunks) == DEFAULT_TEXT
    assert fake_provider.requests[0].json["stream_options"] == {"include_usage": True}
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (12, 5, 17)
    assert "usage_missing" not in row.meta


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_error_from_chat_writes_no_row(make_app, fake_provider, provider):
    app = make_app(**provider_config(provider, fake_provider.base_url))
    fake_provider.enqueue_error(400, "bad request")
    with app.app_context(), pytest.raises(Exception, match="bad request"):
        get_llm_service().chat(HELLO)
    assert len(fake_provider.requests) == 1
    assert row_count(app) == 0


# --- building: defaults, environment, errors ----------------------------------------------


def test_building_makes_no_request_and_uses_default_models(make_app, fake_provider):
    app = make_app(
        OPENAI_CONFIG={"api_key": "k", "base_url": fake_provider.base_url},
        AZURE_OPENAI_CONFIG={"api_key": "k", "api_base": fake_provider.base_url},
        GEMINI_CONFIG={"api_key": "k", "base_url": fake_provider.base_url},
    )
    models = {}
    with app.app_context():
        for provider in PROVIDERS:
            app.config["LLM_PROVIDER"] = provider
            svc = get_llm_service()
            assert svc.provider == provider
            models[provider] = svc.settings["model"]
        app.config.pop("LLM_PROVIDER")
        default = get_llm_service()
    assert models == {
        "openai": "gpt-4o-mini",
        "azure_openai": "gpt-4o-mini",
        "gemini": "gemini-2.5-flash",
    }
    assert default.provider == "openai"
    assert fake_provider.requests == []


def test_settings_never_show_the_api_key(make_app, fake_provider):
    app = make_app(**provider_config("openai", fake_provider.base_url))
    with app.app_context():
        svc = get_llm_service()
    assert svc.settings == {
        "model": "gpt-4o-mini",
        "base_url": fake_provider.base_url + "/v1",
        "max_retries": 0,
    }
    assert "sk-test" not in repr(svc)


def test_openai_from_environment(make_app, fake_provider, monkeypatch):
    monkeypatch.setenv("LLM_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_provider.base_url + "/v1")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4.1-nano")
    monkeypatch.setenv("OPENAI_MAX_TOKENS", "77")
    monkeypatch.setenv("OPENAI_TEMPERATURE", "0.25")
    monkeypatch.setenv("OPENAI_MAX_RETRIES", "0")
    monkeypatch.setenv("OPENAI_TIMEOUT", "5")
    app = make_app()
    with app.app_context():
        svc = get_llm_service()
        assert svc.chat(HELLO) == DEFAULT_TEXT
    assert svc.settings == {
        "model": "gpt-4.1-nano",
        "base_url": fake_provider.base_url + "/v1",
        "max_tokens": 77,
        "temperature": 0.25,
        "max_retries": 0,
        "timeout": 5.0,
    }
    request = fake_provider.requests[0]
    assert request.headers["authorization"] == "Bearer sk-env"
    assert request.json["model"] == "gpt-4.1-nano"
    assert sent(request, "openai") == {"max_tokens": 77, "temperature": 0.25}


def test_azure_from_environment(make_app, fake_provider, monkeypatch):
    monkeypatch.setenv("LLM_PROVIDER", "azure_openai")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-env")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake_provider.base_url)
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-01-01-preview")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "env-deploy")
    monkeypatch.setenv("AZURE_OPENAI_MODEL", "gpt-4o")
    monkeypatch.setenv("AZURE_OPENAI_MAX_TOKENS", "33")
    monkeypatch.setenv("AZURE_OPENAI_TEMPERATURE", "0")
    monkeypatch.setenv("AZURE_OPENAI_MAX_RETRIES", "0")
    app = make_app()
    with app.app_context():
        assert get_llm_service().chat(HELLO) == DEFAULT_TEXT
    request = fake_provider.requests[0]
    assert request.path == "/openai/deployments/env-deploy/chat/completions"
    assert request.query == {"api-version": "2025-01-01-preview"}
    assert request.headers["api-key"] == "azure-env"
    assert sent(request, "azure_openai") == {"max_tokens": 33, "temperature": 0.0}


@pytest.mark.parametrize("key_var", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_gemini_from_environment(make_app, fake_provider, monkeypatch, key_var):
    monkeypatch.setenv("LLM_PROVIDER", "gemini")
    monkeypatch.setenv(key_var, "gemini-env")
    monkeypatch.setenv("GEMINI_BASE_URL", fake_provider.base_url)
    monkeypatch.setenv("GEMINI_MODEL", "gemini-2.5-pro")
    monkeypatch.setenv("GEMINI_MAX_TOKENS", "12")
    monkeypatch.setenv("GEMINI_TEMPERATURE", "1.5")
    monkeypatch.setenv("GEMINI_MAX_RETRIES", "0")
    app = make_app()
    with app.app_context():
        assert get_llm_service().chat(HELLO) == DEFAULT_TEXT
    request = fake_provider.requests[0]
    assert request.path == "/v1/models/gemini-2.5-pro:generateContent"
    assert request.headers["x-goog-api-key"] == "gemini-env"
    assert sent(request, "gemini") == {"max_tokens": 12, "temperature": 1.5}


def test_app_config_wins_over_environment(make_app, fake_provider, monkeypatch):
    monkeypatch.setenv("LLM_PROVIDER", "gemini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_MAX_TOKENS", "77")
    monkeypatch.setenv("OPENAI_TEMPERATURE", "0.25")
    app = make_app(**provider_config("openai", fake_provider.base_url, max_tokens=5))
    with app.app_context():
        get_llm_service().chat(HELLO)
    request = fake_provider.requests[0]
    assert request.headers["authorization"] == "Bearer sk-test"
    # Keys absent from the config section still come from the environment.
    assert sent(request, "openai") == {"max_tokens": 5, "temperature": 0.25}


def test_unknown_provider_is_named(make_app):
    app = make_app(LLM_PROVIDER="anthropic")
    with app.app_context(), pytest.raises(ValueError) as info:
        get_llm_service()
    assert str(info.value) == (
        "Unknown LLM_PROVIDER 'anthropic': expected one of openai, azure_openai, gemini"
    )


def test_unknown_provider_from_environment_is_named(make_app, monkeypatch):
    monkeypatch.setenv("LLM_PROVIDER", "openia")
    app = make_app()
    with app.app_context(), pytest.raises(ValueError) as info:
        get_llm_service()
    assert str(info.value) == (
        "Unknown LLM_PROVIDER 'openia': expected one of openai, azure_openai, gemini"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"LLM_PROVIDER": "openai"},
            "OPENAI_CONFIG['api_key'] is required for LLM_PROVIDER 'openai' (or set OPENAI_API_KEY)",  # noqa: E501
        ),
        (
            {"OPENAI_CONFIG": {"api_key": "", "model": "gpt-4o"}},
            "OPENAI_CONFIG['api_key'] is required for LLM_PROVIDER 'openai' (or set OPENAI_API_KEY)",  # noqa: E501
        ),
        (
            {"LLM_PROVIDER": "azure_openai", "AZURE_OPENAI_CONFIG": {"api_base": "http://x"}},
            "AZURE_OPENAI_CONFIG['api_key'] is required for LLM_PROVIDER 'azure_openai' "
            "(or set AZURE_OPENAI_API_KEY)",
        ),
        (
            {"LLM_PROVIDER": "azure_openai", "AZURE_OPENAI_CONFIG": {"api_key": "k"}},
            "AZURE_OPENAI_CONFIG['api_base'] is required for LLM_PROVIDER 'azure_openai' "
            "(or set AZURE_OPENAI_ENDPOINT)",
        ),
        (
            {"LLM_PROVIDER": "gemini", "GEMINI_CONFIG": {"model": "gemini-2.5-pro"}},
            "GEMINI_CONFIG['api_key'] is required for LLM_PROVIDER 'gemini' "
            "(or set GEMINI_API_KEY / GOOGLE_API_KEY)",
        ),
        (
            {"OPENAI_CONFIG": {"api_key": "k", "max_tokens": "many"}},
            "OPENAI_CONFIG['max_tokens'] must be an integer, got 'many'",
        ),
        (
            {"OPENAI_CONFIG": {"api_key": "k", "max_tokens": 1.5}},
            "OPENAI_CONFIG['max_tokens'] must be an integer, got 1.5",
        ),
        (
            {"LLM_PROVIDER": "gemini", "GEMINI_CONFIG": {"api_key": "k", "temperature": "warm"}},
            "GEMINI_CONFIG['temperature'] must be a number, got 'warm'",
        ),
        (
            {"LLM_PROVIDER": "gemini", "GEMINI_CONFIG": {"api_key": "k", "max_retries": True}},
            "GEMINI_CONFIG['max_retries'] must be an integer, got True",
        ),
    ],
)
def test_bad_config_raises_value_error_naming_the_key(make_app, config, message):
    app = make_app(**config)
    with app.app_context(), pytest.raises(ValueError) as info:
        get_llm_service()
    assert str(info.value) == message


def test_bad_number_from_environment_is_named(make_app, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_TEMPERATURE", "hot")
    app = make_app()
    with app.app_context(), pytest.raises(ValueError) as info:
        get_llm_service()
    assert str(info.value) == "OPENAI_CONFIG['temperature'] must be a number, got 'hot'"
