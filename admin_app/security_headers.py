"""Security headers on every response of the admin app: pages, API JSON, CSV, static files,
redirects and error answers alike.

The dashboard runs no inline script or style (its code is ``static/dashboard.js``, its
styles ``static/dashboard.css``), so the policy can refuse both: injected markup in a model
name or an error message could then not run even if escaping ever failed.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # data: for the empty favicon (<link rel="icon" href="data:,">) that stops /favicon.ico.
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors for current browsers, X-Frame-Options for older ones: no clickjacking.
    "X-Frame-Options": "DENY",
    # Query strings carry filters (user ids, model names): keep them off other sites' logs.
    "Referrer-Policy": "same-origin",
}


def add_security_headers(response: Response) -> Response:
    """Set the security headers on ``response`` (an ``after_request`` function)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Register ``add_security_headers`` on ``app``."""
    app.after_request(add_security_headers)
