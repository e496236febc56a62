"""The budgets admin API: admins only, CSRF on cookie-session writes, JSON 400s."""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import USER_PASSWORD

from llm_tracker import flush, record_usage

BUDGETS = "/api/v1/admin/budgets/"
ALERTS = "/api/v1/admin/budget-alerts/"
DAILY = {"name": "daily", "scope": "user", "scope_value": "7", "period": "day", "limit_usd": "1"}


def _token(client) -> dict[str, str]:
    response = client.get("/api/v1/auth/csrf")
    assert response.status_code == 200
    return {"X-CSRFToken": response.get_json()["csrf_token"]}


@pytest.fixture
def admin(client, auth, admin_user):
    auth.login()
    return _token(client)


ROUTES = [
    ("GET", BUDGETS),
    ("POST", BUDGETS),
    ("GET", BUDGETS + "1/"),
    ("PATCH", BUDGETS + "1/"),
    ("DELETE", BUDGETS + "1/"),
    ("GET", ALERTS),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_401_and_non_admins_403_on_every_route(client, auth, regular_user, method, path):
    token = _token(client)
    response = client.open(path, method=method, json=DAILY, headers=token)
    assert response.status_code == 401
    assert response.get_json() == {"error": "authentication required: log in first"}
    assert auth.login("alice", USER_PASSWORD).status_code == 200
    response = client.open(path, method=method, json=DAILY, headers=_token(client))
    assert response.status_code == 403 and "admin access required" in response.get_json()["error"]


def test_writes_need_the_csrf_token(client, admin):
    for method, path in (("POST", BUDGETS), ("PATCH", BUDGETS + "1/"), ("DELETE", BUDGETS + "1/")):
        response = client.open(path, method=method, json=DAILY)
        assert response.status_code == 400
        assert response.get_json() == {"error": "The CSRF token is missing."}
    assert client.get(BUDGETS).get_json() == {"budgets": []}


def test_create_read_change_delete(client, app_ctx, admin):
    record_usage("gpt-4o-mini", 1_000_000, 0, provider="openai", user_id=7)  # $0.15
    flush()
    response = client.post(BUDGETS, json=DAILY, headers=admin)
    assert response.status_code == 201
    created = response.get_json()
    assert {k: created[k] for k in ("name", "scope", "scope_value", "period", "tz")} == {
        "name": "daily",
        "scope": "user",
        "scope_value": "7",
        "period": "day",
        "tz": "UTC",
    }
    assert created["limit_usd"] == "1.000000000" and created["limit_tokens"] is None
    assert created["action"] == "block" and created["thresholds"] == [0.8, 1.0]
    assert created["active"] is True and created["state"] == "ok"
    (status,) = created["status"]
    assert status["scope_key"] == "7"
    assert status["spent_usd"] == "0.150000000" and status["spent_tokens"] == 1_000_000
    assert status["remaining_usd"] == "0.850000000" and status["reserved_usd"] == "0.000000000"
    url = f"{BUDGETS}{created['id']}/"

    def settled(budget):  # projections move with the clock
        return {
            **budget,
            "status": [
                {**s, "projected_usd": None, "projected_tokens": None} for s in budget["status"]
            ],
        }

    assert settled(client.get(url).get_json()) == settled(created)
    assert [settled(b) for b in client.get(BUDGETS).get_json()["budgets"]] == [settled(created)]

    response = client.patch(url, json={"limit_usd": "0.5", "action": "alert"}, headers=admin)
    assert response.status_code == 200
    changed = response.get_json()
    assert changed["limit_usd"] == "0.500000000" and changed["action"] == "alert"
    assert changed["status"][0]["remaining_usd"] == "0.350000000"

    response = client.delete(url, headers=admin)
    assert response.status_code == 204 and response.data == b""
    assert client.get(url).status_code == 404
    assert client.get(url).get_json() == {"error": f"no budget with id {created['id']}"}
    assert client.patch(url, json={}, headers=admin).status_code == 404
    assert client.delete(url, headers=admin).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**DAILY, "colour": "red"}, "colour: Unknown field."),
        ({**DAILY, "scope": "team"}, "scope: Must be one of"),
        ({**DAILY, "period": "year"}, "period: Must be one of"),
        ({**DAILY, "action": "warn"}, "action: Must be one of"),
        ({**DAILY, "tz": "Mars/Olympus"}, "tz: unknown time zone 'Mars/Olympus'"),
        ({**DAILY, "limit_usd": "-1"}, "limit_usd: Must be greater than or equal to 0"),
        ({**DAILY, "limit_tokens": -5}, "limit_tokens: Must be greater than or equal to 0"),
        ({**DAILY, "limit_usd": "NaN"}, "limit_usd: Special numeric values (nan or infinity)"),
        ({**DAILY, "limit_usd": None}, "limit_usd: a budget needs limit_usd, limit_tokens or both"),
        (
            {k: v for k, v in DAILY.items() if k != "limit_usd"},
            "limit_usd: a budget needs limit_usd, limit_tokens or both",
        ),
        ({**DAILY, "scope": "global"}, "scope_value: a global budget has no scope_value"),
        ({**DAILY, "scope_value": "bob"}, "scope_value: a user budget's scope_value is a user id"),
        ({**DAILY, "thresholds": [0, 1]}, "thresholds: 0: Must be greater than 0"),
        ({**DAILY, "thresholds": "0.5"}, "thresholds: Not a valid list."),
        ({**DAILY, "webhook_url": "ftp://x"}, "webhook_url: Not a valid URL."),
        ({**DAILY, "webhook_url": "http://\ud800.example/"}, "webhook_url: must not contain lone"),
        ({**DAILY, "name": "a\x00b"}, "name: must not contain NUL characters"),
        ({**DAILY, "name": "\ud800"}, "name: must not contain lone surrogates"),
        ({**DAILY, "scope_value": str(2**63)}, "scope_value: user id out of range"),
        ({"scope": "user"}, "name: Missing data for required field."),
    ],
)
def test_invalid_budgets_are_a_400_naming_the_field(client, admin, body, message):
    response = client.post(BUDGETS, json=body, headers=admin)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error.startswith("invalid budget: ") and message in error, error
    assert "\n" not in error


