"""Demo usage rows for a first start, written through ``record_usage`` like real calls."""

from __future__ import annotations

import random
from datetime import timedelta

from llm_tracker import record_usage
from llm_tracker.database import utcnow

_MODELS = [
    # (served model, provider, node, typical prompt, typical completion, reasoning share)
    ("gpt-4o-mini-2024-07-18", "openai", "interpret", 1200, 300, 0.0),
    ("gpt-4o-2024-11-20", "azure", "summarise", 3000, 700, 0.0),
    ("gemini-2.5-flash", "google_genai", "classify", 800, 200, 0.4),
    ("o3-mini-2025-01-31", "openai", "plan", 1500, 1200, 0.6),
]

# What a rate-limited call really stores: the type LangChain raises, then its message.
_RATE_LIMITED = {
    "openai": "OpenAIRateLimitError: Error code: 429 - rate limit exceeded",
    "azure": "OpenAIRateLimitError: Error code: 429 - rate limit exceeded",
    "google_genai": "GoogleRateLimitError: Error calling model 'gemini-2.5-flash' "
    "(RESOURCE_EXHAUSTED): 429 RESOURCE_EXHAUSTED.",
}


def create_demo_rows(user_ids: list[int], count: int = 400, seed: int = 7) -> int:
    """Write ``count`` plausible rows spread over the last 30 days; return how many."""
    rnd = random.Random(seed)
    now = utcnow()
    for _ in range(count):
        model, provider, node, p, c, r = rnd.choice(_MODELS)
        prompt = int(rnd.gauss(p, p / 3)) if rnd.random() > 0.02 else 0
        prompt = max(prompt, 20)
        completion = max(int(rnd.gauss(c, c / 3)), 5)
        ok = rnd.random() > 0.04
        record_usage(
            model,
            prompt_tokens=prompt if ok else 0,
            completion_tokens=completion if ok else 0,
            cached_tokens=int(prompt * rnd.choice([0, 0, 0.5, 0.8])) if ok else 0,
            reasoning_tokens=int(completion * r) if ok else 0,
            success=ok,
            error=None if ok else _RATE_LIMITED[provider],
            user_id=rnd.choice(user_ids + [None]),
            metadata={"source_type": rnd.choice(["api", "task"]), "demo": True},
            provider=provider,
            node_name=node,
            latency_ms=int(rnd.uniform(300, 4000)),
            created_at=now - timedelta(minutes=rnd.uniform(0, 30 * 24 * 60)),
        )
    return count
