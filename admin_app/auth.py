"""Login and logout: the JSON API (``/api/v1/auth/...``) and the HTML form (``/login``)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select
from werkzeug.exceptions import TooManyRequests
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from llm_tracker import User, db

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()

BAD_CREDENTIALS = "invalid username or password"
_DUMMY_HASH: str | None = None


# --- throttling -----------------------------------------------------------------------


class LoginThrottle:
    """Counts failed logins per key in a sliding window; thread-safe, in memory.

    In memory means per process: with several workers an attacker gets ``limit`` tries per
    worker per window, which still turns a password guess rate into a crawl.
    """

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, *keys: str) -> int:
        """Seconds until any of ``keys`` may try again; 0 when none is blocked."""
        if self.limit <= 0:
            return 0
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                failures = self._recent(key, now)
                if len(failures) >= self.limit:
                    wait = max(wait, failures[-self.limit] + self.window - now)
        return max(int(wait + 0.999), 1) if wait > 0 else 0

    def fail(self, *keys: str) -> None:
        """Count one failed login against each key."""
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:
                # Random usernames must not grow memory without bound.
                for key in list(self._failures):
                    if not self._recent(key, now):
                        del self._failures[key]
            for key in keys:
                failures = self._recent(key, now)
                failures.append(now)
                self._failures[key] = failures

    def reset(self, key: str) -> None:
        """Forget the failures of ``key``."""
        with self._lock:
            self._failures.pop(key, None)


def _throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]


def _keys(username: str) -> tuple[str, str]:
    return f"user:{username.strip().casefold()}", f"addr:{request.remote_addr}"


def authenticate(username: str, password: str) -> tuple[User | None, int]:
    """The active user these credentials belong to (or None) and seconds to wait if throttled."""
    user_key, addr_key = _keys(username)
    wait = _throttle().retry_after(user_key, addr_key)
    if wait:
        return None, wait
    user = db.session.execute(
        select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        # Hash anyway so a missing user takes as long as a wrong password.
        check_password_hash(_dummy_hash(), password)
    elif user.check_password(password) and user.is_active:
        # Only the username's count is cleared: clearing the address's would let an
        # attacker reset it by logging into an account of their own between guesses.
        _throttle().reset(user_key)
        return user, 0
    _throttle().fail(user_key, addr_key)
    return None, 0


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash("not-a-password", method="scrypt")
    return _DUMMY_HASH


def _too_many(wait: int) -> TooManyRequests:
    return TooManyRequests(
        description=f"too many failed logins: try again in {wait} seconds",
        retry_after=wait)


# --- JSON API -------------------------------------------------------------------------


class LoginSchema(Schema):
    """Body of ``POST /api/v1/auth/login``."""

    username = fields.String(required=True, validate=validate.Length(min=1, max=150))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


def _user_json(user: User) -> dict[str, object]:
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin}


@bp.post("/api/v1/auth/login")
@csrf.exempt
def api_login() -> Response:
    """Log in with JSON ``{"username", "password"}``; sets the session cookie."""
    # Exempt from CSRF tokens: a login request carries no session to abuse, and it must be
    # JSON, which a cross-site HTML form cannot send and a cross-site script cannot send
    # without a CORS preflight this app never grants.
    if not request.is_json:
        abort(415, description="send JSON with Content-Type: application/json")
    try:
        body = LoginSchema().load(request.get_json(silent=True) or {})
    except ValidationError as exc:
        fields_ = ", ".join(sorted(exc.messages))
        abort(400, description=f"JSON body needs string fields username and password ({fields_})")
    user, wait = authenticate(body["username"], body["password"])
    if wait:
        raise _too_many(wait)
    if user is None:
        abort(401, description=BAD_CREDENTIALS)
    login_user(user)
    return jsonify(_user_json(user))


@bp.post("/api/v1/auth/logout")
@csrf.exempt
def api_logout() -> Response:
    """End the session."""
    # No CSRF token: a forged logout can only log the victim out, and SameSite=Lax
    # already keeps the cookie off cross-site POSTs.
    logout_user()
    return jsonify({"logged_out": True})


@bp.get("/api/v1/auth/me")
def api_me() -> Response:
    """The logged-in user (401 without a session)."""
    if not current_user.is_authenticated:
        abort(401, description="authentication required: log in first")
    return jsonify(_user_json(current_user))


# --- HTML -----------------------------------------------------------------------------


class LoginForm(FlaskForm):
    """The HTML login form (CSRF token included by Flask-WTF)."""

    username = StringField("Username", validators=[DataRequired(), Length(max=150)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _safe_next(target: str | None) -> str:
    # Only local paths: an absolute or scheme-relative URL would make /login an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("dashboard.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login_page() -> Response | str:
    """The login form; on success, back to ``next`` or the dashboard."""
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        user, wait = authenticate(form.username.data, form.password.data)
        if wait:
            error = f"Too many failed logins: try again in {wait} seconds."
        elif user is None:
            error = "Invalid username or password."
        else:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
    elif request.method == "POST":
        error = "Enter a username and a password."
    return render_template("login.html", form=form, error=error)


@bp.get("/logout")
def logout_page() -> Response:
    """End the session and show the login form."""
    logout_user()
    return redirect(url_for("auth.login_page"))


# --- wiring ---------------------------------------------------------------------------


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    try:
        return db.session.get(User, int(user_id))
    except ValueError:
        return None


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    # API clients get a JSON 401 (through the app's error handler); people get the form.
    if request.path.startswith("/api/"):
        abort(401, description="authentication required: log in first")
    return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    """Login manager, CSRF protection, login throttle and the auth routes."""
    app.config.setdefault("LOGIN_RATE_LIMIT", 10)
    app.config.setdefault("LOGIN_RATE_LIMIT_WINDOW", 60)
    login_manager.init_app(app)
    csrf.init_app(app)
    app.extensions["login_throttle"] = LoginThrottle(
        int(app.config["LOGIN_RATE_LIMIT"]), float(app.config["LOGIN_RATE_LIMIT_WINDOW"]))
    app.register_blueprint(bp)
