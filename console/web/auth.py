"""Page login and CSRF for the console's HTML pages.

When `TELEMETRY_API_AUTH_ENABLED` is on, every page needs a login: one of the API
tokens, or a user created with `python -m console user add NAME`. The login lives
in Flask's session cookie (HttpOnly, SameSite=Lax, Secure when
`TELEMETRY_COOKIE_SECURE`), signed with `TELEMETRY_SECRET_KEY`, so every worker
accepts it. Each request re-checks it: a rotated token or a changed password ends
the sessions that used it.

Every state-changing form carries a CSRF token: a random value kept in the signed
session and echoed in a hidden field (or the `X-CSRF-Token` header), compared in
constant time. It holds with auth off too (the console still changes data).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Optional
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from console.domain import users
from console.http.auth import PAGE_LOGIN_CHECK, is_api_path

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _settings():
    return current_app.config["SETTINGS"]


def auth_required() -> bool:
    """True when pages need a login."""
    return bool(_settings().auth_enabled)


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def check_token(candidate: str) -> Optional[str]:
    """The fingerprint of the configured token `candidate` matches, else None (constant time)."""
    found = None
    for token in _settings().auth_tokens:
        if hmac.compare_digest(candidate.encode(), token.encode()):
            found = token
    return token_fingerprint(found) if found else None


def log_in(kind: str, name: str, fingerprint: str) -> None:
    """Start a fresh session for a verified login (a new CSRF token too)."""
    session.clear()
    g.pop("telemetry_user", None)
    session["auth"] = {"kind": kind, "name": name, "fp": fingerprint}
    session["csrf"] = secrets.token_urlsafe(32)


def log_out() -> None:
    session.clear()
    g.pop("telemetry_user", None)


def current_user() -> Optional[str]:
    """Who is logged in ("token" or a user name), or None; checked against the current secrets."""
    if "telemetry_user" not in g:
        g.telemetry_user = _session_user()
    return g.telemetry_user


def _session_user() -> Optional[str]:
    auth = session.get("auth")
    if not isinstance(auth, dict):
        return None
    presented = str(auth.get("fp") or "").encode()
    if auth.get("kind") == "token":
        found = False
        for token in _settings().auth_tokens:  # all of them, in constant time (signed cookie or not)
            found |= hmac.compare_digest(presented, token_fingerprint(token).encode())
        return "token" if found else None
    if auth.get("kind") == "user":
        db = current_app.extensions["telemetry_db"]
        with db.read() as s:
            expected = users.password_fingerprint(s, auth.get("name", "")) or ""
        if expected and hmac.compare_digest(presented, expected.encode()):
            return auth["name"]
    return None


def verify_login(username: str, password: str) -> Optional[tuple[str, str, str]]:
    """(kind, name, fingerprint) when the form's credentials are good.

    An empty user name means the password field holds an API token.
    """
    if not username:
        fp = check_token(password)
        return ("token", "token", fp) if fp else None
    db = current_app.extensions["telemetry_db"]
    with db.read() as s:
        if users.verify_password(s, username, password):
            return "user", username, users.password_fingerprint(s, username) or ""
    return None


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Abort 400 unless a state-changing request carries the session's token."""
    if request.method in SAFE_METHODS:
        return
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    expected = session.get("csrf") or ""
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, description="The form has expired or did not come from this console (CSRF check failed). "
                               "Reload the page and try again.")


def safe_next(target: Optional[str]) -> str:
    """A local path to return to after login (never another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


class PageSessions(SecureCookieSessionInterface):
    """The signed cookie session, opened for pages only.

    Flask opens the session of every request up front; the JSON API never uses
    it, and reading the cookie and building its signer cost a quarter of Flask's
    own work on a single POST. API requests get Flask's null session instead.
    """

    def open_session(self, app, request):
        if is_api_path(request.path):
            return None
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = PageSessions()
    app.extensions[PAGE_LOGIN_CHECK] = lambda: current_user() is not None
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["CSRF_FIELD"] = CSRF_FIELD
