"""A fake LLM provider on 127.0.0.1 that speaks the OpenAI, Azure OpenAI, Gemini and
Anthropic wire protocols, so tests can drive the real SDKs (``openai``, ``google-genai``,
``anthropic``) over HTTP.

Point the clients at it::

    ChatOpenAI(base_url=server.base_url + "/v1", api_key="sk-test", max_retries=0, ...)
    AzureChatOpenAI(azure_endpoint=server.base_url, azure_deployment="gpt-4o",
                    api_version="2024-12-01-preview", api_key="k", max_retries=0)
    ChatGoogleGenerativeAI(model="gemini-2.5-flash", base_url=server.base_url,
                           google_api_key="k", max_retries=1)   # 1 = no retry (SDK quirk)
    ChatAnthropic(model="claude-sonnet-4-5", base_url=server.base_url, api_key="k",
                  max_retries=0)
    OpenAI(model="gpt-3.5-turbo-instruct", base_url=server.base_url + "/v1",
           api_key="sk-test", max_retries=0)              # legacy completions

Routes (``{v}`` is ``v1`` — google-genai's default — or ``v1beta``):

* ``POST /v1/chat/completions`` — OpenAI chat completions;
* ``POST /v1/completions`` — OpenAI's legacy completions (plain LLMs: ``prompt`` is a
  string or a list of prompts, answered in one response);
* ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` — Azure;
* ``POST /{v}/models/{model}:generateContent`` and
  ``POST /{v}/models/{model}:streamGenerateContent?alt=sse`` — Gemini;
* ``POST /v1/messages`` (``?beta=true`` too) — Anthropic Messages.

Every request is recorded in ``server.requests``. ``server.enqueue(...)`` scripts the
next responses (FIFO, whatever the protocol); with an empty queue the server builds a
default reply from the request:

* OpenAI / Azure: ``DEFAULT_TEXT`` from the requested model (or
  ``server.served_models[requested]``; Azure: ``AZURE_SERVED_MODEL``, the served name),
  one choice per ``n``, usage ``OPENAI_USAGE`` (counted once, whatever ``n``). With
  ``"stream": true``: SSE chunks (a role chunk, ``DEFAULT_STREAM_PIECES``, a finish chunk
  per choice) and, only when ``stream_options.include_usage`` is true, a last
  chunk with ``choices: []`` and the usage — as the real API does.
* Gemini: ``DEFAULT_TEXT``, ``modelVersion`` = the model of the URL, usage
  ``GEMINI_USAGE``, one candidate per ``generationConfig.candidateCount``. Streaming:
  one chunk per piece, each with the *cumulative* ``usageMetadata`` so far (the real API
  reports the running totals; the last chunk holds the final numbers, ``GEMINI_USAGE``).
* Legacy completions: ``DEFAULT_TEXT`` for each of ``n`` choices of each prompt (choice
  ``index`` runs over prompts x n, as the real API numbers them), one ``usage`` for the
  whole request: ``COMPLETION_USAGE_PER_PROMPT`` times the number of prompts (completion
  tokens times ``n`` too). Streaming (one prompt): a chunk per piece, the last with
  ``finish_reason``, then — only with ``stream_options.include_usage`` — a usage chunk
  with ``choices: []``.
* Anthropic: a ``message`` with ``DEFAULT_TEXT`` from the requested model (or
  ``server.served_models[requested]``), usage ``ANTHROPIC_USAGE``. With ``"stream":
  true``: the real event sequence (``message_start`` with the input usage,
  ``content_block_start``, ``ping``, a ``content_block_delta`` per piece,
  ``content_block_stop``, ``message_delta`` with the final cumulative usage, which like
  the real API's carries no ``cache_creation`` TTL breakdown, ``message_stop``).
  ``anthropic_message`` / ``anthropic_stream_events`` build replies with other usage.

Non-2xx statuses are sent in the provider's real error shape (OpenAI
``{"error": {"message", "type", "param", "code"}}``, Azure ``{"error": {"code",
"message"}}``, Gemini ``{"error": {"code", "message", "status"}}``, Anthropic ``{"type":
"error", "error": {"type", "message"}}``) so the SDKs raise their real exceptions
(``openai.RateLimitError``, ``google.genai.errors.ClientError``,
``anthropic.RateLimitError``...).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Copied from the project's shared provider-payloads (provenance in payloads/SOURCES.md), so a
# clean clone runs these tests anywhere.
PAYLOADS_DIR = Path(__file__).resolve().parents[1] / "payloads"  # tests/payloads

DEFAULT_TEXT = "Hello from the fake provider."
DEFAULT_STREAM_PIECES = ("Hello", " from the", " fake provider.")
AZURE_SERVED_MODEL = "gpt-4o-2024-11-20"
# Default usage of an OpenAI / Azure reply (also the streamed usage chunk).
OPENAI_USAGE: dict[str, Any] = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# Usage per prompt of a legacy completions reply (the request's usage sums the prompts).
COMPLETION_USAGE_PER_PROMPT: dict[str, int] = {"prompt_tokens": 4, "completion_tokens": 5}
# Default usage of an Anthropic reply; input_tokens excludes cache reads and writes.
ANTHROPIC_USAGE: dict[str, Any] = {
    "input_tokens": 10,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 6,
    "service_tier": "standard",
}
# Default usage of a Gemini reply (final numbers of a stream).
GEMINI_USAGE: dict[str, Any] = {
    "promptTokenCount": 9,
    "candidatesTokenCount": 6,
    "totalTokenCount": 15,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
}

_AZURE_PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")
_OPENAI_PATH = re.compile(r"^(?:/v1)?/chat/completions$")
_COMPLETIONS_PATH = re.compile(r"^(?:/v1)?/completions$")
_ANTHROPIC_PATH = re.compile(r"^/v1/messages$")
_GEMINI_PATH = re.compile(
    r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:/]+):(?P<method>\w+)$"
)

_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
_OPENAI_ERROR_MESSAGES = {
    401: "Incorrect API key provided: sk-test. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    404: "The model `x` does not exist or you do not have access to it.",
    429: "Rate limit reached for requests. Please try again in 20ms.",
    500: "The server had an error while processing your request. Sorry about that!",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ANTHROPIC_MESSAGES = {
    429: "This request would exceed the rate limit for your organization of 50 requests "
    "per minute.",
    529: "Overloaded",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_GEMINI_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}


class Headers(dict):
    """Request headers; lookups ignore case (keys are stored lower-cased)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes
    json: Any
    protocol: str  # "openai" | "completions" | "azure" | "gemini" | "anthropic" | "unknown"
    model: str | None = None  # the model of the body (OpenAI) or the URL (Gemini)
    deployment: str | None = None  # Azure


