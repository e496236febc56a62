"""``get_llm_service``: the configured provider's LangChain chat model; records nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from flask import current_app
from langchain_core.callbacks import Callbacks
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, MessageLikeRepresentation, convert_to_messages
from langchain_core.runnables.config import ensure_config, merge_configs

PROVIDERS = ("openai", "azure_openai", "gemini")
DEFAULT_PROVIDER = "openai"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_AZURE_MODEL = "gpt-4o-mini"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of a provider config section and the environment variables that fill it."""

    name: str
    env: tuple[str, ...]
    kind: type = str
    required: bool = False


def _keys(prefix: str, *special: ConfigKey) -> tuple[ConfigKey, ...]:
    # The numeric knobs are named alike for every provider: <PREFIX>_MAX_TOKENS, ...
    return (
        *special,
        ConfigKey("max_tokens", (f"{prefix}_MAX_TOKENS",), int),
        ConfigKey("temperature", (f"{prefix}_TEMPERATURE",), float),
        ConfigKey("max_retries", (f"{prefix}_MAX_RETRIES",), int),
        ConfigKey("timeout", (f"{prefix}_TIMEOUT",), float),
    )


# provider -> (config section, its keys). The README's "Providers" table mirrors this.
CONFIG_KEYS: dict[str, tuple[str, tuple[ConfigKey, ...]]] = {
    "openai": (
        "OPENAI_CONFIG",
        _keys(
            "OPENAI",
            ConfigKey("api_key", ("OPENAI_API_KEY",), required=True),
            ConfigKey("model", ("OPENAI_MODEL",)),
            ConfigKey("base_url", ("OPENAI_BASE_URL",)),
        ),
    ),
    "azure_openai": (
        "AZURE_OPENAI_CONFIG",
        _keys(
            "AZURE_OPENAI",
            ConfigKey("api_key", ("AZURE_OPENAI_API_KEY",), required=True),
            ConfigKey("api_base", ("AZURE_OPENAI_ENDPOINT",), required=True),
            ConfigKey("api_version", ("AZURE_OPENAI_API_VERSION",)),
            ConfigKey("deployment", ("AZURE_OPENAI_DEPLOYMENT",)),
            ConfigKey("model", ("AZURE_OPENAI_MODEL",)),
        ),
    ),
    "gemini": (
        "GEMINI_CONFIG",
        _keys(
            "GEMINI",
            ConfigKey("api_key", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), required=True),
            ConfigKey("model", ("GEMINI_MODEL",)),
            ConfigKey("base_url", ("GEMINI_BASE_URL",)),
        ),
    ),
}


def _is_unset(value: Any) -> bool:
    return value is None or value == ""


def _coerce(section: str, key: ConfigKey, value: Any) -> Any:
    # Environment variables are text; config files may hold text too.
    if key.kind is str:
        return str(value)
    kind = "an integer" if key.kind is int else "a number"
    error = ValueError(f"{section}['{key.name}'] must be {kind}, got {value!r}")
    # True is no count of tokens, and int(1.5) would silently drop a half.
    if isinstance(value, bool) or (
        key.kind is int and isinstance(value, float) and not value.is_integer()
    ):
        raise error
    try:
        return key.kind(value)
    except (TypeError, ValueError):
        raise error from None


def provider_settings(config: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The provider name and its settings: app config first, then environment variables."""
    config = current_app.config if config is None else config
    provider = config.get("LLM_PROVIDER")
    if _is_unset(provider):
        provider = os.environ.get("LLM_PROVIDER") or DEFAULT_PROVIDER
    if provider not in CONFIG_KEYS:
        raise ValueError(
            f"Unknown LLM_PROVIDER {provider!r}: expected one of {', '.join(PROVIDERS)}"
        )
    section, keys = CONFIG_KEYS[provider]
    given = config.get(section) or {}
    settings: dict[str, Any] = {}
    for key in keys:
        value = given.get(key.name)
        if _is_unset(value):
            value = next((os.environ[e] for e in key.env if os.environ.get(e)), None)
        if _is_unset(value):
            if key.required:
                raise ValueError(
                    f"{section}['{key.name}'] is required for LLM_PROVIDER {provider!r} "
                    f"(or set {' / '.join(key.env)})"
                )
            continue
        settings[key.name] = _coerce(section, key, value)
    return provider, settings


def _common(settings: Mapping[str, Any]) -> dict[str, Any]:
    # Only what the config sets: otherwise the SDK's own defaults apply.
    return {
        k: settings[k]
        for k in ("max_tokens", "temperature", "max_retries", "timeout")
        if k in settings
    }


class LLMService:
    """A provider's LangChain chat model (``.model``) and ``chat``; never writes a row."""

    provider: ClassVar[str]
    # The invoke() keyword that overrides the configured max_tokens for this SDK.
    max_tokens_kwarg: ClassVar[str]
    json_mode_kwargs: ClassVar[Mapping[str, Any]]

    def __init__(self, model: BaseChatModel, settings: Mapping[str, Any]) -> None:
        self.model = model
        # What was configured, for display and logs: never the secret.
        self.settings = {k: v for k, v in settings.items() if k != "api_key"}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.settings.get('model')!r}>"

    def chat(
        self,
        messages: Sequence[MessageLikeRepresentation],
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_mode: bool = False,
        response_format: Mapping[str, Any] | None = None,
        raw_response: bool = False,
        callbacks: Callbacks = None,
    ) -> str | AIMessage:
        """Run one chat call: the reply text, or the full ``AIMessage`` with raw_response."""
        kwargs: dict[str, Any] = {}
        # `is not None`: 0 and 0.0 are real overrides.
        if max_tokens is not None:
            kwargs[self.max_tokens_kwarg] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        if json_mode:
            kwargs.update(self.json_mode_kwargs)
        if response_format is not None:
            kwargs["response_format"] = response_format
        # Inside a chain or LangGraph node, add to the inherited callbacks rather than
        # replace them: tracing, message streaming and the parent run stay intact.
        config = merge_configs(ensure_config(), {"callbacks": callbacks}) if callbacks else None
        message = self.model.invoke(convert_to_messages(messages), config=config, **kwargs)
        return message if raw_response else message.text


