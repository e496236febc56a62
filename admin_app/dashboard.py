"""The admin dashboard pages: ``/`` (statistics), ``/users/<id>`` (one user's spend),
``/usage`` (the list), ``/usage/<id>`` and ``/budgets``.

The pages are shells: their JavaScript (``static/dashboard.js``) reads the admin JSON API,
so the numbers on screen are the API's numbers (``static/budgets.js`` for ``/budgets``).
The views only check access and render the user filter's options.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from llm_tracker import User, db
from llm_tracker.views import ADMIN_REQUIRED

bp = Blueprint("dashboard", __name__)


def admin_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Anonymous visitors go to the login form; logged-in non-admins get an HTML 403 page."""

    @login_required
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_admin:
            # Rendered here rather than through abort(): the app's error handler answers
            # JSON, which is right for the API but not for a person in a browser.
            return render_template("403.html", message=ADMIN_REQUIRED), 403
        return view(*args, **kwargs)

    return wrapper


def _users() -> list[tuple[int, str]]:
    return [
        tuple(row)
        for row in db.session.execute(select(User.id, User.username).order_by(User.username)).all()
    ]


@bp.get("/")
@admin_page
def index() -> str:
    """Summary cards, the time-series chart and the by-model table."""
    return render_template("index.html", page="dashboard", users=_users())


@bp.get("/users/<int:user_id>")
@admin_page
def user(user_id: int) -> Any:
    """One user's spend: the dashboard drilled down to the user, the chart stacked by model.

    An address of its own for a bookmark or a link from elsewhere; the page is the
    dashboard with ``?user_id=`` (so its period, chart and filters work the same), and any
    query given here is kept.
    """
    args = request.args.to_dict(flat=True)
    args.setdefault("stack", "model")
    args["user_id"] = str(user_id)
    return redirect(url_for("dashboard.index", **args))


@bp.get("/usage")
@admin_page
def usage() -> str:
    """The paginated, filterable usage list."""
    return render_template("usage.html", page="usage", users=_users())


@bp.get("/usage/<usage_id>")
@admin_page
def usage_detail(usage_id: str) -> str:
    """One usage row, read-only."""
    return render_template("usage_detail.html", page="detail", usage_id=usage_id)


@bp.get("/budgets")
@admin_page
def budgets() -> str:
    """The budgets, their status per scope key, and the form that adds or changes one."""
    return render_template("budgets.html", page="budgets", users=_users())
