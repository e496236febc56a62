"""Login and logout: the JSON API (``/api/v1/auth/...``) and the HTML form (``/login``)."""

from __future__ import annotations

import hashlib
import itertools
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
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
from flask_wtf.csrf import CSRFProtect, generate_csrf
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import Insert, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.exceptions import TooManyRequests
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import Field, PasswordField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.validators import ValidationError as FormValidationError

from llm_tracker import User, db
from llm_tracker.database import utcnow
from llm_tracker.models import LoginFailures
from llm_tracker.views import LOGIN_REQUIRED

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()

BAD_CREDENTIALS = "invalid username or password"
BAD_TEXT = "must not contain NUL characters or lone surrogates"
_DUMMY_HASH: str | None = None


# --- throttling -----------------------------------------------------------------------


@dataclass
class Attempt:
    """One login attempt as the throttle counted it."""

    # Seconds to wait when refused; 0 when the password may be checked.
    wait: int
    # The window each key's count was added to (empty when refused: nothing stays counted).
    windows: dict[str, datetime] = field(default_factory=dict)


class LoginThrottle:
    """Failed logins per key in fixed time windows, counted in the ``login_failures`` table.

    In the database so every worker process shares one count. Each attempt is counted by
    one atomic upsert per key *before* its password is checked: parallel guesses each see
    the count that includes the ones before them, so no more than ``limit`` failures per
    window ever reach the password hash.
    """

    # Rows of expired windows are deleted every this many attempts (per process), so
    # random usernames cannot grow the table without bound.
    PRUNE_EVERY = 256

    def __init__(self, limit: int, window: float, clock: Callable[[], datetime] = utcnow) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._attempts = itertools.count(1)

    def _upsert(self, key: str, now: datetime) -> Insert:
        table = LoginFailures.__table__
        dialect = db.engine.dialect.name
        if dialect == "sqlite":
            insert = sqlite.insert
        elif dialect == "postgresql":
            insert = postgresql.insert
        else:  # pragma: no cover - the app supports these two
            raise RuntimeError(f"the login throttle needs SQLite or PostgreSQL, not {dialect}")
        stmt = insert(table).values(key=key, window_start=now, failures=1)
        # SET expressions see the row as it was, so both CASEs agree on "expired".
        expired = table.c.window_start <= now - timedelta(seconds=self.window)
        return stmt.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "failures": case((expired, 1), else_=table.c.failures + 1),
                "window_start": case(
                    (expired, stmt.excluded.window_start), else_=table.c.window_start
                ),
            },
        ).returning(table.c.failures, table.c.window_start)

    def attempt(self, *keys: str) -> Attempt:
        """Count one login attempt against each key before its password is checked.

        Refused (``wait`` > 0, and the attempt no longer counted) when any key already had
        ``limit`` failures in its window.
        """
        if self.limit <= 0:
            return Attempt(wait=0)
        now = self.clock()
        if next(self._attempts) % self.PRUNE_EVERY == 0:
            self.prune()
        windows: dict[str, datetime] = {}
        for i, key in enumerate(keys):
            # Its own short transaction: never the request's session (whose work is not
            # ours to commit), and no lock held while the next key is counted.
            with db.engine.begin() as conn:
                failures, window_start = conn.execute(self._upsert(key, now)).one()
            windows[key] = window_start
            if failures > self.limit:
                # A refused attempt is not a failure: taking it off again keeps an innocent
                # key (the address of someone trying a locked account, say) from filling up
                # with refusals. The remaining keys are only read, for the longest wait.
                self.forgive(Attempt(wait=0, windows=windows))
                wait = max(math.ceil((window_start - now).total_seconds() + self.window), 1)
                return Attempt(wait=max(wait, self.retry_after(*keys[i + 1 :])))
        return Attempt(wait=0, windows=windows)

    def forgive(self, attempt: Attempt, *keys: str) -> None:
        """Take ``attempt`` off the counts of ``keys`` (all its keys when none are given)."""
        table = LoginFailures.__table__
        # Only in the window it was counted in: a window begun since holds none of it.
        for key in keys or tuple(attempt.windows):
            if key not in attempt.windows:
                continue
            with db.engine.begin() as conn:
                conn.execute(
                    update(table)
                    .where(
                        table.c.key == key,
                        table.c.window_start == attempt.windows[key],
                        table.c.failures > 0,
                    )
                    .values(failures=table.c.failures - 1)
                )

    def reset(self, key: str) -> None:
        """Forget the failures of ``key``."""
        with db.engine.begin() as conn:
            conn.execute(delete(LoginFailures).where(LoginFailures.key == key))

    def retry_after(self, *keys: str) -> int:
        """Seconds until any of ``keys`` may try again; 0 when none is blocked (read only)."""
        if self.limit <= 0 or not keys:
            return 0
        now = self.clock()
        with db.engine.connect() as conn:
            rows = conn.execute(
                select(LoginFailures.failures, LoginFailures.window_start).where(
                    LoginFailures.key.in_(keys)
                )
            ).all()
        wait = max(
            [
                (ws - now).total_seconds() + self.window
                for failures, ws in rows
                if failures >= self.limit
            ]
            + [0.0]
        )
        return max(math.ceil(wait), 1) if wait > 0 else 0

    def prune(self) -> int:
        """Delete the rows of expired windows; how many."""
        cutoff = self.clock() - timedelta(seconds=self.window)
        with db.engine.begin() as conn:
            return conn.execute(
                delete(LoginFailures).where(LoginFailures.window_start <= cutoff)
            ).rowcount


