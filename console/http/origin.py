"""Which `Host` names the console answers, and which browsers may post to the API.

DNS rebinding: a web page can point its own name at 127.0.0.1 and then read and
write a console on loopback from the victim's browser; its requests carry the
page's name in `Host`. So a console bound to loopback answers only `localhost` and
loopback addresses (any port) unless TELEMETRY_ALLOWED_HOSTS says otherwise; a
console bound beyond loopback answers any name (agents reach a container by its
service name) unless that setting lists them. Loopback names are always answered.

Cross-site posts: the API's writes take no cookie, but with auth off a page on
another site could still post to them (the heartbeat needs no JSON content type).
A browser says where a request comes from (`Origin`, `Sec-Fetch-Site`); API writes
from anything but the console's own origin are refused. `same-site` is refused too:
a sibling name or another port on localhost is another program. Clients that send
neither header (curl, the SDK) are not browsers and pass.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from console.core.settings import Settings, is_loopback_host
from console.http.auth import is_api_path
from console.http.errors import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BROWSER_SITES_ALLOWED = frozenset({"same-origin", "none"})


def host_name(host: str) -> str:
    """The name of a `Host` value without its port: `[::1]:8765` -> `::1`, `Example:80` -> `example`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(host: str, settings: Settings) -> bool:
    """Loopback names always (no rebinding page carries them; health checks use them),
    plus the listed names, or any name when bound beyond loopback and none are listed."""
    name = host_name(host)
    if name and is_loopback_host(name):
        return True
    if settings.allowed_hosts:
        return any(entry == "*" or host_name(entry) == name for entry in settings.allowed_hosts)
    return not settings.binds_loopback


def cross_site_reason() -> Optional[str]:
    """Why this request came from another site's page, or None."""
    site = (request.headers.get("Sec-Fetch-Site") or "").strip().lower()
    if site and site not in BROWSER_SITES_ALLOWED:
        return f"Sec-Fetch-Site: {site}"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    netloc = urlsplit(origin.strip()).netloc.lower()
    if not netloc or netloc != request.host.lower():
        return "Origin is not this console"
    return None


def refuse(status: int, detail: str):
    if is_api_path(request.path):
        return error_response(status, detail)
    return current_app.response_class(detail, status=status, mimetype="text/plain")


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]

    @app.before_request
    def check_host():
        if not host_allowed(request.host, settings):
            return refuse(400, "this console does not answer to that Host name; "
                               "list it in TELEMETRY_ALLOWED_HOSTS to allow it")
        return None

    @app.before_request
    def refuse_cross_site_api_writes():
        if request.method in SAFE_METHODS or not is_api_path(request.path):
            return None
        reason = cross_site_reason()
        if reason is not None:
            return refuse(403, f"cross-site request refused ({reason}): API writes come from "
                               "clients (the SDK, curl), not from another site's page")
        return None
