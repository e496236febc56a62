"""The dashboard in a real browser: Playwright drives Debian's Chromium against the app
served on 127.0.0.1 by the test, and every number on screen is checked against the API.

Without /usr/bin/chromium (or the browser at ``LLM_TRACKER_CHROMIUM``) these tests skip
with the reason; with ``LLM_TRACKER_REQUIRE_BROWSER=1`` (CI, see .ci/run) they fail instead.
``LLM_TRACKER_SCREENSHOTS=DIR`` writes the README's screenshots into DIR.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

import pytest
from conftest import ADMIN_PASSWORD, create_test_user
from support.helpers import free_port
from werkzeug.serving import make_server

from admin_app.demo import create_demo_rows
from llm_tracker import record_usage
from llm_tracker.database import utcnow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LLM_TRACKER_CHROMIUM") or "/usr/bin/chromium"
ZONE = "Asia/Kathmandu"  # +05:45: a wrong bucket edge or date shows at once
CARD_KEYS = [
    "total_calls",
    "successful_calls",
    "failed_calls",
    "total_prompt_tokens",
    "total_completion_tokens",
    "total_cached_tokens",
    "total_reasoning_tokens",
    "total_tokens",
    "total_cost_usd",
    "cache_savings_usd",
    "unpriced_calls",
]
MONEY = {"total_cost_usd", "cache_savings_usd"}


# --- browser and server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium; module-scoped so Playwright's event loop is gone before
    other modules run their own asyncio code."""
    if not os.path.exists(CHROMIUM):
        reason = f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("LLM_TRACKER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and LLM_TRACKER_REQUIRE_BROWSER=1 forbids skipping")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield browser
        browser.close()


# Reports every Content-Security-Policy violation of every document to the test. Init
# scripts and bindings come from the browser's debugging protocol, which the page's policy
# does not govern, so the watcher itself can never be refused.
CSP_WATCHER = """document.addEventListener("securitypolicyviolation", (e) =>
    window.__cspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} `
                          + `at ${e.sourceFile}:${e.lineNumber}`));"""
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


class Watch:
    """What went wrong in a browser context: script errors, CSP violations (events and
    console reports), and responses of the app served without the security headers."""

    def __init__(self, context):
        self.errors: list[str] = []
        self.violations: list[str] = []
        self.unprotected: list[str] = []
        self.responses = 0
        context.on("weberror", lambda e: self.errors.append(str(e.error)))
        context.expose_binding("__cspViolation", lambda _source, text: self.violations.append(text))
        context.add_init_script(CSP_WATCHER)
        context.on("console", self._console)
        context.on("response", self._response)

    def _console(self, message):
        if "Content Security Policy" in message.text:
            self.violations.append(f"console: {message.text}")

    def _response(self, response):
        if not response.url.startswith("http://127.0.0.1:"):
            return
        self.responses += 1
        headers = response.headers
        if {name: headers.get(name) for name in HEADERS} != HEADERS:
            self.unprotected.append(f"{response.status} {response.url}")

    def check(self):
        assert self.errors == [], "JavaScript errors on the pages"
        assert self.violations == [], "Content-Security-Policy violations"
        assert self.unprotected == [], "responses without the security headers"
        assert self.responses > 0


def new_context(browser, **options):
    context = browser.new_context(
        timezone_id=ZONE, locale="en-US", viewport={"width": 1280, "height": 900}, **options
    )
    context.set_default_timeout(15_000)
    context.watch = Watch(context)
    return context


@pytest.fixture
def context(browser):
    context = new_context(browser, accept_downloads=True)
    yield context
    context.close()
    context.watch.check()


class LiveServer:
    """The app on 127.0.0.1 at a free port, served by werkzeug in a thread."""

    def __init__(self, app):
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._thread.join(10)


