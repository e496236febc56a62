"""The admin JSON API: ``GET token-stats/``, ``GET llm-usage/`` (and its CSV export and
detail), admins only.

Mount the blueprint under any prefix and register the JSON error handler once::

    app.register_blueprint(llm_tracker.views.bp, url_prefix="/api/v1/admin")
    llm_tracker.views.register_error_handlers(app)

Authentication is Flask-Login's: the app needs a ``LoginManager`` whose users have
``is_active`` and ``is_staff`` / ``is_superuser`` (``llm_tracker.User`` has them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, abort, jsonify, request, stream_with_context
from flask_login import current_user
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    pre_load,
    validate,
    validates_schema,
)
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.wrappers import Response as BaseResponse

from .llm_usage import (
    MAX_MODEL_FILTER,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    get_llm_usage,
    get_llm_usage_list_from_query,
    iter_llm_usage_csv,
)
from .llm_usage_stats import DIMENSIONS, GRANULARITIES, MAX_GROUPS, get_token_stats_from_query
from .models import is_admin
from .params import USER_ID_MAX, USER_ID_MIN, describe_errors, parse_tz, parse_when

__all__ = [
    "ADMIN_REQUIRED",
    "LOGIN_REQUIRED",
    "LLMUsageExportQuery",
    "LLMUsageQuery",
    "TokenStatsQuery",
    "bp",
    "is_admin",
    "register_error_handlers",
]

bp = Blueprint("llm_tracker_admin", __name__)

LOGIN_REQUIRED = "authentication required: log in first"
ADMIN_REQUIRED = "admin access required (an active staff or superuser account)"
_USER_ID = validate.Range(min=USER_ID_MIN, max=USER_ID_MAX)


def _checked(parse: Callable[[Any], Any]) -> Callable[[Any], None]:
    # Marshmallow validators signal failure with ValidationError; the parsers raise ValueError.
    def check(value: Any) -> None:
        try:
            parse(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    return check


class _Query(Schema):
    """Common rules: unknown parameters are refused, empty values mean absent."""

    class Meta:
        unknown = RAISE

    start_date = fields.String(validate=_checked(lambda v: parse_when(v, name="start_date")))
    end_date = fields.String(validate=_checked(lambda v: parse_when(v, name="end_date", end=True)))
    user_id = fields.Integer(strict=False, validate=_USER_ID)
    tz = fields.String(validate=_checked(parse_tz))

    @pre_load
    def _drop_empty(self, data: Mapping[str, Any], **_kwargs: Any) -> dict[str, Any]:
        # HTML filter forms send every field, blank ones as "".
        return {key: value for key, value in data.items() if value != ""}


_TEXT = [
    validate.Length(max=MAX_MODEL_FILTER),
    validate.ContainsNoneOf(["\x00"], error="must not contain NUL characters"),
]
_DIMENSION = validate.OneOf(list(DIMENSIONS))


class _Filtered(_Query):
    """The filters every statistic and the list take."""

    model = fields.String(validate=_TEXT)  # a case-insensitive substring
    model_exact = fields.String(validate=_TEXT)  # one model name, exactly
    node_name = fields.String(validate=_TEXT)
    source_type = fields.String(validate=_TEXT)
    provider = fields.String(validate=_TEXT)


class TokenStatsQuery(_Filtered):
    """Query parameters of ``GET token-stats/``."""

    granularity = fields.String(validate=validate.OneOf(sorted(GRANULARITIES)))
    group_by = fields.String(validate=_DIMENSION)
    series_by = fields.String(validate=_DIMENSION)
    limit = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_GROUPS))

    @validates_schema
    def _series_needs_granularity(self, data: Mapping[str, Any], **_kwargs: Any) -> None:
        if "series_by" in data and "granularity" not in data:
            raise ValidationError("needs a granularity ('day', 'month' or 'year')", "series_by")


class LLMUsageExportQuery(_Filtered):
    """Query parameters of ``GET llm-usage/export.csv``: the list's filters."""

    success = fields.Boolean(truthy={"true", "True", "TRUE"}, falsy={"false", "False", "FALSE"})
    priced = fields.Boolean(truthy={"true", "True", "TRUE"}, falsy={"false", "False", "FALSE"})


class LLMUsageQuery(LLMUsageExportQuery):
    """Query parameters of ``GET llm-usage/``."""

    page = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_PAGE))
    page_size = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


def _load(schema: Schema) -> dict[str, Any]:
    return schema.load(request.args.to_dict(flat=True))


def _describe(messages: Any) -> str:
    if isinstance(messages, dict):
        return (
            f"invalid query parameters: {describe_errors(messages)}"
            if messages
            else "invalid query"
        )
    return describe_errors(messages)


@bp.errorhandler(ValidationError)
def _invalid_query(exc: ValidationError) -> BaseResponse:
    return _json_error(BadRequest(description=_describe(exc.messages)))


@bp.errorhandler(ValueError)
def _bad_value(exc: ValueError) -> BaseResponse:
    # The library's parsers and queries say what is wrong with a value in ValueError.
    return _json_error(BadRequest(description=str(exc)))


@bp.before_request
def _require_admin() -> None:
    # is_anonymous, not is_authenticated: Flask-Login's UserMixin reports a deactivated
    # user as unauthenticated, but a known user without rights gets 403, not 401.
    if current_user.is_anonymous:
        abort(401, description=LOGIN_REQUIRED)
    if not is_admin(current_user._get_current_object()):
        abort(403, description=ADMIN_REQUIRED)


@bp.get("token-stats/")
def token_stats() -> Response:
    """Summary, by-model and (with ``granularity``) time-series statistics."""
    return jsonify(get_token_stats_from_query(_load(TokenStatsQuery())))


@bp.get("llm-usage/")
def llm_usage() -> Response:
    """One page of usage rows, newest first."""
    return jsonify(get_llm_usage_list_from_query(_load(LLMUsageQuery())))


@bp.get("llm-usage/export.csv")
def llm_usage_export() -> Response:
    """The filtered usage list as CSV, newest first, streamed (no paging)."""
    # Filters are checked here, before the first chunk is sent.
    chunks = iter_llm_usage_csv(_load(LLMUsageExportQuery()))
    return Response(
        stream_with_context(chunks),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="llm-usage.csv"'},
    )


@bp.get("llm-usage/<usage_id>/")
def llm_usage_detail(usage_id: str) -> Response:
    """One usage row, as in the list."""
    row = get_llm_usage(usage_id)
    if row is None:
        abort(404, description=f"no usage row with id {usage_id!r}")
    return jsonify(row)


def _json_error(exc: HTTPException) -> BaseResponse:
    # Keep werkzeug's status and headers (Allow, Retry-After, ...) but never its HTML body;
    # descriptions are ours or werkzeug's generic text, so no stack trace leaks.
    response = exc.get_response()
    response.set_data(jsonify({"error": exc.description or exc.name}).get_data())
    response.content_type = "application/json"
    return response


def register_error_handlers(app: Flask) -> None:
    """Make every HTTP error of ``app`` a JSON ``{"error": "..."}`` response."""
    app.register_error_handler(HTTPException, _json_error)
