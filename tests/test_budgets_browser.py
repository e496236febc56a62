"""The budgets page and the budget-alert banner in a real browser (Debian Chromium driven
by Playwright, as in test_dashboard_browser.py, whose server and browser fixtures these
tests share): every figure on a card is the API's, the form adds, changes and removes
budgets through the API, the banner says which budget crossed what, in English and in
Simplified Chinese, on a desktop and on a 390 px phone, under the Content-Security-Policy.

``LLM_TRACKER_SCREENSHOTS=DIR`` writes docs/screenshots/budgets.png's picture into DIR.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import test_dashboard_browser as dash
from conftest import ADMIN_PASSWORD, create_test_user
from support.sdk_support import openai_model
from test_dashboard_browser import (
    EN,
    HEADERS,
    PHONE,
    ZH,
    ZONE,
    local_time,
    log_in,
    new_context,
    num,
    settle,
    usd,
)

from llm_tracker import BudgetExceeded, UsageHandler, flush, record_usage
from llm_tracker.budget_admin import create_budget
from llm_tracker.database import utcnow

# The dashboard tests' fixtures: one Chromium per module, a context that fails the test on
# any script error or CSP violation, and the app served on 127.0.0.1.
browser = dash.browser
context = dash.context
serve = dash.serve

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings(
        r"ignore:unclosed (<socket\.socket |transport <_SelectorSocketTransport )"
        ":ResourceWarning"
    ),
]

# gpt-4o-2024-11-20 at $2.50 / $10 per million tokens: 2,000 + 500 tokens cost $0.01.
MODEL = "gpt-4o-2024-11-20"
CENT = {"prompt_tokens": 2_000, "completion_tokens": 500}


def spend(user_id, cents, node="chat"):
    """Rows worth ``cents`` US cents for the user (one row per cent ten, then the rest)."""
    while cents > 0:
        n = min(cents, 10)
        record_usage(
            MODEL,
            prompt_tokens=CENT["prompt_tokens"] * n,
            completion_tokens=CENT["completion_tokens"] * n,
            user_id=user_id,
            node_name=node,
        )
        cents -= n


def block_one_call(app, fake_provider, user_id):
    """A real LangChain call refused by a used-up block budget (no provider request)."""
    with app.app_context():
        llm = openai_model(fake_provider, max_tokens=100)
        with pytest.raises(BudgetExceeded):
            llm.invoke("hello", config={"callbacks": [UsageHandler({"user_id": user_id})]})
    assert fake_provider.requests == []


@pytest.fixture
def budget_site(app, serve, fake_provider):
    """admin; alice at 85 % of her $1 day, bob used up (one call blocked), carol at 20 %;
    a global $50 a month alert budget, and a token budget for the feature "summarise"."""
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    users = {
        name: create_test_user(app, name, f"pw-{name}-1") for name in ("alice", "bob", "carol")
    }
    with app.app_context():
        create_budget(
            {
                "name": "company",
                "scope": "global",
                "period": "month",
                "limit_usd": "50",
                "action": "alert",
            }  # fmt: skip
        )
        create_budget(
            {
                "name": "daily",
                "scope": "user",
                "period": "day",
                "limit_usd": "1",
                "limit_tokens": 400_000,
                "action": "block",
            }  # fmt: skip
        )
        create_budget(
            {
                "name": "summaries",
                "scope": "node",
                "scope_value": "summarise",
                "period": "week",
                "tz": ZONE,
                "limit_tokens": 1_000_000,
                "action": "alert",
                "thresholds": [0.5, 1],
            }  # fmt: skip
        )
        spend(users["alice"], 85)
        spend(users["bob"], 100)
        spend(users["carol"], 20, node="summarise")
        # Earlier this month (when there was an earlier day): the month's budget only.
        for days in (1, 2, 3):
            record_usage(
                MODEL,
                prompt_tokens=400_000,
                completion_tokens=100_000,
                node_name="classify",
                created_at=utcnow() - timedelta(days=days),
            )
    flush()
    block_one_call(app, fake_provider, users["bob"])
    flush()
    server = serve(app)
    server.users = users
    return server


# --- the API, with the page's session ------------------------------------------------------


def get(page, base, path):
    response = page.request.get(f"{base}{path}")
    assert response.ok, response.text()
    return response.json()


def api_budgets(page, base):
    return {b["name"]: b for b in get(page, base, "/api/v1/admin/budgets/")["budgets"]}


def api_write(page, base, method, path, body=None):
    token = get(page, base, "/api/v1/auth/csrf")["csrf_token"]
    response = page.request.fetch(
        f"{base}{path}",
        method=method,
        headers={"X-CSRFToken": token, "Content-Type": "application/json"},
        data=json.dumps(body) if body is not None else None,
    )
    return response.status, (response.json() if response.status != 204 else None)


def shown_answer(page, action):
    """Do ``action`` (a load of the budgets page) and return the budgets the page was
    answered: the API's own answer to the page (projections move with the clock, so a
    second request would differ in its last digits)."""

    def listing(response):
        return response.request.method == "GET" and response.url.endswith("/admin/budgets/")

    with page.expect_response(listing) as answer:
        settle(page, action)
    return {b["name"]: b for b in answer.value.json()["budgets"]}


def drop_projections(budget):
    status = [
        {k: v for k, v in s.items() if not k.startswith("projected_")} for s in budget["status"]
    ]
    return {**budget, "status": status}


def open_budgets(context, base, path="/budgets"):
    page = log_in(context, base, path)
    page.wait_for_function("() => Number(document.getElementById('budget-banner')"
                           ".dataset.loads || 0) > 0")  # fmt: skip
    return page


# --- what a card shows, computed here ------------------------------------------------------

PCT = {EN: "{}%", ZH: "{}%"}


def pct(part: Decimal | int, whole: Decimal | int) -> str:
    """Intl's percent with at most one decimal, half up (the values here are exact)."""
    value = (Decimal(part) / Decimal(whole) * 100).quantize(Decimal("0.1"))
    text = f"{value:f}".removesuffix(".0")
    return f"{text}%"


