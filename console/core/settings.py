"""Every TELEMETRY_* setting, parsed and validated once.

`load_settings(environ)` reads the environment (or a dict in tests) and returns a
frozen `Settings`. A bad value raises `SettingsError` whose message is one line
naming the variable, the value and what is allowed. Each secret (and the database
URL) may instead come from a file named by `<NAME>_FILE` (Docker and Kubernetes
secrets), e.g. `TELEMETRY_API_AUTH_TOKEN_FILE=/run/secrets/token`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

APP_NAME = "local-telemetry"


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


def default_base_dir(environ: Mapping[str, str], platform: str = sys.platform) -> Path:
    """TELEMETRY_BASE_DIR, else the older tool's AGENT_METRICS_DIR, else the platform's default.

    The SDK's `telemetry.config.default_base_dir` keeps the same rule (the SDK
    imports nothing of the console); tests/test_base_dir_rule.py runs both against
    one table of cases.
    """
    explicit = environ.get("TELEMETRY_BASE_DIR") or environ.get("AGENT_METRICS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    in_container = os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
    if in_container and os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data")
    home = Path(environ.get("HOME") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP_NAME
    if platform.startswith("win"):
        local = environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(local) / APP_NAME
    xdg = environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(xdg) / APP_NAME


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not allowed: use true or false")


def _int(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
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


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        for option in allowed:
            if value.lower() == option.lower():
                return option
        raise SettingsError(f"{name}={raw!r} is not allowed: use one of {', '.join(allowed)}")

    return parse


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _database_url(name: str, raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("sqlite", "postgresql")):
        raise SettingsError(f"{name}={_mask_url(value)!r} is not allowed: use a sqlite:/// or postgresql+psycopg:// URL")
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        value = "postgresql+psycopg://" + value.split("://", 1)[1]
    return value


def _git_hosts(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """Parse `host=flavour,host=flavour` (flavour: github, gitlab, bitbucket)."""
    pairs = []
    for part in _list(name, raw):
        host, _, flavour = part.partition("=")
        if flavour.strip().lower() not in ("github", "gitlab", "bitbucket") or not host.strip():
            raise SettingsError(f"{name}={raw!r} is not allowed: use host=github|gitlab|bitbucket, comma-separated")
        pairs.append((host.strip().lower(), flavour.strip().lower()))
    return tuple(pairs)


def _schedule(name: str, raw: str) -> str:
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


def _http_url(name: str, raw: str) -> str:
    value = raw.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name}={_mask_url(value)!r} is not allowed: use a full http:// or https:// URL")
    return value


def _headers(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """Parse `key=value,key=value` as OTEL_EXPORTER_OTLP_HEADERS does (values may be %-encoded)."""
    pairs = []
    for part in _list(name, raw):
        key, sep, value = part.partition("=")
        key, value = key.strip(), unquote(value.strip())
        if not sep or not _HEADER_NAME.match(key) or not value or any(c in value for c in "\r\n\0"):
            raise SettingsError(f"{name}=*** is not allowed: use key=value pairs, comma-separated "
                                "(a header name, then its value; %-encode commas)")
        pairs.append((key, value))
    return tuple(pairs)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


# name -> (attribute, parser, default). The default is already parsed.
_SPEC: dict[str, tuple[str, Callable[[str, str], Any], Any]] = {
    "TELEMETRY_DB_PATH": ("db_path_raw", _text, ""),
    "TELEMETRY_DATABASE_URL": ("database_url_raw", _database_url, ""),
    "TELEMETRY_API_HOST": ("api_host", _text, "127.0.0.1"),
    "TELEMETRY_API_PORT": ("api_port", _int(1, 65535), 8765),
    "TELEMETRY_API_WORKERS": ("api_workers", _int(1, 64), 1),
    "TELEMETRY_API_THREADS": ("api_threads", _int(1, 256), 8),
    "TELEMETRY_API_TIMEOUT": ("api_timeout", _int(1), 60),
    "TELEMETRY_API_REQUEST_DEADLINE": ("api_request_deadline", _int(1, 3600), 30),
    "TELEMETRY_AUTO_UPGRADE": ("auto_upgrade", _bool, True),
    "TELEMETRY_DB_JOURNAL_MODE": ("db_journal_mode", _choice("DELETE", "WAL"), "DELETE"),
    "TELEMETRY_DB_SYNCHRONOUS": ("db_synchronous", _choice("FULL", "NORMAL"), "FULL"),
    "TELEMETRY_DB_BUSY_TIMEOUT_MS": ("db_busy_timeout_ms", _int(0), 5000),
    "TELEMETRY_DB_MMAP_BYTES": ("db_mmap_bytes", _int(0), 256 * 1024 * 1024),
    "TELEMETRY_API_AUTH_ENABLED": ("auth_enabled", _bool, False),
    "TELEMETRY_API_AUTH_TOKEN": ("auth_tokens", _list, ()),
    "TELEMETRY_API_AUTH_READS": ("auth_reads", _bool, False),
    "TELEMETRY_AGENT_TOKENS": ("agent_tokens", _list, ()),
    "TELEMETRY_OPERATOR_TOKENS": ("operator_tokens", _list, ()),
    "TELEMETRY_ALLOWED_HOSTS": ("allowed_hosts", _list, ()),
    "TELEMETRY_SESSION_HOURS": ("session_hours", _int(1, 24 * 365), 12),
    "TELEMETRY_LOGIN_MAX_FAILURES": ("login_max_failures", _int(1, 1000), 10),
    "TELEMETRY_LOGIN_WINDOW_MINUTES": ("login_window_minutes", _int(1, 24 * 60), 15),
    "TELEMETRY_RATE_LIMIT_ENABLED": ("rate_limit_enabled", _bool, False),
    "TELEMETRY_RATE_LIMIT_RPM": ("rate_limit_rpm", _int(1), 600),
    "TELEMETRY_MAX_BODY_BYTES": ("max_body_bytes", _int(1024), 10 * 1024 * 1024),
    "TELEMETRY_MAX_BATCH_ITEMS": ("max_batch_items", _int(1), 5000),
    "TELEMETRY_STALE_THRESHOLD_MINUTES": ("stale_threshold_minutes", _int(0), 60),
    "TELEMETRY_GIT_HOSTS": ("git_hosts", _git_hosts, ()),
    "GOOGLE_SHEETS_API_ENABLED": ("google_sheets_enabled", _bool, False),
    "TELEMETRY_SECRET_KEY": ("secret_key_raw", _text, ""),
    "TELEMETRY_COOKIE_SECURE": ("cookie_secure", _bool, False),
    "TELEMETRY_TRUSTED_PROXIES": ("trusted_proxies", _int(0, 10), 0),
    "TELEMETRY_LOG_LEVEL": ("log_level", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
    "TELEMETRY_LOG_FORMAT": ("log_format", _choice("text", "json"), "text"),
    "TELEMETRY_SCHEDULER_ENABLED": ("scheduler_enabled", _bool, False),
    # Scheduled jobs (console/jobs, docs/jobs.md).
    "TELEMETRY_SCHEDULER_LEASE_SECONDS": ("scheduler_lease_seconds", _int(2), 30),
    "TELEMETRY_JOB_HISTORY_DAYS": ("job_history_days", _int(1), 30),
    "TELEMETRY_RETENTION_DAYS": ("retention_days", _int(0), 0),
    "TELEMETRY_RETENTION_BATCH_SIZE": ("retention_batch_size", _int(1), 5000),
    "TELEMETRY_RETENTION_SCHEDULE": ("retention_schedule", _schedule, "30 3 * * *"),
    "TELEMETRY_RETENTION_VACUUM": ("retention_vacuum", _bool, False),
    "TELEMETRY_BACKUP_SCHEDULE": ("backup_schedule", _schedule, "0 2 * * *"),
    "TELEMETRY_BACKUP_KEEP": ("backup_keep", _int(1), 7),
    "TELEMETRY_BACKUP_COMPRESS": ("backup_compress", _bool, False),
    "TELEMETRY_PG_BIN_DIR": ("pg_bin_dir", _text, ""),
    "TELEMETRY_EXPORT_SCHEDULE": ("export_schedule", _schedule, "60"),
    "TELEMETRY_EXPORT_WEBHOOK_URLS": ("export_webhook_urls", _list, ()),
    "TELEMETRY_EXPORT_WEBHOOK_TOKEN": ("export_webhook_token", _text, ""),
    "TELEMETRY_EXPORT_WEBHOOK_SECRET": ("export_webhook_secret", _text, ""),
    "TELEMETRY_EXPORT_MAX_ATTEMPTS": ("export_max_attempts", _int(1), 5),
    "TELEMETRY_EXPORT_TIMEOUT_MS": ("export_timeout_ms", _int(50), 10000),
    "TELEMETRY_EXPORT_OTLP_ENDPOINT": ("export_otlp_endpoint", _http_url, ""),
    "TELEMETRY_EXPORT_OTLP_HEADERS": ("export_otlp_headers", _headers, ()),
    "GOOGLE_SHEETS_API_URL": ("google_sheets_url", _text, ""),
    "GOOGLE_SHEETS_API_TOKEN": ("google_sheets_token", _text, ""),
    "TELEMETRY_STALE_SWEEP_MINUTES": ("stale_sweep_minutes", _int(0), 0),
    "TELEMETRY_STALE_SWEEP_SCHEDULE": ("stale_sweep_schedule", _schedule, "60"),
    "TELEMETRY_ROLLUP_RECONCILE_SCHEDULE": ("rollup_reconcile_schedule", _schedule, "60"),
    # Alerts (console/alerts, docs/alerts.md).
    "TELEMETRY_ALERT_WEBHOOK_SECRET": ("alert_webhook_secret", _text, ""),
    "TELEMETRY_SMTP_URL": ("smtp_url", _text, ""),
    "TELEMETRY_ALERT_EVALUATE_SECONDS": ("alert_evaluate_seconds", _int(1, 3600), 15),
    "TELEMETRY_ALERT_STORM_THRESHOLD": ("alert_storm_threshold", _int(1), 10),
    "TELEMETRY_ALERT_MAX_ATTEMPTS": ("alert_max_attempts", _int(1, 100), 10),
    "TELEMETRY_ALERT_TIMEOUT_MS": ("alert_timeout_ms", _int(50, 120_000), 10000),
    "TELEMETRY_ALERT_CONSOLE_URL": ("alert_console_url", _text, ""),
}

# Values never printed in full.
SECRET_ATTRIBUTES = frozenset(
    {"auth_tokens", "agent_tokens", "operator_tokens", "secret_key_raw", "export_webhook_token", "export_webhook_secret",
     "google_sheets_token", "export_otlp_headers", "alert_webhook_secret", "smtp_url"}
)

# URLs whose path or query may be the secret (Slack, Discord, Apps Script webhooks):
# shown as scheme and host only.
SECRET_PATH_URL_ATTRIBUTES = frozenset({"export_webhook_urls", "google_sheets_url"})


@dataclass(frozen=True)
class Settings:
    """The effective settings; build with `load_settings`, whose _SPEC holds the defaults."""

    base_dir: Path
    db_path_raw: str
    database_url_raw: str
    api_host: str
    api_port: int
    api_workers: int
    api_threads: int
    api_timeout: int
    api_request_deadline: int
    auto_upgrade: bool
    db_journal_mode: str
    db_mmap_bytes: int
    db_synchronous: str
    db_busy_timeout_ms: int
    auth_enabled: bool
    auth_tokens: tuple[str, ...]
    auth_reads: bool
    agent_tokens: tuple[str, ...]
    operator_tokens: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    session_hours: int
    login_max_failures: int
    login_window_minutes: int
    rate_limit_enabled: bool
    rate_limit_rpm: int
    max_body_bytes: int
    max_batch_items: int
    stale_threshold_minutes: int
    git_hosts: tuple[tuple[str, str], ...]
    google_sheets_enabled: bool
    secret_key_raw: str
    cookie_secure: bool
    trusted_proxies: int
    log_level: str
    log_format: str
    scheduler_enabled: bool
    scheduler_lease_seconds: int
    job_history_days: int
    retention_days: int
    retention_batch_size: int
    retention_schedule: str
    retention_vacuum: bool
    backup_schedule: str
    backup_keep: int
    backup_compress: bool
    pg_bin_dir: str
    export_schedule: str
    export_webhook_urls: tuple[str, ...]
    export_webhook_token: str
    export_webhook_secret: str
    export_max_attempts: int
    export_timeout_ms: int
    export_otlp_endpoint: str
    export_otlp_headers: tuple[tuple[str, str], ...]
    google_sheets_url: str
    google_sheets_token: str
    stale_sweep_minutes: int
    stale_sweep_schedule: str
    rollup_reconcile_schedule: str
    alert_webhook_secret: str
    smtp_url: str
    alert_evaluate_seconds: int
    alert_storm_threshold: int
    alert_max_attempts: int
    alert_timeout_ms: int
    alert_console_url: str
    # TELEMETRY_BASE_DIR was set: the console's own files go there, wherever the database is.
    base_dir_set: bool = False

    @property
    def binds_loopback(self) -> bool:
        """True when the server listens on a loopback address only."""
        return is_loopback_host(self.api_host)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def db_path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL."""
        if not self.is_sqlite:
            return None
        if self.database_url_raw:
            return Path(self.database_url_raw.split("///", 1)[1])
        if self.db_path_raw:
            return Path(self.db_path_raw).expanduser()
        return self.base_dir / "db" / "telemetry.sqlite"

    @property
    def database_url(self) -> str:
        if self.database_url_raw:
            return self.database_url_raw
        path = Path(self.db_path_raw).expanduser() if self.db_path_raw else self.base_dir / "db" / "telemetry.sqlite"
        return f"sqlite:///{path}"

    @property
    def state_dir(self) -> Path:
        """Where the console's own files (locks, secret key, backups) live.

        Beside the database when only TELEMETRY_DB_PATH is set (not TELEMETRY_BASE_DIR),
        so that two consoles on two databases never share them; else the base directory.
        """
        if self.db_path_raw and not self.database_url_raw and not self.base_dir_set:
            return Path(self.db_path_raw).expanduser().resolve().parent
        return self.base_dir

    @property
    def backup_dir(self) -> Path:
        return self.state_dir / "backups"

    def lock_path(self, purpose: str) -> Path:
        """A lock file for `purpose` (upgrade, leader, serving), unique to this database."""
        if self.db_path is not None:
            return Path(f"{self.db_path}.{purpose}.lock")
        return self.state_dir / f"postgresql.{purpose}.lock"

    def secret_key(self) -> str:
        """The key that signs sessions and CSRF tokens, shared by all workers.

        When unset, one is generated into `secret_key` (mode 0600) in the state dir.
        """
        if self.secret_key_raw:
            return self.secret_key_raw
        path = self.state_dir / "secret_key"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()

    def describe(self) -> dict[str, Any]:
        """The effective settings by variable name, secrets masked."""
        out: dict[str, Any] = {"TELEMETRY_BASE_DIR": str(self.base_dir)}
        for name, (attr, _parser, _default) in _SPEC.items():
            value = getattr(self, attr)
            if attr in SECRET_ATTRIBUTES:
                value = "***" if value else ""
            elif attr in SECRET_PATH_URL_ATTRIBUTES:
                urls = value if isinstance(value, tuple) else (value,) if value else ()
                value = ",".join(url_origin(url) + "/***" for url in urls)
            elif attr == "database_url_raw":
                value = _mask_url(value)
            elif isinstance(value, tuple):
                value = ",".join("=".join(v) if isinstance(v, tuple) else v for v in value)
            out[name] = value
        out["(database)"] = _mask_url(self.database_url)
        return out