@pytest.fixture
def serve():
    servers = []

    def start(app):
        servers.append(LiveServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def site(app, serve):
    """Users admin, alice, bob; 150 demo rows over the last 30 days plus 3 unpriced ones."""
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    alice = create_test_user(app, "alice", "pw-alice-1")
    bob = create_test_user(app, "bob", "pw-bob-1")
    with app.app_context():
        create_demo_rows([alice, bob], count=150, seed=11)
        now = utcnow()
        for days, user in ((1, alice), (2, None), (5, alice)):
            record_usage(
                "acme-llm-7",
                prompt_tokens=400,
                completion_tokens=100,
                user_id=user,
                metadata={"doc": "a.pdf"},
                node_name="summarise",
                created_at=now - timedelta(days=days, minutes=7),
            )
    return serve(app)


# --- helpers --------------------------------------------------------------------------------


def usd(text: str | None) -> str:
    """What the pages show for a money string (README, Dashboard): four decimals, half up,
    thousands grouped; <$0.0001 for a non-zero amount that rounds to nothing."""
    if text is None:
        return "unpriced"
    value = Decimal(text)
    rounded = value.quantize(Decimal("0.0001"), ROUND_HALF_UP)
    if rounded == 0 and value != 0:
        return "<$0.0001"
    return f"{'-' if rounded < 0 else ''}${abs(rounded):,}"


MONEY_CASES = [
    "0.007215000",
    "0.000049999",
    "0.000050000",
    "0",
    "0.000000000",
    "1.31",
    "0.6915",
    "1234.5650",
    "1234.56549",
    "0.99995",
    "-0.0125",
    "0.1",
    "12",
    "1234567.000049999",
    None,
]


def test_usd_rounding_rule():
    assert [usd(x) for x in MONEY_CASES] == [
        "$0.0072",
        "<$0.0001",
        "$0.0001",
        "$0.0000",
        "$0.0000",
        "$1.3100",
        "$0.6915",
        "$1,234.5650",
        "$1,234.5655",
        "$1.0000",
        "-$0.0125",
        "$0.1000",
        "$12.0000",
        "$1,234,567.0000",
        "unpriced",
    ]


def settle(page, action=None):
    """Do ``action`` and wait until the page has finished the data load it started, on this
    document (filters, history) or on a new one (links, reloads)."""
    loads = int(page.get_attribute("body", "data-loads") or 0)
    page.evaluate("window.__sameDocument = true")
    if action is not None:
        action()
    page.wait_for_function(f"""() => Number(document.body.dataset.loads || 0)
        > (window.__sameDocument ? {loads} : 0)""")


def api(browser_page, base, path, **params):
    """The admin API's answer, fetched with the page's session cookie."""
    response = browser_page.request.get(f"{base}/api/v1/admin/{path}", params=params)
    return response.status, response.json()


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def log_in(context, base, path="/", password=ADMIN_PASSWORD):
    page = context.new_page()
    page.goto(f"{base}{path}")
    assert urlsplit(page.url).path == "/login"
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", password)
    settle(page, lambda: page.click("button[type=submit]"))
    assert page.url == f"{base}{path}"
    return page


def assert_cards(page, summary):
    for key in CARD_KEYS:
        value = page.locator(f'.card[data-key="{key}"] .value')
        expected = usd(summary[key]) if key in MONEY else f"{summary[key]:,}"
        assert value.text_content() == expected, key
        raw = "null" if summary[key] is None else str(summary[key])
        assert value.get_attribute("data-value") == raw, key
        if key in MONEY:  # hovering shows the exact amount
            title = "" if summary[key] is None else f"${summary[key]} exactly"
            assert page.get_attribute(f'.card[data-key="{key}"]', "title") == title, key


def chart_data(page):
    return page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById('chart'));
        return chart ? {labels: chart.data.labels,
                        data: chart.data.datasets.map(d => d.data)} : null;
    }""")


def assert_chart(page, series, granularity):
    cut = {"day": slice(5, 16), "month": slice(0, 10), "year": slice(0, 7)}[granularity]
    data = chart_data(page)
    labels = [b["bucket"][cut].replace("T", " ") for b in series]
    assert data["labels"] == labels
    assert data["data"][0] == [b["total_prompt_tokens"] for b in series]
    assert data["data"][1] == [b["total_completion_tokens"] for b in series]
    assert data["data"][2] == [
        None if b["total_cost_usd"] is None else float(b["total_cost_usd"]) for b in series
    ]
    assert page.is_visible("#chart") and page.is_hidden("#chart-empty")


def assert_chart_money(page, series):
    """The cost axis and the tooltips show money by the same rule as the cards."""
    ticks = page.evaluate("""() => Chart.getChart(document.getElementById('chart'))
        .scales.y1.ticks.map(t => [t.value, t.label])""")
    labels = [label for _, label in ticks]
    assert len(ticks) >= 2 and len(set(labels)) == len(labels), ticks
    assert labels == [usd(f"{value:.6f}") for value, _ in ticks]
    assert all(re.fullmatch(r"\$\d[\d,]*\.\d{4}", label) for label in labels), labels
    i = next(i for i, b in enumerate(series) if b["total_cost_usd"] not in (None, "0.000000000"))
    lines = page.evaluate(
        """(i) => {
        const chart = Chart.getChart(document.getElementById('chart'));
        chart.tooltip.setActiveElements([0, 1, 2].map(d => ({datasetIndex: d, index: i})),
                                        {x: 0, y: 0});
        chart.update();
        return chart.tooltip.body.flatMap(b => b.lines);
    }""",
        i,
    )
    b = series[i]
    assert lines == [
        f"Prompt tokens: {b['total_prompt_tokens']:,}",
        f"Completion tokens: {b['total_completion_tokens']:,}",
        f"Cost: {usd(b['total_cost_usd'])}",
    ]


def assert_by_model(page, by_model):
    rows = page.locator("#by-model tbody tr")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.model)") == [m["model"] for m in by_model]
    cells = rows.evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert cells == [
        [
            m["model"],
            f"{m['total_calls']:,}",
            f"{m['total_prompt_tokens']:,}",
            f"{m['total_completion_tokens']:,}",
            f"{m['total_cached_tokens']:,}",
            f"{m['total_reasoning_tokens']:,}",
            f"{m['total_tokens']:,}",
            usd(m["total_cost_usd"]),
            f"{m['unpriced_calls']:,}",
        ]
        for m in by_model
    ]


def usage_rows(page):
    return page.locator("#usage tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)")


# --- the dashboard -------------------------------------------------------------------------


@pytest.mark.browser
def test_dashboard_cards_chart_and_table_equal_the_api(context, site):
    page = log_in(context, site.url)
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert ZoneInfo(zone).key in (ZONE, "Asia/Katmandu")  # Chromium's ICU keeps the old name
    assert page.input_value("input[name=tz]") == zone
    assert page.input_value("select[name=granularity]") == "month"

    status, stats = api(page, site.url, "token-stats/", granularity="month", tz=zone)
    assert status == 200 and stats["summary"]["total_calls"] == 153
    assert stats["summary"]["unpriced_calls"] == 3
    assert_cards(page, stats["summary"])
    assert_chart(page, stats["series"], "month")
    assert_chart_money(page, stats["series"])
    assert len(stats["series"]) == 31
    assert_by_model(page, stats["by_model"])
    assert page.text_content("#chart-caption") == f"daily, the last 31 days, {zone}"
    assert page.text_content("#status") == ""
    unpriced = page.locator('#by-model tr[data-model="acme-llm-7"] td').nth(7)
    assert unpriced.text_content() == "unpriced"

    # Granularity: the URL follows, the chart gets the API's hourly buckets.
    settle(page, lambda: page.select_option("select[name=granularity]", "day"))
    assert query(page) == {"granularity": ["day"], "tz": [zone]}
    _, day = api(page, site.url, "token-stats/", granularity="day", tz=zone)
    assert len(day["series"]) in (24, 25)  # the current hour and the 23 before it
    assert_chart(page, day["series"], "day")
    if any(b["total_cost_usd"] not in (None, "0.000000000") for b in day["series"]):
        assert_chart_money(page, day["series"])
    assert_cards(page, day["summary"])  # no dates: totals are all time either way

    # A date range and a user: cards, chart and table follow, all in the browser's zone.
    today = datetime.now(ZoneInfo(zone)).date()
    start, end = str(today - timedelta(days=9)), str(today - timedelta(days=1))
    settle(page, lambda: page.select_option("select[name=granularity]", "month"))
    settle(page, lambda: page.fill("input[name=start_date]", start))
    settle(page, lambda: page.fill("input[name=end_date]", end))
    alice = page.locator("select[name=user_id] option", has_text="alice").get_attribute("value")
    settle(page, lambda: page.select_option("select[name=user_id]", alice))
    assert query(page) == {
        "granularity": ["month"],
        "start_date": [start],
        "end_date": [end],
        "tz": [zone],
        "user_id": [alice],
    }
    _, ranged = api(
        page,
        site.url,
        "token-stats/",
        granularity="month",
        tz=zone,
        start_date=start,
        end_date=end,
        user_id=alice,
    )
    assert 0 < ranged["summary"]["total_calls"] < 153
    assert_cards(page, ranged["summary"])
    assert_chart(page, ranged["series"], "month")
    assert [b["bucket"][:10] for b in ranged["series"]][::8] == [start, end]
    assert_by_model(page, ranged["by_model"])
    assert page.text_content("#range-note") == f"Totals for {start} to {end}, {zone}."

    # The URL is the view: a reload shows the same numbers.
    settle(page, page.reload)
    assert page.input_value("input[name=start_date]") == start
    assert page.input_value("select[name=user_id]") == alice
    assert_cards(page, ranged["summary"])

    # Back to the previous filters with the browser's back button.
    settle(page, page.go_back)
    assert query(page) == {
        "granularity": ["month"],
        "start_date": [start],
        "end_date": [end],
        "tz": [zone],
    }
    assert page.input_value("select[name=user_id]") == ""


@pytest.mark.browser
def test_dashboard_error_and_expired_session(context, site):
    page = log_in(context, site.url)
    zone = page.input_value("input[name=tz]")

    # An API error: the API's own message, and no stale or blank chart.
    settle(page, lambda: page.fill("input[name=end_date]", "2026-01-01"))
    settle(page, lambda: page.fill("input[name=start_date]", "2026-02-01"))
    status, error = api(
        page,
        site.url,
        "token-stats/",
        granularity="month",
        tz=zone,
        start_date="2026-02-01",
        end_date="2026-01-01",
    )
    assert status == 400
    assert page.text_content("#status .message") == error["error"]
    assert page.text_content("#status") == f"Error from the API: {error['error']}"
    assert page.is_hidden("#cards") and page.is_hidden("#chart") and page.is_hidden("#by-model")
    assert page.text_content("#chart-empty") == (
        "No chart: the data could not be loaded (see the message above)."
    )
    assert page.text_content("#by-model-empty") == "No table: the data could not be loaded."

    # A bad time zone typed by hand: also the API's message.
    page.fill("input[name=start_date]", "")
    settle(page, lambda: page.fill("input[name=end_date]", ""))
    page.fill("input[name=tz]", "Mars/Olympus")
    settle(page, lambda: page.press("input[name=tz]", "Enter"))
    status, error = api(page, site.url, "token-stats/", granularity="month", tz="Mars/Olympus")
    assert status == 400 and "Mars/Olympus" in error["error"]
    assert page.text_content("#status .message") == error["error"]

    # Reset brings the data back.
    settle(page, lambda: page.click("[data-action=reset]"))
    assert page.url == f"{site.url}/"
    assert page.is_visible("#chart") and page.text_content("#status") == ""

    # The session ends elsewhere (another tab logs out): a clear message and a way back.
    assert page.text_content(".topbar .who") == "Logged in as admin · Log out"
    assert page.request.post(f"{site.url}/api/v1/auth/logout").ok
    settle(page, lambda: page.select_option("select[name=granularity]", "year"))
    assert page.text_content("#status") == (
        "Your session has expired. Log in again to see this page."
    )
    link = page.locator("#status a")
    here = f"/?granularity=year&tz={quote(zone, safe='')}"
    assert link.get_attribute("href") == f"/login?next={quote(here, safe='')}"
    # ...and the top bar no longer claims a session.
    assert page.text_content(".topbar .who") == "Not logged in · Log in"
    assert page.get_attribute(".topbar .who a", "href") == link.get_attribute("href")
    assert page.is_hidden("#chart")
    link.click()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    settle(page, lambda: page.click("button[type=submit]"))
    assert query(page) == {"granularity": ["year"], "tz": [zone]}
    _, year = api(page, site.url, "token-stats/", granularity="year", tz=zone)
    assert len(year["series"]) == 12
    assert_chart(page, year["series"], "year")


@pytest.mark.browser
def test_model_links_open_exactly_that_model(context, app, serve):
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    with app.app_context():
        now = utcnow()
        for i, model in enumerate(
            [
                "gpt-4o-mini",
                "gpt-4o-mini-2024-07-18",
                "gpt-4o-mini-2024-07-18",
                "GPT-4O-MINI",
                "gpt-4o",
                "gpt-4o",
                "gpt-4o",
            ]
        ):
            record_usage(
                model,
                prompt_tokens=100,
                completion_tokens=10,
                created_at=now - timedelta(hours=i + 1),
            )
    site = serve(app)
    page = log_in(context, site.url)
    zone = page.input_value("input[name=tz]")
    _, substring = api(page, site.url, "llm-usage/", model="gpt-4o-mini", tz=zone)
    assert substring["total"] == 4  # what the links used to open for a model of one call

    link = page.locator('#by-model tr[data-model="gpt-4o-mini"] a')
    settle(page, link.click)
    assert urlsplit(page.url).path == "/usage"
    assert query(page) == {"tz": [zone], "model_exact": ["gpt-4o-mini"]}
    _, exact = api(page, site.url, "llm-usage/", model_exact="gpt-4o-mini", tz=zone)
    assert exact["total"] == 1
    assert usage_rows(page) == [r["id"] for r in exact["results"]]
    assert page.text_content("#page-info") == "Page 1 of 1 · 1 rows"
    assert page.text_content("#model-exact code") == "gpt-4o-mini"
    assert page.is_visible("#model-exact") and page.input_value("input[name=model]") == ""
    assert page.get_attribute("#export", "href") == (
        f"/api/v1/admin/llm-usage/export.csv?tz={quote(zone, safe='')}&model_exact=gpt-4o-mini"
    )

    # Other filters keep the exact model; the chip's button drops it.
    settle(page, lambda: page.select_option("select[name=success]", "true"))
    assert query(page)["model_exact"] == ["gpt-4o-mini"]
    assert page.text_content("#page-info") == "Page 1 of 1 · 1 rows"
    settle(page, lambda: page.click("[data-action=clear-model-exact]"))
    assert "model_exact" not in query(page)
    assert page.is_hidden("#model-exact")
    assert page.text_content("#page-info") == "Page 1 of 1 · 7 rows"

    # Every model of the table links to its own rows, and only those.
    settle(page, lambda: page.goto(f"{site.url}/"))
    _, stats = api(page, site.url, "token-stats/", tz=zone)
    for entry in stats["by_model"]:
        href = page.get_attribute(f'#by-model tr[data-model="{entry["model"]}"] a', "href")
        assert parse_qs(urlsplit(href).query)["model_exact"] == [entry["model"]]
        _, listed = api(page, site.url, "llm-usage/", model_exact=entry["model"], tz=zone)
        assert listed["total"] == entry["total_calls"]
    assert sorted(e["total_calls"] for e in stats["by_model"]) == [1, 1, 2, 3]


@pytest.mark.browser
def test_pages_hold_the_content_security_policy(context, site):
    """Every page works under the policy, and a violation would be caught: a script the
    page tries to run inline is refused and reported."""
    page = log_in(context, site.url)
    response = page.request.get(f"{site.url}/")
    assert {name: response.headers[name] for name in HEADERS} == HEADERS
    _, listing = api(page, site.url, "llm-usage/", page_size=1)
    for path in (
        "/usage",
        "/usage?priced=false",
        "/?granularity=day",
        f"/usage/{listing['results'][0]['id']}",
        "/usage/no-such-row",
    ):
        settle(page, lambda path=path: page.goto(f"{site.url}{path}"))
    page.goto(f"{site.url}/logout")  # to the login form
    assert urlsplit(page.url).path == "/login"
    assert context.watch.violations == []
    assert context.watch.responses >= 10  # pages, scripts, styles and API answers

    page.evaluate("""() => {
        const script = document.createElement('script');
        script.textContent = 'window.__inlineRan = true';
        document.body.append(script);
        document.body.setAttribute('style', 'color: red');
    }""")
    page.wait_for_function("() => true")  # one more task: the events are queued
    for _ in range(50):
        if len(context.watch.violations) >= 2:
            break
        page.wait_for_timeout(50)
    assert page.evaluate("window.__inlineRan") is None
    assert page.evaluate("getComputedStyle(document.body).color") != "rgb(255, 0, 0)"
    directives = sorted(
        {v.split()[0] for v in context.watch.violations if not v.startswith("console:")}
    )
    assert directives == ["script-src-elem", "style-src-attr"]
    # Chromium's console report of the same refusals is caught too.
    assert any(
        v.startswith("console: Executing inline script violates") for v in context.watch.violations
    ), context.watch.violations
    context.watch.violations.clear()  # caught on purpose: the fixture checks for others


# --- the usage list, export and detail ----------------------------------------------------


@pytest.mark.browser
def test_usage_table_filters_export_and_detail(context, site):
    page = log_in(context, site.url, "/usage")
    zone = page.input_value("input[name=tz]")
    _, listing = api(page, site.url, "llm-usage/", tz=zone)
    assert listing["total"] == 153
    assert usage_rows(page) == [r["id"] for r in listing["results"]]
    assert page.text_content("#page-info") == "Page 1 of 8 · 153 rows"
    first = listing["results"][0]
    cells = page.locator("#usage tbody tr").first.locator("td").all_text_contents()
    local = datetime.fromisoformat(first["created_at"]).astimezone(ZoneInfo(zone))
    assert cells[0] == local.strftime("%Y-%m-%d %H:%M:%S")
    assert cells[2:4] == [first["model"], first["node_name"]]
    assert cells[7] == usd(first["cost_usd"])

    # Filters go into the URL; the table is the API's answer for them.
    page.fill("input[name=model]", "GPT-4O")
    settle(page, lambda: page.select_option("select[name=success]", "true"))
    assert query(page) == {
        "model": ["GPT-4O"],
        "success": ["true"],
        "tz": [zone],
        "page_size": ["20"],
    }
    _, gpt = api(page, site.url, "llm-usage/", model="GPT-4O", success="true", tz=zone)
    assert gpt["total"] > 20
    assert usage_rows(page) == [r["id"] for r in gpt["results"]]
    assert page.get_attribute("#export", "href") == (
        f"/api/v1/admin/llm-usage/export.csv?model=GPT-4O&success=true&tz={quote(zone, safe='')}"
    )

    # Paging keeps the filters.
    settle(page, lambda: page.click("#next"))
    assert query(page)["page"] == ["2"] and query(page)["model"] == ["GPT-4O"]
    _, gpt2 = api(page, site.url, "llm-usage/", model="GPT-4O", success="true", tz=zone, page=2)
    assert usage_rows(page) == [r["id"] for r in gpt2["results"]]
    pages = -(-gpt["total"] // 20)
    assert page.text_content("#page-info") == f"Page 2 of {pages} · {gpt['total']} rows"

    # A bookmark of this view shows it again.
    bookmark = page.url
    other = context.new_page()
    settle(other, lambda: other.goto(bookmark))
    assert other.input_value("input[name=model]") == "GPT-4O"
    assert other.input_value("select[name=success]") == "true"
    assert usage_rows(other) == [r["id"] for r in gpt2["results"]]
    other.close()

    # Export: one CSV line per row of the filtered list, under a header.
    with page.expect_download() as download:
        page.click("#export")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][:5] == ["id", "created_at", "user_id", "username", "model"]
    _, every = api(
        page, site.url, "llm-usage/", model="GPT-4O", success="true", tz=zone, page_size=200
    )
    assert [row[0] for row in table[1:]] == [r["id"] for r in every["results"]]
    assert len(table) == 1 + gpt["total"]

    # Unpriced rows only: cost reads "unpriced", not $0.
    page.fill("input[name=model]", "")
    page.select_option("select[name=success]", "")
    settle(page, lambda: page.select_option("select[name=priced]", "false"))
    assert query(page) == {"priced": ["false"], "tz": [zone], "page_size": ["20"]}
    _, unpriced = api(page, site.url, "llm-usage/", priced="false", tz=zone)
    assert unpriced["total"] == 3
    assert usage_rows(page) == [r["id"] for r in unpriced["results"]]
    assert page.locator("#usage tbody td:nth-child(8)").all_text_contents() == ["unpriced"] * 3
    assert page.get_attribute("#next", "aria-disabled") == "true"

    # Detail: every field, metadata included, read-only.
    row = unpriced["results"][0]
    settle(page, lambda: page.locator("#usage tbody tr").first.locator("a").click())
    assert page.url == f"{site.url}/usage/{row['id']}?tz={quote(zone, safe='')}"
    _, detail = api(page, site.url, f"llm-usage/{row['id']}/")
    assert detail == row

    def field(key):
        return page.text_content(f'#fields [data-key="{key}"] dd')

    assert field("id") == row["id"]
    local = datetime.fromisoformat(row["created_at"]).astimezone(ZoneInfo(zone))
    assert field("created_at") == (f"{local:%Y-%m-%d %H:%M:%S} {zone} ({row['created_at']})")
    assert field("model") == "acme-llm-7"
    assert field("node_name") == "summarise"
    assert field("cost_usd") == "unpriced"
    assert field("prompt_tokens") == "400"
    assert field("success") == "succeeded"
    assert field("username") == (f"alice (#{row['user_id']})" if row["user_id"] else "—")
    assert json.loads(page.text_content("#metadata")) == row["metadata"]
    assert row["metadata"]["doc"] == "a.pdf"
    assert page.locator("#detail input, #detail button, #detail form").count() == 0
    # Back to the filtered list it came from.
    assert page.get_attribute("#back", "href") == (
        f"{site.url}/usage?priced=false&tz={quote(zone, safe='')}&page_size=20"
    )

    # A priced row: money by the pages' one rule, the exact amount on hover.
    priced = next(r for r in listing["results"] if r["cost_usd"] not in (None, "0.000000000"))
    settle(page, lambda: page.goto(f"{site.url}/usage/{priced['id']}"))
    for key in ("cost_usd", "input_cost_usd", "output_cost_usd", "cache_savings_usd"):
        assert field(key) == usd(priced[key]), key
        assert page.get_attribute(f'#fields [data-key="{key}"] dd', "title") == (
            f"${priced[key]} exactly"
        ), key
    assert field("price_source") == priced["price_source"]

    # The detail shows the time in the zone the list was showing, not the browser's.
    settle(page, lambda: page.goto(f"{site.url}/usage?priced=true&tz=America/New_York"))
    _, new_york = api(page, site.url, "llm-usage/", priced="true", tz="America/New_York")
    first = new_york["results"][0]
    local = datetime.fromisoformat(first["created_at"]).astimezone(ZoneInfo("America/New_York"))
    cell = page.locator("#usage tbody tr").first.locator("td").first
    assert cell.text_content() == f"{local:%Y-%m-%d %H:%M:%S}"
    settle(page, lambda: cell.locator("a").click())
    assert page.url == f"{site.url}/usage/{first['id']}?tz=America%2FNew_York"
    assert field("created_at") == (
        f"{local:%Y-%m-%d %H:%M:%S} America/New_York ({first['created_at']})"
    )
    assert page.get_attribute("#back", "href") == (
        f"{site.url}/usage?priced=true&tz=America/New_York"
    )

    # An unknown id: the API's 404 message.
    settle(page, lambda: page.goto(f"{site.url}/usage/no-such-row"))
    _, missing = api(page, site.url, "llm-usage/no-such-row/")
    assert page.text_content("#status .message") == missing["error"]
    assert page.is_hidden("#detail")


@pytest.mark.browser
def test_empty_database_says_so(context, app, serve):
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    site = serve(app)
    page = log_in(context, site.url)
    zone = page.input_value("input[name=tz]")
    assert page.text_content("#status").startswith("No LLM calls recorded yet.")
    assert page.text_content('.card[data-key="total_calls"] .value') == "0"
    assert page.text_content('.card[data-key="total_cost_usd"] .value') == "$0.0000"
    assert page.is_hidden("#chart-box")
    assert page.text_content("#chart-empty") == (
        f"No calls in this period (daily, the last 31 days, {zone})."
    )
    assert page.text_content("#by-model-empty") == "No calls, so no models."

    settle(page, lambda: page.select_option("select[name=user_id]", "1"))
    assert page.text_content("#status") == "No calls match these filters."

    settle(page, lambda: page.goto(f"{site.url}/usage"))
    assert page.text_content("#usage-empty") == "No LLM calls recorded yet."
    assert page.is_hidden("#usage") and page.is_hidden("#pager")
    page.fill("input[name=model]", "nothing")
    settle(page, lambda: page.press("input[name=model]", "Enter"))
    assert page.text_content("#usage-empty") == "No rows match these filters."


@pytest.mark.browser
def test_non_admin_sees_the_403_page(context, app, serve):
    create_test_user(app, "alice", "pw-alice-1")
    site = serve(app)
    page = context.new_page()
    page.goto(f"{site.url}/usage")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw-alice-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/usage")
    assert page.text_content("h1") == "403 · Forbidden"
    assert page.locator("nav a").count() == 0


# --- `make run` with demo data, and the README's screenshots ------------------------------


@pytest.mark.slow
@pytest.mark.browser
def test_make_run_flow_shows_demo_data(browser, tmp_path):
    """What `make run` does, in a fresh instance folder; then log in with the printed
    password and see the demo rows. Also takes the README's screenshots."""
    env = {**os.environ, "LLM_TRACKER_INSTANCE_PATH": str(tmp_path / "instance")}
    env.pop("DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    for command in (["db", "upgrade"], ["bootstrap"]):
        done = subprocess.run(
            [*flask, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    password = re.search(r"password: (\S+)", done.stdout).group(1)

    port = free_port()
    server = subprocess.Popen(
        [*flask, "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("LLM_TRACKER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    context = new_context(browser)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/login").close()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        page = log_in(context, base, password=password)
        assert page.text_content('.card[data-key="total_calls"] .value') == "400"
        zone = page.input_value("input[name=tz]")
        _, stats = api(page, base, "token-stats/", granularity="month", tz=zone)
        assert_cards(page, stats["summary"])
        assert_chart(page, stats["series"], "month")
        assert len(stats["by_model"]) == 4
        page.screenshot(path=shots / "dashboard.png", full_page=True)

        settle(page, lambda: page.click("nav >> text=Usage"))
        assert page.text_content("#page-info") == "Page 1 of 20 · 400 rows"
        page.screenshot(path=shots / "usage.png", full_page=True)
    finally:
        context.close()
        server.terminate()
        server.wait(timeout=10)
    context.watch.check()
    for name in ("dashboard.png", "usage.png"):
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