def figures(locator):
    """A key's figures: {field: (shown text, data-value)} per unit ("usd", "tokens", "meta")."""
    return locator.evaluate("""k => Object.fromEntries([...k.querySelectorAll('dl.figures')]
        .map(dl => [dl.classList.contains('meta') ? 'meta' : dl.closest('.unit').dataset.unit,
                    Object.fromEntries([...dl.children].map(d => [d.dataset.field,
                      [d.querySelector('dd').textContent, d.dataset.value]]))]))""")


def expected_figures(budget, s, lang=EN):
    money = ("spent_usd", "reserved_usd", "remaining_usd", "projected_usd")
    shown = {
        "usd": {
            f: (usd(s[f], lang), s[f])
            for f in money
            if f != "remaining_usd" or budget["limit_usd"] is not None
        },
        "meta": {
            "resets_at": (local_time(s["resets_at"], ZONE, lang), s["resets_at"]),
            "blocked_calls": (num(s["blocked_calls"]), str(s["blocked_calls"])),
        },
    }
    if budget["limit_tokens"] is not None:
        tokens = ("spent_tokens", "reserved_tokens", "remaining_tokens", "projected_tokens")
        shown["tokens"] = {f: (num(s[f]), str(s[f])) for f in tokens}
    return shown


def assert_card(page, budget, lang=EN):
    card = page.locator(f'article.budget[data-id="{budget["id"]}"]')
    assert card.get_attribute("data-state") == budget["state"]
    assert card.locator(".budget-name").text_content() == budget["name"]
    keys = card.locator(".key")
    assert keys.count() == len(budget["status"])
    for i, s in enumerate(budget["status"]):
        key = keys.nth(i)
        assert key.get_attribute("data-key") == (s["scope_key"] or "")
        assert key.get_attribute("data-state") == s["state"]
        shown = figures(key)
        want = expected_figures(budget, s, lang)
        # data-value is the API's exact text; the text is the dashboard's money rule.
        assert {u: {f: v for f, v in d.items()} for u, d in shown.items()} == {
            u: {f: [t, v] for f, (t, v) in d.items()} for u, d in want.items()
        }, (budget["name"], s["scope_key"])
        if budget["scope"] == "user":
            assert key.locator(".key-label").text_content() == s["label"]
        # The bar: spent, reserved stacked, against the limit (capped at the whole bar).
        if budget["limit_usd"] is not None:
            limit = Decimal(budget["limit_usd"])
            bar = key.locator('.meter[data-unit="usd"]')
            spent = min(Decimal(s["spent_usd"]) / limit, Decimal(1))
            assert abs(Decimal(bar.get_attribute("data-spent")) - spent) < Decimal("1e-9")
            width = bar.locator(".spent").evaluate("e => e.style.width")
            assert abs(Decimal(width.removesuffix("%")) - spent * 100) < Decimal("1e-3")
            of = key.locator('.unit[data-unit="usd"] .of').text_content()
            limit_text = usd(budget["limit_usd"], lang)
            ratio = pct(Decimal(s["spent_usd"]), limit)
            assert of == (f"{ratio} of {limit_text}" if lang == EN else f"{limit_text} 的 {ratio}")
    return card


