"""``UsageHandler``: a LangChain callback that records one row per chat model / LLM run."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flask import Flask, has_app_context
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langchain_core.tracers.context import register_configure_hook
from typing_extensions import override

from . import budgets
from .budgets import BudgetExceeded
from .database import current_flask_app
from .models import LLMUsage
from .prompt_batches import Batch, PromptBatches
from .recording import record_usage, recording_for
from .run_result import Usage, normalise_model, read_result, usage_from_metadata

__all__ = ["Usage", "UsageHandler", "normalise_model", "track_usage", "usage_from_metadata"]

logger = logging.getLogger("llm_tracker")

_STATE_SOURCE_KEYS = ("source_type", "source_task_id", "source_path")
# The caller walked away from the stream (break, aclose, task cancelled).
_CANCELLED = (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt)


@dataclass(slots=True)
class _Run:
    # What only the start event knows.
    started: float
    provider: str | None = None
    requested_model: str | None = None
    deployment: str | None = None
    graph_node: str | None = None
    batch: Batch | None = None
    first_token: float | None = None  # streamed runs: when the first token came


class UsageHandler(BaseCallbackHandler):
    """Records every chat model (and plain LLM) run it sees as exactly one ``LLMUsage`` row.

    ``state`` holds ``user_id``, ``source_type``, ``source_task_id``, ``source_path`` and a
    ``metadata`` dict merged into the row. The Flask app current at construction (or
    ``app=``) is used to write, so the handler works from threads and async tasks.

    Example:
        .. code-block:: python

            from langchain_core.language_models import GenericFakeChatModel
            from langchain_core.messages import AIMessage

            from admin_app import create_app
            from llm_tracker import UsageHandler, db

            app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
            with app.app_context():
                db.create_all()
                reply = AIMessage("Hi!", usage_metadata={
                    "input_tokens": 12, "output_tokens": 3, "total_tokens": 15})
                llm = GenericFakeChatModel(messages=iter([reply]))
                handler = UsageHandler({"user_id": 42}, node_name="greet")
                llm.invoke("Hello", config={"callbacks": [handler]})
                print(handler.last_row.total_tokens, handler.last_row.node_name)
                # 15 greet
    """

    # BudgetExceeded must reach the caller (LangChain logs and swallows other handler
    # errors); nothing else this handler does ever raises.
    raise_error = True

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
                    "UsageHandler needs a Flask app: create it inside an app context or pass app="
                )
            app = current_flask_app()
        self.app = app
        self.state: Mapping[str, Any] = state or {}
        self.node_name = node_name
        self._runs: dict[UUID, _Run] = {}
        self._batches = PromptBatches()
        # In async chains a sync handler runs in a thread pool.
        self._lock = threading.Lock()
        # The row of the latest run recorded (call_and_track reports its numbers).
        self.last_row: LLMUsage | None = None

    # --- start: remember what only the start event knows ---------------------------

    def _start(
        self,
        run_id: UUID,
        metadata: Mapping[str, Any] | None,
        invocation_params: Mapping[str, Any] | None,
        prompt: Sequence[Any],
        batch_size: int = 1,
    ) -> None:
        try:
            metadata = metadata or {}
            params = invocation_params or {}
            run = _Run(
                started=time.perf_counter(),
                provider=metadata.get("ls_provider"),
                requested_model=metadata.get("ls_model_name")
                or params.get("model_name")
                or params.get("model"),
                deployment=params.get("azure_deployment") or params.get("deployment_name"),
                graph_node=metadata.get("langgraph_node"),
            )
            run.batch = self._batches.join(invocation_params, batch_size)
            with self._lock:
                self._runs[run_id] = run
            self._reserve(run_id, run, metadata, params, prompt)
        except BudgetExceeded:
            raise
        except Exception:
            logger.exception("llm_tracker: could not start tracking run %s", run_id)

    def _reserve(
        self,
        run_id: UUID,
        run: _Run,
        metadata: Mapping[str, Any],
        params: Mapping[str, Any],
        prompt: Sequence[Any],
    ) -> None:
        # Before the provider is called: hold the call's most possible cost on the block
        # budgets covering it, or refuse it as one recorded row.
        call = {
            "user_id": self.state.get("user_id"),
            "node_name": self.node_name or run.graph_node or "unknown",
            "source_type": self.state.get("source_type"),
            "model": normalise_model(run.requested_model) or run.deployment,
            "provider": run.provider,
            "deployment": run.deployment,
        }
        inputs = budgets.prompt_bytes(prompt, params)
        outputs = budgets.max_output_tokens(self.app, metadata, params)
        try:
            budgets.reserve(self.app, str(run_id), call, inputs, outputs)
        except BudgetExceeded as exc:
            self._forget(run_id)
            try:
                row = self._row(run_id, run, None, exc)
                row["metadata"]["budget"] = exc.budget
                row["latency_ms"] = 0
                with self._app_context():
                    self.last_row = record_usage(**row)
            except Exception:
                logger.exception("llm_tracker: could not record blocked run %s", run_id)
            raise

    @override
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remember start time, provider, requested model and LangGraph node of the run;
        raise ``BudgetExceeded`` when a block budget cannot take the call."""
        prompt = messages[0] if messages else []
        self._start(run_id, metadata, kwargs.get("invocation_params"), prompt)

    @override
    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Same as ``on_chat_model_start``, for plain (non-chat) LLMs."""
        self._start(
            run_id,
            metadata,
            kwargs.get("invocation_params"),
            prompts,
            kwargs.get("batch_size") or 1,
        )

    @override
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Note when a streamed run's first token arrived (its ``ttft_ms``)."""
        run = self._runs.get(run_id)
        if run is not None and run.first_token is None:
            run.first_token = time.perf_counter()

    # --- end: one row per run ------------------------------------------------------

    @override
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the finished run."""
        try:
            self._record(run_id, response, None)
        finally:
            self._forget(run_id)

    @override
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record a failed or abandoned run, with whatever usage arrived before."""
        try:
            self._record(run_id, kwargs.get("response"), error)
        finally:
            self._forget(run_id)

    def _app_context(self) -> AbstractContextManager[Any]:
        # Pushing a context costs more than some INSERTs: reuse the one already there.
        if has_app_context() and current_flask_app() is self.app:
            return nullcontext()
        if self.app.config.get("LLM_TRACKER_WRITE_MODE") == "background":
            return recording_for(self.app)  # journalling needs no app context
        return self.app.app_context()

    def _forget(self, run_id: UUID) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def _record(
        self, run_id: UUID, response: LLMResult | None, error: BaseException | None
    ) -> None:
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
                rows = self._batches.settle(run.batch, rows)  # without a row too: siblings wait
            with self._app_context():
                for row in rows:
                    self.last_row = record_usage(**row)
        except Exception:
            logger.exception("llm_tracker: could not record run %s", run_id)

    def _row(
        self,
        run_id: UUID,
        run: _Run | None,
        response: LLMResult | None,
        error: BaseException | None,
    ) -> dict[str, Any]:
        result = read_result(response, error)
        meta = result.metadata
        cancelled = isinstance(error, _CANCELLED)
        if cancelled:
            meta["cancelled"] = True
        failed = error is not None and not cancelled
        run = run or _Run(started=time.perf_counter())
        if run.deployment:
            meta["deployment"] = run.deployment
        state = self.state
        row_meta: dict[str, Any] = dict(state.get("metadata") or {})
        row_meta.update(
            {key: state[key] for key in _STATE_SOURCE_KEYS if state.get(key) is not None}
        )
        row_meta.update(meta)
        usage = result.usage
        return dict(
            model=(
                result.model or normalise_model(run.requested_model) or run.deployment or "unknown"
            ),
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
            deployment=run.deployment,
            # record_usage repeats it in the metadata.
            node_name=self.node_name or run.graph_node or "unknown",
            latency_ms=round((time.perf_counter() - run.started) * 1000),
            ttft_ms=(
                None if run.first_token is None else round((run.first_token - run.started) * 1000)
            ),
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
