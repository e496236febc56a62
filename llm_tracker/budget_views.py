"""The budgets admin API: ``GET/POST budgets/``, ``GET/PATCH/DELETE budgets/<id>/`` and
``GET budget-alerts/``, admins only, mounted beside ``views.bp``::

    app.register_blueprint(llm_tracker.budget_views.bp, url_prefix="/api/v1/admin")

Cookie-session writes need a CSRF token in ``X-CSRFToken`` when the app uses Flask-WTF's
``CSRFProtect`` (the admin app does; ``GET /api/v1/auth/csrf`` hands one out).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from werkzeug.exceptions import BadRequest

from .budget_admin import (
    budget_json,
    create_budget,
    delete_budget,
    list_alerts,
    list_budgets,
    update_budget,
)
from .database import db
from .models import Budget
from .views import _bad_value, _invalid_query, _require_admin

bp = Blueprint("llm_tracker_budgets", __name__)
# Budget ids are 32-bit: a larger id in a URL names no budget (and never reaches the query).
MAX_BUDGET_ID = 2**31 - 1
bp.before_request(_require_admin)
bp.register_error_handler(ValidationError, _invalid_query)
bp.register_error_handler(ValueError, _bad_value)


class BudgetAlertsQuery(Schema):
    """Query parameters of ``GET budget-alerts/``."""

    class Meta:
        unknown = RAISE

    budget_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_BUDGET_ID))
    current = fields.Boolean(truthy={"true", "True", "TRUE"}, falsy={"false", "False", "FALSE"})
    limit = fields.Integer(strict=False, validate=validate.Range(min=1, max=1000))


def _body() -> dict[str, Any]:
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        # silent=True covers only ValueError; deep nesting makes the decoder recurse out.
        raise BadRequest(description="JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(description="the request body must be a JSON object")
    return data


def _budget(budget_id: int) -> Budget:
    budget = db.session.get(Budget, budget_id) if budget_id <= MAX_BUDGET_ID else None
    if budget is None:
        abort(404, description=f"no budget with id {budget_id}")
    return budget


@bp.get("budgets/")
def budgets() -> Response:
    """Every budget with its status per scope key in the current period."""
    return jsonify({"budgets": [budget_json(b) for b in list_budgets()]})


@bp.post("budgets/")
def budget_create() -> tuple[Response, int]:
    """Create a budget from a JSON object (SPEC §9's fields)."""
    return jsonify(budget_json(create_budget(_body()))), 201


@bp.get("budgets/<int:budget_id>/")
def budget_detail(budget_id: int) -> Response:
    """One budget and its status."""
    return jsonify(budget_json(_budget(budget_id)))


@bp.patch("budgets/<int:budget_id>/")
def budget_update(budget_id: int) -> Response:
    """Change some fields of a budget (the result is validated as a whole)."""
    budget = _budget(budget_id)
    return jsonify(budget_json(update_budget(budget, _body())))


@bp.delete("budgets/<int:budget_id>/")
def budget_delete(budget_id: int) -> tuple[str, int]:
    """Remove a budget with its counters, reservations and alerts."""
    delete_budget(_budget(budget_id))
    return "", 204


@bp.get("budget-alerts/")
def budget_alerts() -> Response:
    """Alerts fired, newest first (``current=true``: of their budget's current period)."""
    query = BudgetAlertsQuery().load(request.args.to_dict(flat=True))
    return jsonify(
        {
            "alerts": list_alerts(
                budget_id=query.get("budget_id"),
                current=bool(query.get("current")),
                limit=query.get("limit", 100),
            )
        }
    )
