"""API bearer tokens, their scopes, and the per-client rate limit.

Each view registered through `api.spec.route` carries `telemetry_auth`: `open`
(never needs a token), `read` (needs one only with TELEMETRY_API_AUTH_READS) or
`write` (needs one whenever auth is on), and `telemetry_scope`: which tokens may
write there, `agent` (recording) or `operator` (everything else). Agent tokens
(TELEMETRY_AGENT_TOKENS) reach agent routes and reads; operator tokens
(TELEMETRY_OPERATOR_TOKENS) and the older TELEMETRY_API_AUTH_TOKEN reach every
route. One app-wide before-request hook reads both attributes.
The rate limit counts per client address in a small SQLite file that every worker
of the host shares.
"""

from __future__ import annotations

import hmac
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

from flask import Blueprint, current_app, g, request

from console.core.settings import Settings
from console.http.errors import error_response

ALWAYS_OPEN = ("/health", "/metrics", "/version")
DOCS_PATHS = ("/docs", "/openapi.json")
API_PREFIX = "/api/v1"


def is_api_path(path: str) -> bool:
    """True for the JSON API's paths (under /api/v1)."""
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


# Which setting a token came from; `legacy` (TELEMETRY_API_AUTH_TOKEN) is an operator's token.
TOKEN_SOURCES = (("operator", "operator_tokens"), ("legacy", "auth_tokens"), ("agent", "agent_tokens"))
OPERATOR_KINDS = frozenset({"operator", "legacy"})


def identify_token(presented: str, settings: Settings) -> Optional[tuple[str, str]]:
    """(kind, label) of the configured token `presented` equals, else None.

    The label (`operator#2`: the second of TELEMETRY_OPERATOR_TOKENS) names the token
    in the audit log without any of its material. Every token is compared, in
    constant time, whatever matches.
    """
    given = presented.encode("utf-8", "surrogatepass")
    found = None
    for kind, attr in TOKEN_SOURCES:
        for index, token in enumerate(getattr(settings, attr), start=1):
            if hmac.compare_digest(given, token.encode("utf-8", "surrogatepass")) and found is None:
                found = (kind, f"{kind}#{index}")
    return found


def api_actor() -> str:
    """Who made this API request, for the audit log: `token:operator#1`, or `anonymous` with auth off."""
    return g.get("api_actor") or "anonymous"


def bearer_token() -> Optional[str]:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def required_access(settings: Settings) -> str:
    """What the current request needs: `open`, `read` or `write`."""
    path = request.path
    if path.startswith(ALWAYS_OPEN) or request.method == "OPTIONS":
        return "open"
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    mode = getattr(view, "telemetry_auth", None)
    if mode is not None:
        return mode
    if is_api_path(path):
        return "read" if request.method in ("GET", "HEAD") else "write"
    if path.startswith(DOCS_PATHS):
        return "read"
    return "open"  # pages have their own login


def required_scope() -> str:
    """Which tokens may write here: `agent` or `operator` (the default of any route not declaring one)."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return getattr(view, "telemetry_scope", "operator")


# The pages' login check, registered by the pages (a layer above): someone logged in to
# the pages may read the API's description at /docs, then "Authorize" its calls with a token.
PAGE_LOGIN_CHECK = "telemetry_page_login"


def _page_login() -> bool:
    check = current_app.extensions.get(PAGE_LOGIN_CHECK)
    return bool(check is not None and check())


def check_auth():
    settings: Settings = current_app.config["SETTINGS"]
    if not settings.auth_enabled:
        return None
    mode = required_access(settings)
    if mode == "open" or (mode == "read" and not settings.auth_reads):
        return None
    token = bearer_token()
    found = identify_token(token, settings) if token is not None else None
    if found is None and request.path.startswith(DOCS_PATHS) and _page_login():
        return None
    if found is None:
        detail = "missing bearer token" if token is None else "invalid bearer token"
        return error_response(401, detail, {"WWW-Authenticate": "Bearer"})
    kind, label = found
    if mode == "write" and kind not in OPERATOR_KINDS and required_scope() == "operator":
        return error_response(
            403,
            f"{request.method} {request.path} needs an operator token; an agent token may only record "
            "(runs, batches, ingest, events, heartbeats, commits) and read",
        )
    g.api_actor = f"token:{label}"
    return None


# ---------------------------------------------------------------- rate limit


class RateLimiter:
    """A token bucket per client key (capacity and refill: `rpm` per `per_seconds`), in a shared file."""

    def __init__(self, path: Path, rpm: int, per_seconds: float = 60.0):
        self.path = path
        self.rpm = rpm
        self.per_seconds = per_seconds
        self.rate = rpm / per_seconds
        self._local = threading.local()
        self._hits = 0

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=5, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = OFF")  # counts, not records: losing them is harmless
            conn.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL, updated REAL)")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def hit(self, key: str, now: Optional[float] = None) -> tuple[bool, int, int]:
        """Take one token for `key`: (allowed, remaining, retry_after_seconds)."""
        now = time.time() if now is None else now
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT tokens, updated FROM buckets WHERE key = ?", (key,)).fetchone()
            tokens = float(self.rpm) if row is None else min(self.rpm, row[0] + max(0.0, now - row[1]) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            conn.execute(
                "INSERT INTO buckets (key, tokens, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                (key, tokens, now),
            )
            self._hits += 1
            if self._hits % 1000 == 0:  # forget clients whose bucket is full again
                conn.execute("DELETE FROM buckets WHERE updated < ?", (now - self.per_seconds * 2,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        retry_after = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))
        return allowed, int(tokens), retry_after


    def refund(self, key: str) -> None:
        """Give back the token a `hit` took (its request turned out not to count)."""
        conn = self._connection()
        conn.execute("UPDATE buckets SET tokens = MIN(?, tokens + 1) WHERE key = ?", (float(self.rpm), key))


def limiter_path(settings: Settings) -> Path:
    """The counts file, unique to this database (like the lock files)."""
    if settings.db_path is not None:
        return Path(f"{settings.db_path}.ratelimit")
    return settings.state_dir / "postgresql.ratelimit"


def check_rate_limit():
    settings: Settings = current_app.config["SETTINGS"]
    if not settings.rate_limit_enabled or not is_api_path(request.path):
        return None
    limiter = current_app.extensions.get("telemetry_rate_limiter")
    if limiter is None:
        limiter = current_app.extensions.setdefault(
            "telemetry_rate_limiter", RateLimiter(limiter_path(settings), settings.rate_limit_rpm)
        )
    allowed, remaining, retry_after = limiter.hit(request.remote_addr or "unknown")
    g.rate_limit = (settings.rate_limit_rpm, remaining)
    if allowed:
        return None
    return error_response(
        429,
        f"rate limit of {settings.rate_limit_rpm} requests per minute exceeded; retry in {retry_after} s",
        {"Retry-After": str(retry_after)},
    )


def add_rate_limit_headers(response):
    state = g.get("rate_limit")
    if state is not None:
        response.headers["X-RateLimit-Limit"] = str(state[0])
        response.headers["X-RateLimit-Remaining"] = str(state[1])
    return response


def register(bp: Blueprint) -> None:
    """Guard every request of the app (the rate limit first, then the token)."""
    bp.before_app_request(check_rate_limit)
    bp.before_app_request(check_auth)
    bp.after_app_request(add_rate_limit_headers)