# A secret in a file (Docker and Kubernetes secrets) is small; anything bigger is a wrong path.
SECRET_FILE_MAX_BYTES = 64 * 1024


def secret_file_variables() -> list[str]:
    """The settings that also accept `NAME_FILE`: those `describe()` masks."""
    masked = SECRET_ATTRIBUTES | {"database_url_raw"}
    return [name for name, (attr, _parser, _default) in _SPEC.items() if attr in masked]


def _read_secret_file(variable: str, path: str) -> str:
    """The secret in `path`, its trailing newline stripped; a one-line SettingsError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hang the start
    except OSError as exc:
        raise SettingsError(f"{variable}={path!r} cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SettingsError(f"{variable}={path!r} is not allowed: name a regular file that holds the secret")
        data = os.read(fd, SECRET_FILE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise SettingsError(f"{variable}={path!r} is not allowed: the file is larger than {SECRET_FILE_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}={path!r} is not allowed: the file is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env` with each `NAME_FILE` read into `NAME`; both set is an error (which one would win?)."""
    read: dict[str, str] = {}
    for name in secret_file_variables():
        path = env.get(f"{name}_FILE", "")
        if not path.strip():
            continue
        if (env.get(name) or "").strip():
            raise SettingsError(f"{name} and {name}_FILE are both set: set only one of them")
        read[name] = _read_secret_file(f"{name}_FILE", path.strip())
    return {**env, **read} if read else env


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


def _mask_url(url: str) -> str:
    """Hide the password in a database URL."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Parse settings from `environ` (default: os.environ); keyword overrides win."""
    env = _with_secret_files(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for name, (attr, parser, default) in _SPEC.items():
        raw = env.get(name)
        values[attr] = default if raw is None or raw.strip() == "" else parser(name, raw)
    values["base_dir"] = default_base_dir(env)
    values["base_dir_set"] = bool(env.get("TELEMETRY_BASE_DIR"))
    values.update(overrides)
    settings = Settings(**values)
    if settings.auth_enabled and not (settings.auth_tokens or settings.operator_tokens or settings.agent_tokens):
        raise SettingsError(
            "TELEMETRY_API_AUTH_TOKEN='' is not allowed when TELEMETRY_API_AUTH_ENABLED=true: set one or more tokens "
            "(TELEMETRY_OPERATOR_TOKENS, TELEMETRY_AGENT_TOKENS or TELEMETRY_API_AUTH_TOKEN)"
        )
    return settings


def documented_variables() -> list[str]:
    """Every variable the settings read, for the docs test."""
    return ["TELEMETRY_BASE_DIR", *_SPEC]