# --- tests -----------------------------------------------------------------------------------


def test_cards_show_the_api_figures(context, budget_site):
    page = open_budgets(context, budget_site.url)
    assert page.get_attribute("body", "data-state") == "ready"
    answer = shown_answer(page, page.reload)
    assert list(answer) == ["company", "daily", "summaries"]
    # The API answers the same to anyone asking (only the projections move on with time).
    assert [drop_projections(b) for b in api_budgets(page, budget_site.url).values()] == [
        drop_projections(b) for b in answer.values()
    ]
    assert page.locator("article.budget").evaluate_all("cs => cs.map(c => c.dataset.name)") == [
        "company",
        "daily",
        "summaries",
    ]
    for budget in answer.values():
        assert_card(page, budget)

    daily = answer["daily"]
    users = budget_site.users
    # Most spent first: bob (used up, one call blocked), alice (warning), carol.
    assert [(s["label"], s["state"], s["blocked_calls"]) for s in daily["status"]] == [
        ("bob", "exceeded", 1),
        ("alice", "warning", 0),
        ("carol", "ok", 0),
    ]
    assert [s["scope_key"] for s in daily["status"]] == [
        str(users["bob"]),
        str(users["alice"]),
        str(users["carol"]),
    ]
    card = page.locator(f'article.budget[data-id="{daily["id"]}"]')
    assert card.locator(".budget-head .badge").text_content() == "Exceeded"
    facts = card.locator(".facts").text_content()
    assert facts == (
        "Each user · $1.0000 and 400,000 tokens a day · UTC · blocks calls when used up"
        " · alerts at 80%, 100%"
    )
    bob = card.locator(f'.key[data-key="{users["bob"]}"]')
    assert bob.locator('.meter[data-unit="usd"]').get_attribute("class") == "meter full"
    assert bob.locator(".key-head .badge").text_content() == "Exceeded"
    alice = card.locator(f'.key[data-key="{users["alice"]}"]')
    assert alice.locator(".key-head .badge").text_content() == "Warning"
    assert alice.locator('.unit[data-unit="usd"] .of').text_content() == "85% of $1.0000"

    # A budget for one feature with a token limit only: no money remaining, a token bar.
    summaries = page.locator(f'article.budget[data-id="{answer["summaries"]["id"]}"]')
    assert summaries.locator('.meter[data-unit="usd"]').count() == 0
    assert summaries.locator('.meter[data-unit="tokens"]').count() == 1
    assert summaries.locator(".facts").text_content() == (
        f"feature summarise · 1,000,000 tokens a week · {ZONE} · only alerts · alerts at 50%, 100%"
    )
    # The global budget is one key, "All calls".
    company = page.locator(f'article.budget[data-id="{answer["company"]["id"]}"]')
    assert company.locator(".key-label").all_text_contents() == ["All calls"]
    zone = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert page.text_content("#budgets-note").startswith(
        f"Each budget's current period; times in {zone}."
    )


