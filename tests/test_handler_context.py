"""UsageHandler in context, with the real SDKs and the fake provider: threads sharing one
handler, state and node names in metadata, LangGraph nodes, ``track_usage``.

Default numbers: OpenAI 12 prompt + 5 completion, Gemini 9 + 6 (``fake_provider``).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TypedDict

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, StateGraph
from support.fake_provider import DEFAULT_TEXT
from support.sdk_support import FLAVOURS, GEMINI, OPENAI, Flavour, only_row, usage_rows

from llm_tracker import UsageHandler, track_usage

pytestmark = pytest.mark.contract

STATE = {
    "user_id": 42,
    "source_type": "task",
    "source_task_id": "celery-uuid",
    "source_path": "/api/foo",
    "metadata": {"doc": "a.pdf"},
}


@pytest.fixture(params=FLAVOURS, ids=[f.name for f in FLAVOURS])
def flavour(request) -> Flavour:
    return request.param


# --- concurrency ---------------------------------------------------------------------------


def test_eight_threads_share_one_handler(app, fake_provider, flavour):
    handler = UsageHandler({"user_id": 5}, node_name="threads", app=app)
    model = flavour.build(fake_provider)
    calls_per_thread = 5
    barrier = threading.Barrier(8)

    def work(i: int) -> int:
        barrier.wait()  # all eight start together
        for k in range(calls_per_thread):
            model.invoke(f"thread {i} call {k}", config={"callbacks": [handler]})
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(work, range(8))) == list(range(8))

    rows = usage_rows(app)
    calls = 8 * calls_per_thread
    assert len(rows) == calls
    assert len({r.run_id for r in rows}) == calls
    assert all(r.success and r.user_id == 5 and r.node_name == "threads" for r in rows)
    assert sum(r.prompt_tokens for r in rows) == calls * flavour.prompt
    assert sum(r.completion_tokens for r in rows) == calls * flavour.completion
    assert sum(r.total_tokens for r in rows) == calls * flavour.total
    assert len(fake_provider.requests) == calls
    assert handler._runs == {}  # per-run state is popped


@pytest.mark.parametrize("write_mode", ["background", "sync"])
def test_a_handler_outside_any_app_context_records_for_its_app(make_app, fake_provider, write_mode):
    # Background mode journals without pushing an app context (a third of a call's cost);
    # sync mode needs one for the database and pushes it.
    app = make_app(LLM_TRACKER_WRITE_MODE=write_mode)
    pushed: list[int] = []
    app.teardown_appcontext(lambda _exc: pushed.append(1))
    handler = UsageHandler({"user_id": 9}, node_name="no-context", app=app)
    OPENAI.build(fake_provider).invoke("hi", config={"callbacks": [handler]})
    assert len(pushed) == (0 if write_mode == "background" else 1)
    row = only_row(app)
    assert (row.user_id, row.node_name, row.prompt_tokens) == (9, "no-context", OPENAI.prompt)
    assert row.cost_usd is not None  # priced with its app's rules


def test_concurrent_async_tasks_share_one_handler(app, fake_provider, flavour):
    handler = UsageHandler({"user_id": 5}, app=app)
    model = flavour.build(fake_provider)

    async def run() -> None:
        await asyncio.gather(
            *(model.ainvoke(f"q{i}", config={"callbacks": [handler]}) for i in range(12))
        )

    asyncio.run(run())
    rows = usage_rows(app)
    assert len(rows) == 12
    assert sum(r.total_tokens for r in rows) == 12 * flavour.total


def test_handler_made_in_app_context_records_from_worker_thread(app, fake_provider):
    with app.app_context():
        handler = UsageHandler({"user_id": 3})  # remembers the current app
    model = OPENAI.build(fake_provider)
    worker = threading.Thread(
        target=model.invoke, args=("hi",), kwargs={"config": {"callbacks": [handler]}}
    )
    worker.start()
    worker.join()
    row = only_row(app)
    assert (row.user_id, row.total_tokens) == (3, 17)


def test_handler_needs_an_app():
    with pytest.raises(RuntimeError, match="app"):
        UsageHandler({})


# --- state and node names -------------------------------------------------------------------


def test_state_and_node_name_in_metadata(app, fake_provider, flavour):
    handler = UsageHandler(STATE, node_name="interpret", app=app)
    flavour.build(fake_provider).invoke("hi", config={"callbacks": [handler]})
    row = only_row(app)
    assert row.user_id == 42
    assert row.node_name == "interpret"
    expected = {
        "doc": "a.pdf",
        "node_name": "interpret",
        "source_type": "task",
        "source_task_id": "celery-uuid",
        "source_path": "/api/foo",
    }
    if flavour.deployment:
        expected["deployment"] = flavour.deployment
    assert row.meta == expected
    assert STATE["metadata"] == {"doc": "a.pdf"}  # the caller's state is not modified


def test_node_name_defaults_to_unknown(app, fake_provider):
    handler = UsageHandler({"user_id": None}, app=app)
    GEMINI.build(fake_provider).invoke("hi", config={"callbacks": [handler]})
    row = only_row(app)
    assert (row.user_id, row.node_name, row.meta) == (None, "unknown", {"node_name": "unknown"})


# --- LangGraph --------------------------------------------------------------------------------


class Doc(TypedDict, total=False):
    text: str
    summary: str
    title: str


def _graph(model):
    def summarise(state: Doc) -> Doc:
        return {"summary": model.invoke(f"Summarise: {state['text']}").content}

    async def title(state: Doc) -> Doc:
        chain = ChatPromptTemplate.from_template("Title for: {s}") | model | StrOutputParser()
        return {"title": await chain.ainvoke({"s": state["summary"]})}

    def title_sync(state: Doc) -> Doc:
        chain = ChatPromptTemplate.from_template("Title for: {s}") | model | StrOutputParser()
        return {"title": chain.invoke({"s": state["summary"]})}

    builder = StateGraph(Doc)
    builder.add_node("summarise", summarise)
    builder.add_node("title", title_sync)
    builder.add_edge(START, "summarise")
    builder.add_edge("summarise", "title")
    builder.add_edge("title", END)
    sync_graph = builder.compile()

    abuilder = StateGraph(Doc)
    abuilder.add_node("summarise", summarise)
    abuilder.add_node("title", title)
    abuilder.add_edge(START, "summarise")
    abuilder.add_edge("summarise", "title")
    abuilder.add_edge("title", END)
    return sync_graph, abuilder.compile()


def test_langgraph_node_becomes_node_name(app, fake_provider, flavour):
    graph, _ = _graph(flavour.build(fake_provider))
    handler = UsageHandler({"user_id": 9}, app=app)
    out = graph.invoke({"text": "long text"}, config={"callbacks": [handler]})
    assert out["title"] == DEFAULT_TEXT
    rows = usage_rows(app)
    assert sorted(r.node_name for r in rows) == ["summarise", "title"]  # one row per model run
    assert sorted(r.meta["node_name"] for r in rows) == ["summarise", "title"]
    assert sum(r.total_tokens for r in rows) == 2 * flavour.total


def test_langgraph_async_node_names(app, fake_provider):
    _, agraph = _graph(OPENAI.build(fake_provider))
    handler = UsageHandler({}, app=app)
    asyncio.run(agraph.ainvoke({"text": "long text"}, config={"callbacks": [handler]}))
    assert sorted(r.node_name for r in usage_rows(app)) == ["summarise", "title"]


def test_explicit_node_name_wins_over_langgraph(app, fake_provider):
    graph, _ = _graph(OPENAI.build(fake_provider))
    handler = UsageHandler({}, node_name="explicit", app=app)
    graph.invoke({"text": "long text"}, config={"callbacks": [handler]})
    assert [r.node_name for r in usage_rows(app)] == ["explicit", "explicit"]


# --- track_usage -------------------------------------------------------------------------------


def test_track_usage_tracks_calls_without_callbacks_and_stops(app, fake_provider, flavour):
    model = flavour.build(fake_provider)
    chain = ChatPromptTemplate.from_template("{q}") | model | StrOutputParser()
    with track_usage({"user_id": 7, "source_type": "api"}, node_name="ingest", app=app) as h:
        assert isinstance(h, UsageHandler)
        model.invoke("one")
        assert chain.invoke({"q": "two"}) == DEFAULT_TEXT
        list(model.stream("three"))
        asyncio.run(model.ainvoke("four"))
    rows = usage_rows(app)
    assert len(rows) == 4
    assert all(
        (r.user_id, r.node_name, r.meta["source_type"]) == (7, "ingest", "api") for r in rows
    )
    assert sum(r.total_tokens for r in rows) == 4 * flavour.total

    model.invoke("after the block")
    chain.invoke({"q": "after"})
    assert len(usage_rows(app)) == 4
    assert len(fake_provider.requests) == 6


def test_track_usage_in_app_context_and_langgraph(app, app_ctx, fake_provider):
    graph, _ = _graph(GEMINI.build(fake_provider))
    with track_usage({"user_id": 8}):
        graph.invoke({"text": "long text"})
    rows = usage_rows(app)
    assert sorted((r.user_id, r.node_name) for r in rows) == [(8, "summarise"), (8, "title")]


def test_track_usage_with_the_same_handler_passed_counts_once(app, fake_provider):
    model = OPENAI.build(fake_provider)
    with track_usage({"user_id": 1}, app=app) as handler:
        model.invoke("hi", config={"callbacks": [handler]})
    assert only_row(app).total_tokens == 17


def test_nested_track_usage_inner_block_wins(app, fake_provider):
    model = OPENAI.build(fake_provider)
    with track_usage({"user_id": 1}, node_name="outer", app=app):
        with track_usage({"user_id": 2}, node_name="inner", app=app):
            model.invoke("inner call")
        model.invoke("outer call")
    rows = usage_rows(app)
    assert sorted((r.user_id, r.node_name) for r in rows) == [(1, "outer"), (2, "inner")]
