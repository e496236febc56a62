"""``UsageHandler``: a LangChain callback that records one row per chat model / LLM run."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from flask import Flask, current_app, has_app_context
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from .models import LLMUsage
from .recording import record_usage

logger = logging.getLogger("llm_tracker")

_STATE_SOURCE_KEYS = ("source_type", "source_task_id", "source_path")
# The caller walked away from the stream (break, aclose, task cancelled).
_CANCELLED = (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt)


@dataclass(slots=True)
class _Batch:
    # The runs of one multi-prompt plain-LLM call (they share its invocation_params).
    params: Any
    pending: int = 0  # started, not yet ended
    carrier: str | None = None  # the run LangChain gave the call's usage to
    held: list[dict[str, Any]] = field(default_factory=list)  # rows waiting for carrier


@dataclass(slots=True)
class _Run:
    started: float
    provider: str | None = None
    requested_model: str | None = None
    deployment: str | None = None
    graph_node: str | None = None
    batch: _Batch | None = None


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


def _first_generation(response: LLMResult | None) -> Any:
    # With n>1 every generation of a run carries the same, full usage: read it once.
    for gens in (response.generations if response else ()):
        if gens:
            return gens[0]
    return None


def _served_model(response: LLMResult | None, gen: Any) -> str | None:
    meta = gen.message.response_metadata if isinstance(gen, ChatGeneration) else {}
    llm_output = (response.llm_output if response else None) or {}
    for name in (meta.get("model_name"), meta.get("model"), llm_output.get("model_name")):
        if name:
            return name
    return None


def _service_tier(response: LLMResult | None, gen: Any) -> str | None:
    # OpenAI reports the tier that served the call ("flex", "priority"...): its price.
    meta = gen.message.response_metadata if isinstance(gen, ChatGeneration) else {}
    info = getattr(gen, "generation_info", None) or {}
    llm_output = (response.llm_output if response else None) or {}
    tier = meta.get("service_tier") or info.get("service_tier") or llm_output.get("service_tier")
    return tier if isinstance(tier, str) and tier not in ("default", "auto") else None


# AzureChatOpenAI (with model_version) appends the version to a served name that already
# carries it: "gpt-4o-2024-11-20-2024-11-20".
_DOUBLED_VERSION = re.compile(r"(-\d[\w.-]{2,}?)\1$")


def normalise_model(name: str | None) -> str | None:
    """A model name as stored: no ``models/`` prefix, no doubled version, None when empty."""
    if not name:
        return None
    name = _DOUBLED_VERSION.sub(r"\1", name.strip().removeprefix("models/"))
    return name or None


class UsageHandler(BaseCallbackHandler):
    """Records every chat model (and plain LLM) run it sees as exactly one ``LLMUsage`` row.

    ``state`` holds ``user_id``, ``source_type``, ``source_task_id``, ``source_path`` and a
    ``metadata`` dict merged into the row. The Flask app current at construction (or
    ``app=``) is used to write, so the handler works from threads and async tasks.
    """

    def __init__(
        self,
        state: Mapping[str, Any] | None = None,
        node_name: str | None = None,
        app: Flask | None = None,
    ) -> None:
        super().__init__()
        if app is None:
            if not has_app_context():
                raise RuntimeError(
                    "UsageHandler needs a Flask app: create it inside an app context or "
                    "pass app=")
            app = current_app._get_current_object()
        self.app = app
        self.state: Mapping[str, Any] = state or {}
        self.node_name = node_name
        self._runs: dict[UUID, _Run] = {}
        self._starting: dict[int, _Batch] = {}  # id(invocation_params) -> batch
        # In async chains a sync handler runs in a thread pool.
        self._lock = threading.Lock()
        # The row of the latest run recorded (call_and_track reports its numbers).
        self.last_row: LLMUsage | None = None

    # --- start: remember what only the start event knows ---------------------------

    def _start(self, run_id: UUID, metadata: Mapping[str, Any] | None,
               invocation_params: Mapping[str, Any] | None, batch_size: int = 1) -> None:
        metadata = metadata or {}
        params = invocation_params or {}
        run = _Run(
            started=time.perf_counter(),
            provider=metadata.get("ls_provider"),
            requested_model=metadata.get("ls_model_name") or params.get("model_name")
            or params.get("model"),
            deployment=params.get("azure_deployment") or params.get("deployment_name"),
            graph_node=metadata.get("langgraph_node"),
        )
        with self._lock:
            if batch_size > 1 and invocation_params is not None:
                key = id(invocation_params)  # unique while the batch holds the object
                batch = run.batch = self._starting.setdefault(key, _Batch(invocation_params))
                batch.pending += 1
                if batch.pending == batch_size:
                    del self._starting[key]
            self._runs[run_id] = run

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            *, run_id: UUID, metadata: dict[str, Any] | None = None,
                            **kwargs: Any) -> None:
        """Remember start time, provider, requested model and LangGraph node of the run."""
        self._start(run_id, metadata, kwargs.get("invocation_params"))

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Same as ``on_chat_model_start``, for plain (non-chat) LLMs."""
        self._start(run_id, metadata, kwargs.get("invocation_params"),
                    kwargs.get("batch_size") or 1)

    # --- end: one row per run ------------------------------------------------------

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the finished run."""
        try:
            self._record(run_id, response, None)
        finally:
            self._forget(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record a failed or abandoned run, with whatever usage arrived before."""
        try:
            self._record(run_id, kwargs.get("response"), error)
        finally:
            self._forget(run_id)

    def _app_context(self) -> AbstractContextManager[Any]:
        # Pushing a context costs more than some INSERTs: reuse the one already there.
        if has_app_context() and current_app._get_current_object() is self.app:
            return nullcontext()
        return self.app.app_context()

    def _forget(self, run_id: UUID) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _record(self, run_id: UUID, response: LLMResult | None,
                error: BaseException | None) -> None:
        with self._lock:
            run = self._runs.get(run_id)
        rows: list[dict[str, Any]] = []
        # LangChain swallows handler errors; say loudly what happened.
        try:
            rows.append(self._row(run_id, run, response, error))
        except Exception:
            logger.exception("llm_tracker: could not record run %s", run_id)
        try:
            if run is not None and run.batch is not None:
                rows = self._settle(run.batch, rows)  # even without a row: siblings wait
            with self._app_context():
                for row in rows:
                    self.last_row = record_usage(**row)
        except Exception:
            logger.exception("llm_tracker: could not record run %s", run_id)

    def _settle(self, batch: _Batch, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # LangChain gives a multi-prompt call's usage to one run and empties the others'
        # (LLMResult.flatten). Async runs end in any order: a run without usage is held
        # until the carrier has ended (billed there) or every run has (really missing).
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
        for r in ready:
            if carrier is not None and r["metadata"].pop("usage_missing", None):
                r["metadata"]["usage_billed_to_run"] = carrier
        return ready

    def _row(self, run_id: UUID, run: _Run | None, response: LLMResult | None,
             error: BaseException | None) -> dict[str, Any]:
        gen = _first_generation(response)
        message = gen.message if isinstance(gen, ChatGeneration) else None
        um = getattr(message, "usage_metadata", None)
        meta: dict[str, Any] = {}
        if um:
            usage = usage_from_metadata(um)
        else:
            tu = ((response.llm_output if response else None) or {}).get("token_usage")
            if not tu and message is not None:
                tu = message.response_metadata.get("token_usage")
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

        tier = _service_tier(response, gen)
        if tier:
            meta["service_tier"] = tier

        cancelled = isinstance(error, _CANCELLED)
        if cancelled:
            meta["cancelled"] = True
        failed = error is not None and not cancelled

        run = run or _Run(started=time.perf_counter())
        deployment = run.deployment
        if deployment:
            meta["deployment"] = deployment
        model = (normalise_model(_served_model(response, gen))
                 or normalise_model(run.requested_model) or deployment or "unknown")
        node_name = self.node_name or run.graph_node or "unknown"

        state = self.state
        row_meta: dict[str, Any] = dict(state.get("metadata") or {})
        row_meta["node_name"] = node_name
        for key in _STATE_SOURCE_KEYS:
            if state.get(key) is not None:
                row_meta[key] = state[key]
        row_meta.update(meta)

        return dict(
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            success=not failed,
            error=f"{type(error).__name__}: {error}" if failed else None,
            user_id=state.get("user_id"),
            metadata=row_meta,
            provider=run.provider,
            run_id=str(run_id),
            requested_model=normalise_model(run.requested_model),
            deployment=deployment,
            node_name=node_name,
            latency_ms=round((time.perf_counter() - run.started) * 1000),
        )


_tracked: ContextVar[UsageHandler | None] = ContextVar("llm_tracker_usage", default=None)
register_configure_hook(_tracked, inheritable=True)


@contextmanager
def track_usage(
    state: Mapping[str, Any] | None = None,
    node_name: str | None = None,
    app: Flask | None = None,
) -> Iterator[UsageHandler]:
    """Attach a ``UsageHandler`` to every LangChain call made inside the block."""
    handler = UsageHandler(state, node_name, app=app)
    token = _tracked.set(handler)
    try:
        yield handler
    finally:
        _tracked.reset(token)