def test_add_change_and_delete_through_the_form(context, budget_site):
    page = open_budgets(context, budget_site.url)
    base = budget_site.url
    users = budget_site.users

    # A budget without a limit: the API's message, next to the form; nothing added.
    page.click("#add-budget")
    assert page.is_visible("#editor") and page.get_attribute("#editor", "data-mode") == "add"
    page.fill("input[name=name]", "alice-weekly")
    page.select_option("select[name=scope]", "user")
    page.select_option("select[name=scope_user]", str(users["alice"]))
    page.select_option("select[name=period]", "week")
    page.fill("input[name=tz]", "Europe/Paris")
    page.click("#save")
    page.wait_for_function("() => document.getElementById('budget-form').dataset.state === 'error'")
    status, error = api_write(
        page,
        base,
        "POST",
        "/api/v1/admin/budgets/",
        {"name": "x", "scope": "user", "period": "week"},
    )
    assert status == 400 and error["error"].startswith("invalid budget: limit_usd:")
    assert page.text_content("#form-error .message") == error["error"]
    assert page.text_content("#form-error") == f"Error from the API: {error['error']}"
    assert "alice-weekly" not in api_budgets(page, base)

    # With its limits: it appears, as the API has it.
    page.fill("input[name=limit_usd]", "3.5")
    page.fill("input[name=limit_tokens]", "250000")
    page.select_option("select[name=action]", "alert")
    page.fill("input[name=thresholds]", "0.5, 0.9")
    page.fill("input[name=webhook_url]", "https://hooks.example.com/budget")
    with page.expect_request(lambda r: r.method == "POST" and "/budgets/" in r.url) as sent:
        shown = shown_answer(page, lambda: page.click("#save"))
    assert sent.value.post_data_json == {
        "name": "alice-weekly",
        "scope": "user",
        "scope_value": str(users["alice"]),
        "period": "week",
        "tz": "Europe/Paris",
        "limit_usd": "3.5",
        "limit_tokens": 250000,
        "action": "alert",
        "thresholds": [0.5, 0.9],
        "webhook_url": "https://hooks.example.com/budget",
        "active": True,
    }
    assert page.is_hidden("#editor")
    added = shown["alice-weekly"]
    assert drop_projections(api_budgets(page, base)["alice-weekly"]) == drop_projections(added)
    assert {k: added[k] for k in ("scope", "scope_value", "period", "tz", "action")} == {
        "scope": "user",
        "scope_value": str(users["alice"]),
        "period": "week",
        "tz": "Europe/Paris",
        "action": "alert",
    }
    assert Decimal(added["limit_usd"]) == Decimal("3.5") and added["limit_tokens"] == 250_000
    assert added["thresholds"] == [0.5, 0.9] and added["active"] is True
    card = assert_card(page, added)
    assert card.locator(".facts").text_content() == (
        "user alice · $3.5000 and 250,000 tokens a week · Europe/Paris · only alerts"
        " · alerts at 50%, 90% · webhook https://hooks.example.com/budget"
    )

    # Change its limit, action, thresholds and switch it off: only those fields are sent.
    card.locator("[data-action=edit]").click()
    assert page.get_attribute("#editor", "data-mode") == "edit"
    assert card.locator("#editor").count() == 1  # the form opens inside the card
    assert page.input_value("input[name=limit_usd]") == "3.5"
    assert page.input_value("select[name=scope_user]") == str(users["alice"])
    page.fill("input[name=limit_usd]", "0.5")  # below what alice spent: over the limit
    page.select_option("select[name=action]", "block")
    page.fill("input[name=thresholds]", "0.8")
    page.uncheck("input[name=active]")
    with page.expect_request(lambda r: r.method == "PATCH") as sent:
        shown = shown_answer(page, lambda: page.click("#save"))
    assert sent.value.post_data_json == {
        "limit_usd": "0.5",
        "action": "block",
        "thresholds": [0.8],
        "active": False,
    }
    changed = shown["alice-weekly"]
    assert drop_projections(api_budgets(page, base)["alice-weekly"]) == drop_projections(changed)
    assert Decimal(changed["limit_usd"]) == Decimal("0.5")
    assert (changed["action"], changed["thresholds"], changed["active"]) == ("block", [0.8], False)
    assert changed["state"] == "inactive"
    card = assert_card(page, changed)
    assert card.locator(".budget-head .badge").text_content() == "Inactive"
    assert [(x["state"], x["remaining_usd"]) for x in changed["status"]] == [
        ("exceeded", "0.000000000")
    ]
    assert card.locator(".key .badge").text_content() == "Exceeded"
    assert card.locator('.meter[data-unit="usd"]').get_attribute("data-spent") == "1"
    assert "$0.5000 and 250,000 tokens a week" in card.locator(".facts").text_content()

    # A bad change: the API's message in the card's form, the budget as it was.
    card.locator("[data-action=edit]").click()
    page.fill("input[name=tz]", "Mars/Olympus")
    page.click("#save")
    page.wait_for_function("() => document.getElementById('budget-form').dataset.state === 'error'")
    message = page.text_content("#form-error .message")
    assert message.startswith("invalid budget: tz:") and "Mars/Olympus" in message
    assert api_budgets(page, base)["alice-weekly"]["tz"] == "Europe/Paris"
    page.click("[data-action=cancel]")
    assert page.is_hidden("#editor")

    # Delete: asked first; "cancel" keeps it, "OK" removes it (from the page and the API).
    page.once("dialog", lambda dialog: dialog.dismiss())
    card.locator("[data-action=delete]").click()
    assert "alice-weekly" in api_budgets(page, base)
    asked = []

    def accept(dialog):
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    settle(page, lambda: card.locator("[data-action=delete]").click())
    assert asked == ["Delete the budget 'alice-weekly'? Its counters and alerts go with it."]
    assert "alice-weekly" not in api_budgets(page, base)
    assert page.locator('article.budget[data-name="alice-weekly"]').count() == 0
    response = page.request.get(f"{base}/api/v1/admin/budgets/{added['id']}/")
    assert response.status == 404


