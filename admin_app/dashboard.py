"""The admin dashboard pages (a placeholder until the dashboard itself lands)."""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@login_required
def index() -> str:
    """The dashboard home page, admins only."""
    if not current_user.is_admin:
        abort(403, description="admin access required (an active staff or superuser account)")
    return render_template("index.html")
