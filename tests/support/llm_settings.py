"""App config pointing each provider of ``get_llm_service`` at the fake provider server."""

from __future__ import annotations

from typing import Any

import pytest

from llm_tracker.llm_service import CONFIG_KEYS

PROVIDERS = ("openai", "azure_openai", "gemini")
AZURE_DEPLOYMENT = "prod-4o"
AZURE_API_VERSION = "2024-12-01-preview"
# Variables the SDKs or get_llm_service read on their own; a developer's shell must not
# leak into the tests.
_OTHER_ENV = (
    "OPENAI_API_BASE",
    "OPENAI_ORG_ID",
    "OPENAI_API_VERSION",
    "AZURE_OPENAI_AD_TOKEN",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_CLOUD_PROJECT",
    "LANGSMITH_GATEWAY",
)


def clear_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every environment variable that could configure a provider."""
    monkeypatch.delenv("LLM_PROVIDER", raising=False)
    for _section, keys in CONFIG_KEYS.values():
        for key in keys:
            for name in key.env:
                monkeypatch.delenv(name, raising=False)
    for name in _OTHER_ENV:
        monkeypatch.delenv(name, raising=False)


def provider_config(provider: str, base_url: str, **settings: Any) -> dict[str, Any]:
    """``make_app`` keyword arguments for ``provider`` served by the fake at ``base_url``."""
    # No retries: an error answer is one request, at once.
    if provider == "openai":
        section = {"api_key": "sk-test", "base_url": base_url + "/v1", "max_retries": 0}
        name = "OPENAI_CONFIG"
    elif provider == "azure_openai":
        section = {
            "api_key": "azure-key",
            "api_base": base_url,
            "deployment": AZURE_DEPLOYMENT,
            "api_version": AZURE_API_VERSION,
            "model": "gpt-4o",
            "max_retries": 0,
        }
        name = "AZURE_OPENAI_CONFIG"
    else:
        section = {"api_key": "gemini-key", "base_url": base_url, "max_retries": 0}
        name = "GEMINI_CONFIG"
    section.update(settings)
    return {"LLM_PROVIDER": provider, name: section}