def _throttle() -> LoginThrottle:
    return current_app.extensions["login_throttle"]


def _key(kind: str, value: str) -> str:
    # Hashed so that any username fits the key column (String(200)).
    return f"{kind}:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _keys(username: str) -> tuple[str, str]:
    return _key("user", username.strip().casefold()), _key("addr", str(request.remote_addr))


def authenticate(username: str, password: str) -> tuple[User | None, int]:
    """The active user these credentials belong to (or None) and seconds to wait if throttled.

    The counts are written on connections of their own, never through ``db.session``; on
    SQLite the session must therefore hold no uncommitted (flushed) writes.
    """
    user_key, addr_key = _keys(username)
    throttle = _throttle()
    attempt = throttle.attempt(user_key, addr_key)
    if attempt.wait:
        return None, attempt.wait
    # No autoflush: the caller's pending work stays the caller's, and on SQLite a flush
    # would take the write lock the throttle's own connection needs below.
    with db.session.no_autoflush:
        user = db.session.execute(select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        # Hash anyway so a missing user takes as long as a wrong password.
        check_password_hash(_dummy_hash(), password)
    elif user.check_password(password) and user.is_active:
        # Only the username's count is cleared: clearing the address's would let an
        # attacker reset it by logging into an account of their own between guesses. The
        # success itself is taken off the address, so it counts failures only (people
        # behind one NAT do not lock each other out by logging in); that gives an
        # attacker nothing, as it removes no guess.
        throttle.reset(user_key)
        throttle.forgive(attempt, addr_key)
        return user, 0
    return None, 0


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash("not-a-password", method="scrypt")
    return _DUMMY_HASH


def _too_many(wait: int) -> TooManyRequests:
    return TooManyRequests(
        description=f"too many failed logins: try again in {wait} seconds", retry_after=wait
    )


def is_storable_text(value: str) -> bool:
    """False for text no database column takes: a NUL character or a lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- JSON API -------------------------------------------------------------------------


def _storable(value: str) -> None:
    if not is_storable_text(value):
        raise ValidationError(BAD_TEXT)


class LoginSchema(Schema):
    """Body of ``POST /api/v1/auth/login``."""

    username = fields.String(required=True, validate=[validate.Length(min=1, max=150), _storable])
    password = fields.String(required=True, validate=[validate.Length(min=1, max=1024), _storable])


def _bad_body(messages: dict[str, Any]) -> str:
    bad_text = sorted(
        name for name, errors in messages.items() if isinstance(errors, list) and BAD_TEXT in errors
    )
    if bad_text:
        return f"username and password {BAD_TEXT} ({', '.join(bad_text)})"
    return f"JSON body needs string fields username and password ({', '.join(sorted(messages))})"


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
        data = request.get_json(silent=True)
    except RecursionError:
        # silent=True covers only ValueError; deep nesting makes the decoder recurse out.
        abort(400, description="JSON body is nested too deeply")
    try:
        body = LoginSchema().load(data or {})
    except ValidationError as exc:
        abort(400, description=_bad_body(exc.messages))
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
    """End the session, and every other session of the user (copied cookies included)."""
    # No CSRF token: a forged logout can only log the victim out, and SameSite=Lax
    # already keeps the cookie off cross-site POSTs.
    _log_out()
    return jsonify({"logged_out": True})


def _log_out() -> None:
    user = current_user._get_current_object()
    # is_anonymous, not is_authenticated: a deactivated user's sessions end too.
    if not user.is_anonymous:
        # A new token, not just a cleared cookie: a copy of the cookie must stop working.
        user.end_sessions()
        db.session.commit()
    logout_user()


@bp.get("/api/v1/auth/csrf")
def api_csrf() -> Response:
    """A CSRF token for this session: cookie-session writes send it in ``X-CSRFToken``."""
    return jsonify({"csrf_token": generate_csrf()})


@bp.get("/api/v1/auth/me")
def api_me() -> Response:
    """The logged-in user (401 without a session)."""
    if not current_user.is_authenticated:
        abort(401, description=LOGIN_REQUIRED)
    return jsonify(_user_json(current_user))


# --- HTML -----------------------------------------------------------------------------


def _storable_field(form: FlaskForm, field_: Field) -> None:
    if field_.data and not is_storable_text(field_.data):
        raise FormValidationError(BAD_TEXT)


class LoginForm(FlaskForm):
    """The HTML login form (CSRF token included by Flask-WTF)."""

    username = StringField(
        "Username", validators=[DataRequired(), Length(max=150), _storable_field]
    )
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=1024), _storable_field]
    )


def _safe_next(target: str | None) -> str:
    # Only local paths: an absolute or scheme-relative URL would make /login an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("dashboard.index")
    # Control characters (CR/LF above all) cannot go into a Location header.
    if any(unicodedata.category(ch) == "Cc" for ch in target):
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
        if any(BAD_TEXT in field_.errors for field_ in (form.username, form.password)):
            error = f"Username and password {BAD_TEXT}."
        else:
            error = "Enter a username and a password."
    return render_template("login.html", form=form, error=error)


@bp.get("/logout")
def logout_page() -> Response:
    """End the user's sessions (as ``POST /api/v1/auth/logout``) and show the login form."""
    _log_out()
    return redirect(url_for("auth.login_page"))


# --- wiring ---------------------------------------------------------------------------


@login_manager.user_loader
def _load_user(session_id: str) -> User | None:
    return User.from_session_id(session_id)


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    # API clients get a JSON 401 (through the app's error handler); people get the form.
    if request.path.startswith("/api/"):
        abort(401, description=LOGIN_REQUIRED)
    return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    """Login manager, CSRF protection, login throttle and the auth routes."""
    app.config.setdefault("LOGIN_RATE_LIMIT", 10)
    app.config.setdefault("LOGIN_RATE_LIMIT_WINDOW", 60)
    login_manager.init_app(app)
    csrf.init_app(app)
    app.extensions["login_throttle"] = LoginThrottle(
        int(app.config["LOGIN_RATE_LIMIT"]), float(app.config["LOGIN_RATE_LIMIT_WINDOW"])
    )
    app.register_blueprint(bp)