class OpenAIService(LLMService):
    """OpenAI, or any OpenAI-compatible endpoint (``base_url``)."""

    provider = "openai"
    # ChatOpenAI turns max_tokens (default and per call alike) into max_completion_tokens.
    max_tokens_kwarg = "max_tokens"
    json_mode_kwargs = {"response_format": {"type": "json_object"}}

    @classmethod
    def build(cls, settings: Mapping[str, Any]) -> OpenAIService:
        """Build the ``ChatOpenAI`` client (no network)."""
        from langchain_openai import ChatOpenAI

        model = ChatOpenAI(
            model=settings.get("model", DEFAULT_OPENAI_MODEL),
            api_key=settings["api_key"],
            base_url=settings.get("base_url"),
            # Streams, astream_events and LangGraph message streaming then carry usage.
            stream_usage=True,
            **_common(settings),
        )
        return cls(model, {"model": model.model_name, **settings})


class AzureOpenAIService(LLMService):
    """Azure OpenAI: ``api_base`` is the resource endpoint, ``deployment`` the path segment."""

    provider = "azure_openai"
    # AzureChatOpenAI sends its default as max_completion_tokens; a per-call max_tokens
    # would go out beside it instead of replacing it.
    max_tokens_kwarg = "max_completion_tokens"
    json_mode_kwargs = {"response_format": {"type": "json_object"}}

    @classmethod
    def build(cls, settings: Mapping[str, Any]) -> AzureOpenAIService:
        """Build the ``AzureChatOpenAI`` client (no network)."""
        from langchain_openai import AzureChatOpenAI

        model_name = settings.get("model") or settings.get("deployment") or DEFAULT_AZURE_MODEL
        deployment = settings.get("deployment") or model_name
        model = AzureChatOpenAI(
            azure_endpoint=settings["api_base"],
            azure_deployment=deployment,
            api_version=settings.get("api_version", DEFAULT_AZURE_API_VERSION),
            api_key=settings["api_key"],
            model=model_name,
            stream_usage=True,
            **_common(settings),
        )
        return cls(model, {**settings, "model": model_name, "deployment": deployment})


class GeminiService(LLMService):
    """Google Gemini (Developer API) through ``langchain-google-genai``."""

    provider = "gemini"
    max_tokens_kwarg = "max_output_tokens"
    json_mode_kwargs = {"response_mime_type": "application/json"}

    @classmethod
    def build(cls, settings: Mapping[str, Any]) -> GeminiService:
        """Build the ``ChatGoogleGenerativeAI`` client (no network)."""
        from langchain_google_genai import ChatGoogleGenerativeAI

        options = _common(settings)
        if "max_tokens" in options:
            options["max_output_tokens"] = options.pop("max_tokens")
        if "max_retries" in options:
            # The Google SDK counts attempts, not retries (and reads 0 as "its default").
            options["max_retries"] = options["max_retries"] + 1
        model = ChatGoogleGenerativeAI(
            model=settings.get("model", DEFAULT_GEMINI_MODEL),
            google_api_key=settings["api_key"],
            base_url=settings.get("base_url"),
            **options,
        )
        return cls(model, {"model": model.model, **settings})


_SERVICES: dict[str, type[OpenAIService | AzureOpenAIService | GeminiService]] = {
    "openai": OpenAIService,
    "azure_openai": AzureOpenAIService,
    "gemini": GeminiService,
}


def get_llm_service() -> LLMService:
    """The service of the current app's ``LLM_PROVIDER``; ValueError names a bad key."""
    provider, settings = provider_settings()
    return _SERVICES[provider].build(settings)
