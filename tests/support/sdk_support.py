"""Helpers for the real-SDK handler tests: chat models (and plain LLMs) pointed at the fake
provider."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

try:  # the SDKs' HTTP client: httpx2 in openai/anthropic 3.x / 2.x, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older SDKs
    import httpx  # type: ignore[no-redef]
from flask import Flask
from langchain_anthropic import AnthropicLLM, ChatAnthropic
from langchain_core._api import LangChainDeprecationWarning
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import AzureChatOpenAI, ChatOpenAI, OpenAI
from sqlalchemy import select

from llm_tracker import LLMUsage, db, flush
from support.fake_provider import FakeProviderServer

AZURE_API_VERSION = "2024-12-01-preview"


def _timeout() -> httpx.Timeout:
    # langchain-openai shares one cached async httpx client per (base URL, timeout) unless
    # the timeout is an (unhashable) httpx2.Timeout; pooled connections belong to the event
    # loop that opened them and every test runs its own loop (asyncio.run), so each model
    # gets its own client this way (without touching the clients' other defaults).
    return httpx.Timeout(30.0)


def openai_model(fake: FakeProviderServer, model: str = "gpt-4o-mini", **kw: Any) -> ChatOpenAI:
    kw.setdefault("stream_usage", True)
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", _timeout())
    return ChatOpenAI(model=model, base_url=fake.base_url + "/v1", api_key="sk-test", **kw)


def azure_model(fake: FakeProviderServer, deployment: str = "gpt-4o", **kw: Any) -> AzureChatOpenAI:
    return AzureChatOpenAI(
        azure_endpoint=fake.base_url,
        azure_deployment=deployment,
        api_version=AZURE_API_VERSION,
        api_key="azure-key",
        **{"max_retries": 0, "timeout": _timeout(), **kw},
    )


def gemini_model(
    fake: FakeProviderServer, model: str = "gemini-2.5-flash", **kw: Any
) -> ChatGoogleGenerativeAI:
    # max_retries=1 means "no retry" in google-genai (0 means its default of 5 attempts).
    return ChatGoogleGenerativeAI(
        model=model, base_url=fake.base_url, google_api_key="g-key", **{"max_retries": 1, **kw}
    )


def anthropic_model(
    fake: FakeProviderServer, model: str = "claude-sonnet-4-5", **kw: Any
) -> ChatAnthropic:
    # Sync calls only: langchain-anthropic caches one async httpx client per (base URL,
    # float timeout), and its pooled connections belong to the first test's event loop.
    return ChatAnthropic(
        model=model, base_url=fake.base_url, api_key="a-key", **{"max_retries": 0, **kw}
    )


def anthropic_llm(
    fake: FakeProviderServer, model: str = "claude-sonnet-4-5", **kw: Any
) -> AnthropicLLM:
    """langchain-anthropic's plain LLM (one Messages request per prompt; drops usage)."""
    with warnings.catch_warnings():
        # Deprecated for ChatAnthropic, still shipped: the one plain LLM of the package.
        warnings.simplefilter("ignore", LangChainDeprecationWarning)
        return AnthropicLLM(
            model=model, base_url=fake.base_url, api_key="a-key", **{"max_retries": 0, **kw}
        )


def completions_llm(
    fake: FakeProviderServer, model: str = "gpt-3.5-turbo-instruct", **kw: Any
) -> OpenAI:
    """langchain-openai's plain LLM on the legacy completions API."""
    return OpenAI(
        model=model,
        base_url=fake.base_url + "/v1",
        api_key="sk-test",
        **{"max_retries": 0, "timeout": _timeout(), **kw},
    )


@dataclass(frozen=True)
class Flavour:
    """One provider as the fake serves it by default, with the numbers it reports."""

    name: str
    provider: str  # LangChain's ls_provider, stored in the row
    served_model: str  # what the row's model must be
    requested_model: str
    deployment: str | None
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def build(self, fake: FakeProviderServer, **kw: Any) -> BaseChatModel:
        if self.name == "openai":
            # The real API serves a dated snapshot for an alias.
            fake.served_models["gpt-4o-mini"] = "gpt-4o-mini-2024-07-18"
            return openai_model(fake, **kw)
        if self.name == "azure":
            return azure_model(fake, **kw)
        return gemini_model(fake, **kw)


# Default numbers: fake_provider.OPENAI_USAGE (12 + 5) and GEMINI_USAGE (9 + 6).
OPENAI = Flavour("openai", "openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini", None, 12, 5)
AZURE = Flavour("azure", "azure", "gpt-4o-2024-11-20", "gpt-4o", "gpt-4o", 12, 5)
GEMINI = Flavour("gemini", "google_genai", "gemini-2.5-flash", "gemini-2.5-flash", None, 9, 6)
FLAVOURS = [OPENAI, AZURE, GEMINI]


def cfg(handler: BaseCallbackHandler) -> dict[str, Any]:
    """The run config that passes ``handler`` as the call's callback."""
    return {"callbacks": [handler]}


def usage_rows(app: Flask) -> list[LLMUsage]:
    """Every stored row, oldest first (once the writer has committed what was recorded)."""
    flush()
    with app.app_context():
        stmt = select(LLMUsage).order_by(LLMUsage.created_at, LLMUsage.id)
        return list(db.session.execute(stmt).scalars())


def only_row(app: Flask) -> LLMUsage:
    rows = usage_rows(app)
    assert len(rows) == 1, rows
    return rows[0]


def tokens(row: LLMUsage) -> tuple[int, int, int, int, int, int]:
    """(prompt, completion, total, cached, reasoning, cache_write) of a row."""
    return (
        row.prompt_tokens,
        row.completion_tokens,
        row.total_tokens,
        row.cached_tokens,
        row.reasoning_tokens,
        row.cache_write_tokens,
    )
