"""How one environment variable's text becomes a typed setting, or a one-line SettingsError.

Each parser takes the variable's name (for the message) and its raw text. URLs in
messages are masked, since a database URL may hold a password.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote, urlsplit


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


def as_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not allowed: use true or false")


def as_int(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise SettingsError(f"{name}={raw!r} is not allowed: use a whole number of at least {minimum}{upper}")
        return value

    return parse


def as_choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise SettingsError(f"{name}={raw!r} is not allowed: use one of {', '.join(allowed)}")

    return parse


def as_text(name: str, raw: str) -> str:
    return raw.strip()


def as_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def as_database_url(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("sqlite", "postgresql")):
        raise SettingsError(f"{name}={mask_url(value)!r} is not allowed: use a sqlite:/// or postgresql+psycopg:// URL")
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


def as_git_hosts(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """Parse `host=flavour,host=flavour` (flavour: github, gitlab, bitbucket)."""
    pairs = []
    for part in as_list(name, raw):
        host, _, flavour = part.partition("=")
        if flavour.strip().lower() not in ("github", "gitlab", "bitbucket") or not host.strip():
            raise SettingsError(f"{name}={raw!r} is not allowed: use host=github|gitlab|bitbucket, comma-separated")
        pairs.append((host.strip().lower(), flavour.strip().lower()))
    return tuple(pairs)


def as_schedule(name: str, raw: str) -> str:
    """A job schedule: seconds between runs (0 = off) or a 5-field cron expression (UTC)."""
    value = " ".join(raw.split())
    if value.isdigit():
        return str(int(value))
    try:
        from apscheduler.triggers.cron import CronTrigger

        if len(value.split()) != 5:
            raise ValueError("not 5 fields")
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not allowed: use seconds between runs (0 = off) or a cron expression like '30 3 * * *'"
        ) from None
    return value


def as_http_url(name: str, raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name}={mask_url(value)!r} is not allowed: use a full http:// or https:// URL")
    return value


def as_headers(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """Parse `key=value,key=value` as OTEL_EXPORTER_OTLP_HEADERS does (values may be %-encoded)."""
    pairs = []
    for part in as_list(name, raw):
        key, sep, value = part.partition("=")
        key, value = key.strip(), unquote(value.strip())
        if not sep or not _HEADER_NAME.match(key) or not value or any(c in value for c in "\r\n\0"):
            raise SettingsError(f"{name}=*** is not allowed: use key=value pairs, comma-separated "
                                "(a header name, then its value; %-encode commas)")
        pairs.append((key, value))
    return tuple(pairs)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL: no credentials, path, query or fragment."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a port that is not a number, a bracket left open
        return "(unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


def mask_url(url: str) -> str:
    """Hide the password in a database URL."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"