@dataclass
class ScriptedResponse:
    """One queued response: a JSON body or a raw / SSE string."""

    body: Any
    status: int = 200
    sse: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep between SSE events


class FakeProviderServer:
    """Threaded HTTP server on 127.0.0.1 (random free port); see the module docstring."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        # Requested → served model names for default OpenAI replies (e.g. "gpt-4o-mini" →
        # "gpt-4o-mini-2024-07-18"); a model not listed is echoed. Cleared by reset().
        self.served_models: dict[str, str] = {}
        self._queue: deque[ScriptedResponse] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Listen on a free port and serve from a daemon thread."""
        handler = type("_Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-provider", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def reset(self) -> None:
        """Forget recorded requests and drop queued responses."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.served_models.clear()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting --------------------------------------------------------------------

    def enqueue(
        self,
        body: Any = None,
        *,
        status: int = 200,
        sse: bool = False,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue the response to the next request (FIFO, any protocol).

        ``body``: a dict/list (sent as JSON) or a str (sent raw; ``sse=True`` sends it as
        ``text/event-stream``). For a non-2xx ``status`` a str or ``None`` body becomes the
        error message inside the provider's real error JSON (a dict is sent verbatim).
        ``delay`` sleeps between SSE events (to let a client abandon a stream mid-way).
        """
        with self._lock:
            self._queue.append(ScriptedResponse(body, status, sse, dict(headers or {}), delay))

    def enqueue_error(self, status: int, message: str | None = None) -> None:
        """Queue an error in the provider's shape (``enqueue(message, status=status)``)."""
        self.enqueue(message, status=status)

    def enqueue_payload(self, name: str) -> None:
        """Queue a recorded real response from ``tests/payloads/``."""
        text = (PAYLOADS_DIR / name).read_text(encoding="utf-8")
        if name.endswith(".sse"):
            self.enqueue(text, sse=True)
        else:
            self.enqueue(json.loads(text))

    @property
    def pending(self) -> int:
        """Number of queued responses not yet served."""
        with self._lock:
            return len(self._queue)

    def _next(self) -> ScriptedResponse | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


# --- default replies --------------------------------------------------------------------


def openai_completion(
    model: str,
    content: str = DEFAULT_TEXT,
    *,
    n: int = 1,
    usage: Mapping[str, Any] | None = None,
    completion_id: str = "chatcmpl-fake",
) -> dict[str, Any]:
    """A ``chat.completion`` body with ``n`` identical choices."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1_750_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": i,
                "finish_reason": "stop",
                "logprobs": None,
                "message": {"role": "assistant", "content": content, "refusal": None},
            }
            for i in range(n)
        ],
        "usage": dict(usage or OPENAI_USAGE),
    }


def openai_chunk(
    model: str,
    choices: list[dict[str, Any]],
    *,
    usage: Mapping[str, Any] | None = None,
    include_usage: bool = False,
    completion_id: str = "chatcmpl-fake",
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``usage`` is null on every chunk but the last
    when the client asked for usage, absent otherwise (as the real API does)."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": 1_750_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    }
    if include_usage or usage is not None:
        chunk["usage"] = dict(usage) if usage is not None else None
    return chunk


def openai_stream_events(
    model: str,
    pieces: Iterable[str] = DEFAULT_STREAM_PIECES,
    *,
    n: int = 1,
    include_usage: bool = False,
    usage: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The chunks of a streamed completion (``n`` choices, optional usage chunk)."""
    pieces = list(pieces)
    events = []
    for i in range(n):
        events.append(
            openai_chunk(
                model,
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
                include_usage=include_usage,
            )
        )
    for piece in pieces:
        for i in range(n):
            events.append(
                openai_chunk(
                    model,
                    [
                        {
                            "index": i,
                            "delta": {"content": piece},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ],
                    include_usage=include_usage,
                )
            )
    for i in range(n):
        events.append(
            openai_chunk(
                model,
                [{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                include_usage=include_usage,
            )
        )
    if include_usage:
        events.append(openai_chunk(model, [], usage=usage or OPENAI_USAGE))
    return events


def sse(events: Iterable[Any], *, done: bool = True) -> str:
    """Encode events (dicts become JSON) as an SSE body; OpenAI ends with ``[DONE]``."""
    out = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out)


def gemini_response(
    model: str,
    text: str = DEFAULT_TEXT,
    *,
    candidates: int = 1,
    usage: Mapping[str, Any] | None = None,
    finish: bool = True,
) -> dict[str, Any]:
    """A ``GenerateContentResponse`` body."""
    cands = []
    for i in range(candidates):
        cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": i}
        if finish:
            cand["finishReason"] = "STOP"
        cands.append(cand)
    return {
        "candidates": cands,
        "usageMetadata": dict(usage or GEMINI_USAGE),
        "modelVersion": model,
        "responseId": "fake-response-id",
    }


def gemini_stream_events(
    model: str,
    pieces: Iterable[str] = DEFAULT_STREAM_PIECES,
    *,
    usage: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Stream chunks with cumulative ``usageMetadata`` (the last holds ``usage``)."""
    pieces = list(pieces)
    final = dict(usage or GEMINI_USAGE)
    prompt, completion = final["promptTokenCount"], final["candidatesTokenCount"]
    thoughts = final.get("thoughtsTokenCount", 0)
    events = []
    for k, piece in enumerate(pieces, start=1):
        last = k == len(pieces)
        so_far = completion if last else completion * k // len(pieces)
        um = (
            dict(final)
            if last
            else {
                **final,
                "candidatesTokenCount": so_far,
                "totalTokenCount": prompt + so_far + thoughts,
            }
        )
        events.append(gemini_response(model, piece, usage=um, finish=last))
    return events


def completion_response(
    model: str,
    prompts: list[str],
    *,
    n: int = 1,
    text: str = DEFAULT_TEXT,
    usage: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A legacy ``text_completion`` body: ``n`` choices per prompt, one usage for all."""
    if usage is None:
        per = COMPLETION_USAGE_PER_PROMPT
        prompt = per["prompt_tokens"] * len(prompts)
        completion = per["completion_tokens"] * len(prompts) * n
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 1_750_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {"text": text, "index": i, "logprobs": None, "finish_reason": "stop"}
            for i in range(len(prompts) * n)
        ],
        "usage": dict(usage),
    }


def completion_stream_events(
    model: str, pieces: Iterable[str] = DEFAULT_STREAM_PIECES, *, include_usage: bool = False
) -> list[dict[str, Any]]:
    """The chunks of a streamed legacy completion of one prompt (optional usage chunk)."""
    pieces = list(pieces)
    base = {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": 1_750_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
    }
    events: list[dict[str, Any]] = [
        {
            **base,
            "choices": [
                {
                    "text": piece,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop" if k == len(pieces) else None,
                }
            ],
        }
        for k, piece in enumerate(pieces, start=1)
    ]
    if include_usage:
        usage = completion_response(model, [""])["usage"]
        events.append({**base, "choices": [], "usage": usage})
    return events


def anthropic_message(
    model: str,
    text: str = DEFAULT_TEXT,
    *,
    usage: Mapping[str, Any] | None = None,
    message_id: str = "msg_fake",
) -> dict[str, Any]:
    """An Anthropic ``message`` body (``usage`` as the API sends it)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": dict(usage or ANTHROPIC_USAGE),
    }


def anthropic_stream_events(
    model: str,
    pieces: Iterable[str] = DEFAULT_STREAM_PIECES,
    *,
    usage: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The events of a streamed message: input usage first, final output usage last."""
    final = dict(usage or ANTHROPIC_USAGE)
    start = anthropic_message(model, usage={**final, "output_tokens": 1})
    start.update(content=[], stop_reason=None)
    # The real message_delta repeats the cumulative counts but not the cache TTL split.
    delta_usage = {
        k: final[k]
        for k in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        )
        if k in final
    }
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            for piece in pieces
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        {"type": "message_stop"},
    ]


