"""``LLMTracker.call_and_track``: one chat call through the configured provider, recorded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.messages import AIMessage, MessageLikeRepresentation
from langchain_core.outputs import ChatGeneration, LLMResult

from .handler import UsageHandler
from .llm_service import get_llm_service
from .models import REPORTED_TOKEN_COLUMNS, LLMUsage
from .pricing import format_money
from .run_result import normalise_model, usage_from_metadata

EMPTY_MESSAGES = "Messages cannot be empty"
EMPTY_RESPONSE = "LLM returned empty response"
# What call_and_track reports, read from the stored row. cost_usd is a decimal string
# ("0.000151500"), None when the model is unpriced, as in the JSON API.
USAGE_KEYS = ("model", *REPORTED_TOKEN_COLUMNS, "latency_ms", "cost_usd")


def _is_empty(text: str) -> bool:
    return not text.strip()


class _CallHandler(UsageHandler):
    """A ``UsageHandler`` that records an empty reply as the failure call_and_track raises.

    Deciding before the write keeps it one row, written once (or spooled), never a success
    row patched afterwards.
    """

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the run; an empty reply is recorded as ``success=False``."""
        gens = response.generations[0] if response.generations else []
        gen = gens[0] if gens else None
        text = gen.message.text if isinstance(gen, ChatGeneration) else getattr(gen, "text", "")
        if _is_empty(text):
            self.on_llm_error(
                ValueError(EMPTY_RESPONSE), run_id=run_id, response=response, **kwargs
            )
        else:
            super().on_llm_end(response, run_id=run_id, **kwargs)


def _usage(row: LLMUsage | None, message: AIMessage, requested_model: str | None) -> dict[str, Any]:
    if row is not None:
        usage = {key: getattr(row, key) for key in USAGE_KEYS}
        usage["cost_usd"] = format_money(usage["cost_usd"])
        return usage
    # The handler could not build a row (it logged why): report what the reply says.
    u = usage_from_metadata(message.usage_metadata or {})
    meta = message.response_metadata
    return {
        "model": normalise_model(meta.get("model_name") or meta.get("model"))
        or requested_model
        or "unknown",
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "cached_tokens": u.cached_tokens,
        "reasoning_tokens": u.reasoning_tokens,
        "latency_ms": None,
        "cost_usd": None,
    }


class LLMTracker:
    """LLM calls that record themselves as ``LLMUsage`` rows."""

    @staticmethod
    def call_and_track(
        messages: Sequence[MessageLikeRepresentation],
        json_mode: bool = False,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: Mapping[str, Any] | None = None,
        node_name: str = "unknown",
        state: Mapping[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Call the configured provider, record one row, return ``(content, usage)``."""
        if not messages:
            raise ValueError(EMPTY_MESSAGES)
        service = get_llm_service()
        # "unknown" lets the handler fall back to the LangGraph node the call runs in.
        handler = _CallHandler(state, node_name=None if node_name == "unknown" else node_name)
        message = service.chat(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            json_mode=json_mode,
            response_format=response_format,
            raw_response=True,
            callbacks=[handler],
        )
        assert isinstance(message, AIMessage)  # raw_response=True
        content = message.text
        if _is_empty(content):
            raise ValueError(EMPTY_RESPONSE)
        return content, _usage(handler.last_row, message, service.settings.get("model"))
