"""Page login and CSRF for the console's HTML pages.

When `TELEMETRY_API_AUTH_ENABLED` is on, every page needs a login: an operator's API
token, or a user created with `python -m console user add NAME`. The login is a row
of `page_sessions` (console/domain/sessions.py); Flask's session cookie (HttpOnly,
SameSite=Lax, Secure over HTTPS or with `TELEMETRY_COOKIE_SECURE`), signed with
`TELEMETRY_SECRET_KEY`, holds only its random id and the CSRF token — no token
material. Each request re-checks the row: logout, `TELEMETRY_SESSION_HOURS`, a rotated
token or a changed password end it.

Every state-changing form carries a CSRF token: a random value kept in the signed
session and echoed in a hidden field (or the `X-CSRF-Token` header), compared in
constant time. It holds with auth off too (the console still changes data).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Optional
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from console.domain import sessions, users
from console.http.auth import OPERATOR_KINDS, PAGE_LOGIN_CHECK, identify_token, is_api_path

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _settings():
    return current_app.config["SETTINGS"]


def auth_required() -> bool:
    """True when pages need a login."""
    return bool(_settings().auth_enabled)


def token_digest(token: str) -> str:
    """What a token session keeps on the server to notice a rotated token (never sent to the browser)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def page_tokens() -> tuple[str, ...]:
    """The tokens that may log in to pages: operators' (agent tokens only record)."""
    settings = _settings()
    return settings.operator_tokens + settings.auth_tokens


def check_token(candidate: str) -> Optional[str]:
    """The label (`token:operator#1`) of the operator token `candidate` is, else None (constant time)."""
    found = identify_token(candidate, _settings())
    if found is None or found[0] not in OPERATOR_KINDS:
        return None
    return f"token:{found[1]}"


def _db():
    return current_app.extensions["telemetry_db"]


def log_in(kind: str, name: str, credential: str) -> None:
    """Start a fresh session for a verified login (a new server-side record and CSRF token)."""
    old = str(session.get("sid") or "")
    hours = _settings().session_hours

    def replace(s) -> str:
        sessions.end(s, old)  # a login never keeps a session id the browser had before
        return sessions.start(s, kind, name, credential, hours)

    session_id = _db().write(replace)
    session.clear()
    g.pop("telemetry_user", None)
    session.permanent = True
    session["sid"] = session_id
    session["csrf"] = secrets.token_urlsafe(32)


def log_out() -> None:
    """End the session on the server too: a copy of the cookie is worthless afterwards."""
    session_id = session.get("sid")
    if session_id:
        _db().write(lambda s: sessions.end(s, str(session_id)))
    session.clear()
    g.pop("telemetry_user", None)


def current_user() -> Optional[str]:
    """Who is logged in (`token:operator#1` or a user name), or None; checked against the current secrets."""
    if "telemetry_user" not in g:
        g.telemetry_user = _session_user()
    return g.telemetry_user


def _session_user() -> Optional[str]:
    session_id = session.get("sid")
    if not isinstance(session_id, str) or not session_id:
        return None
    with _db().read() as s:
        row = sessions.find(s, session_id)
        if row is None:
            return None
        presented = row["credential"].encode()
        if row["kind"] == "token":
            found = False
            for token in page_tokens():  # all of them, in constant time
                found |= hmac.compare_digest(presented, token_digest(token).encode())
            return row["name"] if found else None
        if row["kind"] == "user":
            expected = users.password_fingerprint(s, row["name"]) or ""
            if expected and hmac.compare_digest(presented, expected.encode()):
                return row["name"]
    return None


def verify_login(username: str, password: str) -> Optional[tuple[str, str, str]]:
    """(kind, name, credential digest) when the form's credentials are good.

    An empty user name means the password field holds an operator's API token.
    """
    if not username:
        label = check_token(password)
        return ("token", label, token_digest(password)) if label else None
    with _db().read() as s:
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
    """The signed cookie session, opened for pages only; `Secure` whenever the request came over HTTPS.

    Flask opens the session of every request up front; the JSON API never uses
    it, and reading the cookie and building its signer cost a quarter of Flask's
    own work on a single POST. API requests get Flask's null session instead.
    """

    def open_session(self, app, request):
        if is_api_path(request.path):
            return None
        return super().open_session(app, request)

    def get_cookie_secure(self, app) -> bool:
        # request.is_secure sees X-Forwarded-Proto only through TELEMETRY_TRUSTED_PROXIES' ProxyFix.
        return bool(super().get_cookie_secure(app) or request.is_secure)


def init_app(app: Flask) -> None:
    app.session_interface = PageSessions()
    app.permanent_session_lifetime = timedelta(hours=app.config["SETTINGS"].session_hours)
    app.extensions[PAGE_LOGIN_CHECK] = lambda: current_user() is not None
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["CSRF_FIELD"] = CSRF_FIELD