def anthropic_sse(events: Iterable[Mapping[str, Any]]) -> str:
    """Encode Anthropic events as SSE: each named by its ``type``, no ``[DONE]``."""
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def _openai_error(status: int, message: str | None) -> dict[str, Any]:
    etype, code = _OPENAI_ERROR_TYPES.get(status, ("api_error", None))
    msg = message or _OPENAI_ERROR_MESSAGES.get(status) or HTTPStatus(status).phrase
    return {"error": {"message": msg, "type": etype, "param": None, "code": code}}


def _azure_error(status: int, message: str | None) -> dict[str, Any]:
    msg = message or (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        "2024-12-01-preview have exceeded token rate limit of your current pricing tier. "
        "Please retry after 1 second."
        if status == 429
        else HTTPStatus(status).phrase
    )
    return {"error": {"code": str(status), "message": msg}}


def _gemini_error(status: int, message: str | None) -> dict[str, Any]:
    msg = message or _GEMINI_MESSAGES.get(status) or HTTPStatus(status).phrase
    return {
        "error": {"code": status, "message": msg, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}
    }


def _anthropic_error(status: int, message: str | None) -> dict[str, Any]:
    msg = message or _ANTHROPIC_MESSAGES.get(status) or HTTPStatus(status).phrase
    return {
        "type": "error",
        "error": {"type": _ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": msg},
    }


_ERROR_BUILDERS = {
    "openai": _openai_error,
    "completions": _openai_error,
    "azure": _azure_error,
    "gemini": _gemini_error,
    "anthropic": _anthropic_error,
    "unknown": _openai_error,
}


# --- HTTP plumbing ------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProviderServer
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' pools expect

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # quiet

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        request = self._read_request()
        self.fake._record(request)
        scripted = self.fake._next()
        try:
            if scripted is not None:
                self._send_scripted(request, scripted)
            else:
                self._send_default(request)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client walked away mid-stream

    def _read_request(self) -> RecordedRequest:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers=Headers(self.headers.items()),
            body=body,
            json=parsed,
            protocol="unknown",
        )
        if m := _AZURE_PATH.match(url.path):
            request.protocol, request.deployment = "azure", m["deployment"]
        elif _OPENAI_PATH.match(url.path):
            request.protocol = "openai"
        elif _COMPLETIONS_PATH.match(url.path):
            request.protocol = "completions"
        elif _ANTHROPIC_PATH.match(url.path):
            request.protocol = "anthropic"
        elif m := _GEMINI_PATH.match(url.path):
            request.protocol, request.model = "gemini", m["model"]
        if request.protocol in ("openai", "completions", "azure", "anthropic") and isinstance(
            parsed, dict
        ):
            request.model = parsed.get("model")
        return request

    # --- responses ---

    def _send_scripted(self, request: RecordedRequest, r: ScriptedResponse) -> None:
        if r.status >= 300 and not isinstance(r.body, dict | list):
            body = _ERROR_BUILDERS[request.protocol](r.status, r.body)
            self._send_json(body, r.status, r.headers)
        elif r.sse:
            self._send_sse(_split_sse(r.body), r.status, r.headers, r.delay)
        elif isinstance(r.body, str):
            self._send_bytes(r.body.encode(), r.status, "text/plain; charset=utf-8", r.headers)
        else:
            self._send_json(r.body, r.status, r.headers)

    def _send_default(self, request: RecordedRequest) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        if request.protocol in ("openai", "azure"):
            requested = body.get("model") or "gpt-4o-mini"
            model = (
                AZURE_SERVED_MODEL
                if request.protocol == "azure"
                else self.fake.served_models.get(requested, requested)
            )
            n = int(body.get("n") or 1)
            if body.get("stream"):
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                events = openai_stream_events(model, n=n, include_usage=include)
                self._send_sse(
                    [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
                )
            else:
                self._send_json(openai_completion(model, n=n))
        elif request.protocol == "completions":
            requested = body.get("model") or "gpt-3.5-turbo-instruct"
            model = self.fake.served_models.get(requested, requested)
            if body.get("stream"):
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                events = completion_stream_events(model, include_usage=include)
                self._send_sse(
                    [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]
                )
            else:
                prompts = body.get("prompt")
                prompts = [prompts] if isinstance(prompts, str) else list(prompts or [""])
                self._send_json(completion_response(model, prompts, n=int(body.get("n") or 1)))
        elif request.protocol == "anthropic":
            requested = body.get("model") or "claude-sonnet-4-5"
            model = self.fake.served_models.get(requested, requested)
            if body.get("stream"):
                self._send_sse(_split_sse(anthropic_sse(anthropic_stream_events(model))))
            else:
                self._send_json(anthropic_message(model))
        elif request.protocol == "gemini":
            assert request.model is not None
            method = self.path.split(":")[-1].split("?")[0]
            if method == "streamGenerateContent":
                events = gemini_stream_events(request.model)
                self._send_sse([f"data: {json.dumps(e)}\r\n\r\n" for e in events])
            else:
                count = int((body.get("generationConfig") or {}).get("candidateCount") or 1)
                self._send_json(gemini_response(request.model, candidates=count))
        else:
            self._send_json(
                {
                    "error": {
                        "message": f"fake provider: no route {request.path}",
                        "type": "invalid_request_error",
                        "code": None,
                        "param": None,
                    }
                },
                404,
            )

    def _send_json(
        self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send_bytes(json.dumps(body).encode(), status, "application/json", headers)

    def _send_bytes(
        self, data: bytes, status: int, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            # Retries the SDK is allowed to make happen at once, never hang a test.
            self.send_header("retry-after-ms", "1")
            self.send_header("retry-after", "0")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_sse(
        self,
        events: list[str],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        for i, event in enumerate(events):
            if i and delay:
                time.sleep(delay)
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _split_sse(text: str) -> list[str]:
    # Keep each event (with its blank-line terminator) as one write, as a server would.
    parts = re.split(r"(?<=\n\n)|(?<=\r\n\r\n)", text)
    return [p for p in parts if p]