def test_not_an_object_duplicate_names_and_bad_patches(client, admin):
    for body in ([1, 2], "x", None):
        response = client.post(BUDGETS, json=body, headers=admin)
        assert response.status_code == 400
        assert response.get_json() == {"error": "the request body must be a JSON object"}
    response = client.post(BUDGETS, data="{", content_type="application/json", headers=admin)
    assert response.get_json() == {"error": "the request body must be a JSON object"}
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post(BUDGETS, data=deep, content_type="application/json", headers=admin)
    assert response.status_code == 400
    assert response.get_json() == {"error": "JSON body is nested too deeply"}
    response = client.post(BUDGETS, data="name=daily", headers=admin)  # a form, not JSON
    assert response.status_code == 400
    assert response.get_json() == {"error": "the request body must be a JSON object"}
    assert client.post(BUDGETS, json=DAILY, headers=admin).status_code == 201
    response = client.post(BUDGETS, json=DAILY, headers=admin)
    assert response.status_code == 400
    assert "a budget named 'daily' already exists" in response.get_json()["error"]
    url = BUDGETS + "1/"
    response = client.patch(url, json={"limit_usd": None}, headers=admin)
    assert response.status_code == 400
    assert "needs limit_usd, limit_tokens or both" in response.get_json()["error"]
    response = client.patch(url, json={"scope": "moon"}, headers=admin)
    assert response.status_code == 400 and "scope: Must be one of" in response.get_json()["error"]
    response = client.patch(url, json={"scope": "global"}, headers=admin)  # still for user 7
    assert response.get_json() == {
        "error": "invalid budget: scope_value: a global budget has no scope_value"
    }
    response = client.patch(url, json=[1], headers=admin)
    assert response.get_json() == {"error": "the request body must be a JSON object"}
    assert client.post(BUDGETS, json={**DAILY, "name": "other"}, headers=admin).status_code == 201
    response = client.patch(url, json={"name": "other"}, headers=admin)
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "invalid budget: name: a budget named 'other' already exists"
    }
    assert client.get(url).get_json()["name"] == "daily"  # nothing changed


def test_ids_beyond_32_bits_are_404_not_a_database_error(client, admin):
    url = f"{BUDGETS}{2**70}/"
    for method in ("GET", "PATCH", "DELETE"):
        response = client.open(url, method=method, json={}, headers=admin)
        assert response.status_code == 404
        assert response.get_json() == {"error": f"no budget with id {2**70}"}
    response = client.get(f"{ALERTS}?budget_id={2**70}")
    assert response.status_code == 400


def test_alerts_are_listed_after_a_threshold_is_crossed(client, app_ctx, admin):
    body = {"name": "team", "scope": "global", "period": "month", "limit_usd": "1"}
    response = client.post(BUDGETS, json={**body, "action": "alert"}, headers=admin)
    assert response.status_code == 201
    assert client.get(ALERTS).get_json() == {"alerts": []}
    for _ in range(6):
        record_usage("gpt-4o-mini", 1_000_000, 0, provider="openai")  # $0.15 each: $0.90
    flush()
    (alert,) = client.get(ALERTS + "?current=true").get_json()["alerts"]
    assert alert["budget"] == "team" and alert["threshold"] == 0.8
    assert alert["scope"] == "global" and alert["scope_key"] is None
    assert Decimal(alert["spent_usd"]) == Decimal("0.9") and alert["limit_usd"] == "1.000000000"
    assert client.get(ALERTS + f"?budget_id={alert['budget_id']}&limit=1").get_json()["alerts"] == [
        alert
    ]
    for query in ("?limit=0", "?current=maybe", "?budget_id=x", "?colour=red"):
        response = client.get(ALERTS + query)
        assert (
            response.status_code == 400
            and "invalid query parameters" in response.get_json()["error"]
        )


def test_a_budget_already_over_its_limit_shows_nothing_remaining(client, app, admin):
    with app.app_context():
        record_usage("gpt-4o-mini", 1_000_000, 0, provider="openai", node_name="summarize")
        flush()
    body = {"name": "nodes", "scope": "node", "period": "week", "limit_usd": "0.1"}
    response = client.post(BUDGETS, json={**body, "limit_tokens": 10}, headers=admin)
    assert response.status_code == 201
    (status,) = response.get_json()["status"]
    assert status["scope_key"] == "summarize" and status["state"] == "exceeded"
    assert status["remaining_usd"] == "0.000000000" and status["remaining_tokens"] == 0
    assert response.get_json()["state"] == "exceeded"
