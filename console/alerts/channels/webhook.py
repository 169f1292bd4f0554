"""The `webhook` channel: our JSON, POSTed, signed as the export signs (console/jobs/export.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from console.alerts.channels import Delivery, scrub
from console.alerts.message import Message
from console.core.settings import Settings

RETRYABLE_STATUS = {408, 429}


def check(target: str) -> None:
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a webhook target is an http:// or https:// URL")


def mask(target: str) -> str:
    parts = urlsplit(target)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/***"


def signed_headers(secret: str, body: bytes, delivery: str) -> dict[str, str]:
    from console import __version__

    headers = {"Content-Type": "application/json", "User-Agent": f"local-telemetry/{__version__}",
               "Idempotency-Key": delivery, "X-Telemetry-Delivery": delivery}
    if secret:
        stamp = str(int(time.time()))
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers["X-Telemetry-Timestamp"] = stamp
        headers["X-Telemetry-Signature"] = f"sha256={digest}"
    return headers


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta form; an HTTP date is read too)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 86_400))
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(86_400.0, when.timestamp() - time.time()))


def network_error(exc: requests.RequestException) -> str:
    """The failure by its kind only: requests' own text quotes the URL's path and query, which may be secret."""
    text = str(exc).lower()
    for words in ("connection refused", "name or service not known", "timed out", "connection reset",
                  "certificate verify failed", "no route to host"):
        if words in text:
            return f"{type(exc).__name__}: {words}"
    return type(exc).__name__


def send(target: str, message: Message, settings: Settings) -> Delivery:
    document: dict[str, Any] = message.document
    body = json.dumps(document, separators=(",", ":"), default=str).encode()
    headers = signed_headers(settings.alert_webhook_secret, body, message.notification_id)
    try:
        response = requests.post(target, data=body, headers=headers, timeout=settings.alert_timeout_ms / 1000,
                                 allow_redirects=False)
    except requests.RequestException as exc:
        return Delivery("failed", None, network_error(exc))
    status = response.status_code
    if 200 <= status < 300:
        return Delivery("sent", status)
    error = scrub((response.text or response.reason or "")[:500], target, mask(target))
    if status >= 500 or status in RETRYABLE_STATUS:
        return Delivery("failed", status, error, retry_after(response.headers.get("Retry-After")))
    return Delivery("rejected", status, error)
