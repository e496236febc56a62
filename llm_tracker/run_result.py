"""What a finished LangChain run says about itself: usage, served model, tier, cache hit.

``read_result`` is the one function ``UsageHandler`` calls; it reads the standard
``AIMessage.usage_metadata`` first and falls back to ``llm_output["token_usage"]`` /
``response_metadata`` only where a provider or a plain LLM puts usage there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.outputs import ChatGeneration, LLMResult


@dataclass(slots=True)
class Usage:
    """Token counts of one run, as LangChain's ``usage_metadata`` reports them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens: Anthropic's 1-hour TTL


@dataclass(slots=True)
class RunResult:
    """The parts of a run's ``LLMResult`` a usage row is made of."""

    usage: Usage
    model: str | None  # the served model, normalised; None when the response names none
    # Row metadata the result implies: usage_missing, llm_cache_hit and cached_usage,
    # cache_write_1h_tokens, service_tier.
    metadata: dict[str, Any] = field(default_factory=dict)


def _detail_sum(details: Mapping[str, Any] | None, key: str) -> int:
    # Service tiers prefix the keys ("flex_cache_read", "priority_reasoning").
    if not details:
        return 0
    return sum(v for k, v in details.items() if v and (k == key or k.endswith("_" + key)))


def usage_from_metadata(um: Mapping[str, Any]) -> Usage:
    """Read ``AIMessage.usage_metadata``: input includes cached, output includes reasoning."""
    prompt = um.get("input_tokens") or 0
    completion = um.get("output_tokens") or 0
    inp, out = um.get("input_token_details"), um.get("output_token_details")
    # With the API's TTL breakdown langchain-anthropic reports the writes per TTL and
    # cache_creation as 0; without it (a stream's message_delta) only cache_creation. When
    # both are set they count the same tokens: take the larger, never the sum.
    written_1h = _detail_sum(inp, "ephemeral_1h_input_tokens")
    by_ttl = _detail_sum(inp, "ephemeral_5m_input_tokens") + written_1h
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=um.get("total_tokens") or prompt + completion,
        cached_tokens=_detail_sum(inp, "cache_read"),
        cache_write_tokens=max(_detail_sum(inp, "cache_creation"), by_ttl),
        reasoning_tokens=_detail_sum(out, "reasoning"),
        cache_write_1h_tokens=written_1h,
    )


def _usage_from_openai_dict(tu: Mapping[str, Any]) -> Usage:
    # Legacy llm_output["token_usage"] (OpenAI-style or input/output-style keys).
    prompt = tu.get("prompt_tokens", tu.get("input_tokens")) or 0
    completion = tu.get("completion_tokens", tu.get("output_tokens")) or 0
    pdet = tu.get("prompt_tokens_details") or {}
    cdet = tu.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=tu.get("total_tokens") or prompt + completion,
        cached_tokens=pdet.get("cached_tokens") or 0,
        reasoning_tokens=cdet.get("reasoning_tokens") or 0,
    )


# AzureChatOpenAI (with model_version) appends the version to a served name that already
# carries it: "gpt-4o-2024-11-20-2024-11-20".
_DOUBLED_VERSION = re.compile(r"(-\d[\w.-]{2,}?)\1$")


def normalise_model(name: str | None) -> str | None:
    """A model name as stored: no ``models/`` prefix, no doubled version, None when empty."""
    if not name:
        return None
    name = _DOUBLED_VERSION.sub(r"\1", name.strip().removeprefix("models/"))
    return name or None


def read_result(response: LLMResult | None, error: BaseException | None = None) -> RunResult:
    """Usage, served model and usage-related metadata of a finished (or failed) run."""
    # With n>1 every generation of a run carries the same, full usage: read the first.
    gen = next((gens[0] for gens in (response.generations if response else ()) if gens), None)
    message = gen.message if isinstance(gen, ChatGeneration) else None
    response_meta = message.response_metadata if message is not None else {}
    llm_output = (response.llm_output if response else None) or {}
    meta: dict[str, Any] = {}
    um = getattr(message, "usage_metadata", None)
    if um:
        usage = usage_from_metadata(um)
    else:
        tu = llm_output.get("token_usage") or response_meta.get("token_usage")
        usage = _usage_from_openai_dict(tu) if tu else Usage()
        if not tu and error is None:
            meta["usage_missing"] = True
    if um and um.get("total_cost") == 0:
        # LangChain's LLM cache replayed an old answer: no provider call was made.
        meta["llm_cache_hit"] = True
        meta["cached_usage"] = dict(um)
        usage = Usage()
    if usage.cache_write_1h_tokens:
        # Dearer than 5-minute writes and there is no column for them: the pricer (and
        # reprice) read the split from here.
        meta["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
    # OpenAI reports the tier that served the call ("flex", "priority"...): its price.
    info = getattr(gen, "generation_info", None) or {}
    tier = (
        response_meta.get("service_tier")
        or info.get("service_tier")
        or llm_output.get("service_tier")
    )
    if isinstance(tier, str) and tier not in ("default", "auto"):
        meta["service_tier"] = tier
    served = (
        response_meta.get("model_name")
        or response_meta.get("model")
        or llm_output.get("model_name")
    )
    return RunResult(usage, normalise_model(served), meta)