def test_the_banner_appears_once_a_threshold_is_crossed(context, app, serve):
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    dave = create_test_user(app, "dave", "pw-dave-1")
    with app.app_context():
        create_budget({"name": "daily", "scope": "user", "period": "day", "limit_usd": "1"})
        create_budget({"name": "all", "scope": "global", "period": "month", "limit_usd": "100"})
        spend(dave, 50)
    flush()
    site = serve(app)
    page = open_budgets(context, site.url, "/")
    assert get(page, site.url, "/api/v1/admin/budget-alerts/?current=true") == {"alerts": []}
    assert page.is_hidden("#budget-banner")

    with app.app_context():
        spend(dave, 35)  # 85 % of his day
    flush()
    alerts = get(page, site.url, "/api/v1/admin/budget-alerts/?current=true")["alerts"]
    assert [(a["budget"], a["scope_key"], a["threshold"]) for a in alerts] == [
        ("daily", str(dave), 0.8)
    ]
    for path in ("/", "/usage", "/budgets"):
        settle(page, lambda path=path: page.goto(f"{site.url}{path}"))
        page.wait_for_function("() => document.getElementById('budget-banner').dataset.loads > 0")
        banner = page.locator("#budget-banner")
        assert banner.is_visible()
        assert banner.locator("li").all_text_contents() == [
            "Budget 'daily' (user dave) reached 80% of its daily limit."
        ]
        assert banner.locator("li a").get_attribute("href") == "/budgets"
    # Its language follows the page's.
    settle(page, lambda: page.select_option("select[data-lang-switch]", "zh-CN"))
    assert page.locator("#budget-banner li").all_text_contents() == [
        "预算“daily”（用户 dave）已达到每日限额的 80%。"
    ]
    page.select_option("select[data-lang-switch]", "en")

    # Used up: the 100 % alert is the line for dave now (one line per budget and user),
    with app.app_context():
        spend(dave, 20)  # past the limit: record_usage is not the call it would refuse
    flush()
    settle(page, lambda: page.goto(f"{site.url}/usage"))
    page.wait_for_function("() => document.getElementById('budget-banner').dataset.loads > 0")
    # (a block budget: used up, it refuses his calls until it resets)
    assert page.locator("#budget-banner li").all_text_contents() == [
        "Budget 'daily' (user dave) is used up and blocks calls."
    ]
    # Removing the budget ends its alerts: the budgets page's banner is redrawn at once.
    settle(page, lambda: page.goto(f"{site.url}/budgets"))
    page.once("dialog", lambda dialog: dialog.accept())
    loads = int(page.get_attribute("#budget-banner", "data-loads"))
    page.locator('article.budget[data-name="daily"] [data-action=delete]').click()
    page.wait_for_function(
        f"() => document.getElementById('budget-banner').dataset.loads > {loads}"
    )
    assert page.is_hidden("#budget-banner")


def test_a_blocked_budget_says_so_in_the_banner(context, budget_site):
    page = open_budgets(context, budget_site.url, "/usage")
    lines = page.locator("#budget-banner li")
    assert lines.all_text_contents() == [
        "Budget 'daily' (user bob) is used up and blocks calls.",
        "Budget 'daily' (user alice) reached 80% of its daily limit.",
    ]
    assert lines.evaluate_all("ls => ls.map(l => l.dataset.kind)") == ["blocked", "threshold"]
    assert page.get_attribute("#budget-banner", "class") == "banner blocked"


