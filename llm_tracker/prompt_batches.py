"""Multi-prompt plain-LLM calls: one request, one usage, several runs.

LangChain gives such a call's usage to one run and empties the others'
(``LLMResult.flatten``). Their rows must not say ``usage_missing``: the usage was billed,
to a sibling. ``PromptBatches`` groups the runs of one call and holds a run without usage
until the run carrying the usage has ended (it is then marked ``usage_billed_to_run``) or
every run of the call has (its usage really is missing). Async runs end in any order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Batch:
    """The runs of one multi-prompt plain-LLM call (they share its invocation_params)."""

    params: Any
    pending: int = 0  # started, not yet ended
    carrier: str | None = None  # the run LangChain gave the call's usage to
    held: list[dict[str, Any]] = field(default_factory=list)  # rows waiting for carrier


class PromptBatches:
    """The batches of one handler's runs; thread-safe."""

    def __init__(self) -> None:
        self._starting: dict[int, Batch] = {}  # id(invocation_params) -> batch
        self._lock = threading.Lock()

    def join(self, invocation_params: Any, batch_size: int) -> Batch | None:
        """The batch a starting run belongs to; None for a single-prompt call."""
        if batch_size <= 1 or invocation_params is None:
            return None
        key = id(invocation_params)  # unique while the batch holds the object
        with self._lock:
            batch = self._starting.setdefault(key, Batch(invocation_params))
            batch.pending += 1
            if batch.pending == batch_size:
                del self._starting[key]
        return batch

    def settle(self, batch: Batch, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows (``record_usage`` arguments) ready to write now that one run ended."""
        with self._lock:
            self._starting.pop(id(batch.params), None)  # every run started before any ends
            batch.pending -= 1
            held, ready = batch.held, []
            for row in rows:
                meta = row["metadata"]
                if meta.get("usage_missing"):
                    held.append(row)
                    continue
                if batch.carrier is None and row["success"] and not meta.get("cancelled"):
                    batch.carrier = row["run_id"]
                ready.append(row)
            if batch.carrier is not None or not batch.pending:
                ready += held
                held.clear()
            carrier = batch.carrier
        for row in ready:
            if carrier is not None and row["metadata"].pop("usage_missing", None):
                row["metadata"]["usage_billed_to_run"] = carrier
        return ready
