"""Throttle failed page logins per client address and per user name.

Each attempt takes a token from both buckets *before* any password is checked, so
that a throttled guess costs no hash and parallel guessers cannot all slip past one
check; a successful login gives its tokens back. The buckets hold
TELEMETRY_LOGIN_MAX_FAILURES and refill that many per TELEMETRY_LOGIN_WINDOW_MINUTES,
in a SQLite file beside the database that every worker of the host shares (like the
API's rate limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from flask import current_app, request

from console.core.settings import Settings
from console.http.auth import RateLimiter, limiter_path


def _limiter() -> RateLimiter:
    found = current_app.extensions.get("telemetry_login_throttle")
    if found is None:
        settings: Settings = current_app.config["SETTINGS"]
        path = Path(f"{limiter_path(settings)}.logins")
        found = current_app.extensions.setdefault("telemetry_login_throttle", RateLimiter(
            path, settings.login_max_failures, per_seconds=settings.login_window_minutes * 60.0))
    return found


def client_address() -> str:
    return request.remote_addr or "unknown"


def keys_for(username: str) -> list[str]:
    """The buckets an attempt counts against: its address, and its user name (token logins have none)."""
    keys = [f"ip:{client_address()}"]
    if username:
        keys.append(f"user:{username.lower()[:200]}")
    return keys


def take(username: str) -> tuple[Optional[int], list[str]]:
    """Take a try for this attempt: (None, taken keys) when allowed, (retry_after, []) when throttled."""
    limiter = _limiter()
    taken: list[str] = []
    for key in keys_for(username):
        allowed, _remaining, retry_after = limiter.hit(key)
        if not allowed:
            give_back(taken)
            return retry_after, []
        taken.append(key)
    return None, taken


def give_back(keys: list[str]) -> None:
    limiter = _limiter()
    for key in keys:
        limiter.refund(key)