def test_chinese_on_a_phone(browser, budget_site):
    """zh-CN from the browser's language, at 390 px: translated, the same figures (US$),
    nothing wider than the screen, a top bar of at most two lines."""
    context = new_context(browser, locale="zh-CN", viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = open_budgets(context, budget_site.url)
        assert page.title() == "预算 · llm_tracker"
        assert page.text_content("h1") == "预算"
        assert page.locator(".topbar nav a").all_text_contents() == ["仪表盘", "调用记录", "预算"]
        answer = shown_answer(page, page.reload)
        for budget in answer.values():
            assert_card(page, budget, ZH)
        daily = page.locator(f'article.budget[data-id="{answer["daily"]["id"]}"]')
        assert daily.locator(".budget-head .badge").text_content() == "已超限"
        assert daily.locator(".facts").text_content() == (
            "每个用户 · 每日 US$1.0000 和 400,000 token · UTC · 用完后拦截调用"
            " · 在 80%, 100% 时告警"
        )
        dt = daily.locator(".key").first.locator("dt").all_text_contents()
        assert dt[:4] == ["已用", "预留", "剩余", "预计"] and dt[-2:] == [
            "重置时间",
            "被拦截的调用",
        ]
        assert page.locator("#budget-banner li").all_text_contents() == [
            "预算“daily”（用户 bob）已用完，调用将被拦截。",
            "预算“daily”（用户 alice）已达到每日限额的 80%。",
        ]
        layout = page.evaluate("""() => ({
            page: document.documentElement.scrollWidth,
            right: Math.max(...[...document.querySelectorAll('body *')]
                .map(e => e.getBoundingClientRect().right)),
            topbar: document.querySelector('.topbar').getBoundingClientRect().height,
            line: parseFloat(getComputedStyle(document.querySelector('.topbar .who')).lineHeight)
                || 20,
        })""")
        assert layout["page"] <= 390 and layout["right"] <= 390, layout
        assert layout["topbar"] <= 2 * layout["line"] + 32, layout
        # The form fits too.
        page.click("#add-budget")
        width = page.evaluate("document.getElementById('editor').getBoundingClientRect().right")
        assert width <= 390 and page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.text_content("#editor-title") == "新预算"
    finally:
        context.close()
    context.watch.check()


def test_empty_error_and_expired_session(context, app, serve):
    create_test_user(app, "admin", ADMIN_PASSWORD, admin=True)
    site = serve(app)
    page = open_budgets(context, site.url)
    assert page.is_hidden("#budgets") and page.is_visible("#budgets-empty")
    assert page.text_content("#budgets-empty") == (
        "No budgets yet. Add one with the button above, or on the server with flask budget add."
    )

    # An error answer: the API's message, and no list.
    def refuse(route):
        headers = {**HEADERS, "content-type": "application/json"}
        route.fulfill(status=500, headers=headers, body='{"error": "internal server error"}')

    page.route("**/api/v1/admin/budgets/", refuse)
    settle(page, lambda: page.select_option("select[data-lang-switch]", "zh-CN"))
    settle(page, lambda: page.select_option("select[data-lang-switch]", "en"))
    assert page.text_content("#status") == "Error from the API: internal server error"
    assert page.text_content("#budgets-empty") == (
        "No budgets: the list could not be loaded (see the message above)."
    )
    page.unroute("**/api/v1/admin/budgets/")

    # The session ends elsewhere: a write says so next to the form, with a way back.
    assert page.request.post(f"{site.url}/api/v1/auth/logout").ok
    page.click("#add-budget")
    page.fill("input[name=name]", "late")
    page.fill("input[name=limit_usd]", "1")
    page.click("#save")
    page.wait_for_function("() => document.getElementById('budget-form').dataset.state === 'error'")
    assert page.text_content("#form-error").startswith("Not saved: your session has expired.")
    assert page.text_content("#status") == (
        "Your session has expired. Log in again to see this page."
    )
    assert page.get_attribute("#status a", "href") == "/login?next=%2Fbudgets"
    assert page.text_content(".topbar .who") == "Not logged in · Log in"


def test_budgets_screenshot(browser, budget_site, tmp_path):
    """docs/screenshots/budgets.png: a global $50 a month budget, every user $1 a day
    (alice warned, bob used up with a blocked call), a token budget for one feature."""
    shots = Path(os.environ.get("LLM_TRACKER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    try:
        page = open_budgets(context, budget_site.url)
        page.screenshot(path=shots / "budgets.png", full_page=True)
    finally:
        context.close()
    context.watch.check()
    data = (shots / "budgets.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
