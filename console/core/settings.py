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
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.core.secret_files import with_secret_files
from console.core.values import (  # noqa: F401  (SettingsError: callers import it from here)
    SettingsError,
    as_bool,
    as_choice,
    as_database_url,
    as_git_hosts,
    as_headers,
    as_http_url,
    as_int,
    as_list,
    as_schedule,
    as_text,
    mask_url,
    url_origin,
)

APP_NAME = "local-telemetry"


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


# name -> (attribute, parser, default). The default is already parsed.
_SPEC: dict[str, tuple[str, Callable[[str, str], Any], Any]] = {
    "TELEMETRY_DB_PATH": ("db_path_raw", as_text, ""),
    "TELEMETRY_DATABASE_URL": ("database_url_raw", as_database_url, ""),
    "TELEMETRY_API_HOST": ("api_host", as_text, "127.0.0.1"),
    "TELEMETRY_API_PORT": ("api_port", as_int(1, 65535), 8765),
    "TELEMETRY_API_WORKERS": ("api_workers", as_int(1, 64), 1),
    "TELEMETRY_API_THREADS": ("api_threads", as_int(1, 256), 8),
    "TELEMETRY_API_TIMEOUT": ("api_timeout", as_int(1), 60),
    "TELEMETRY_API_REQUEST_DEADLINE": ("api_request_deadline", as_int(1, 3600), 30),
    "TELEMETRY_AUTO_UPGRADE": ("auto_upgrade", as_bool, True),
    "TELEMETRY_DB_JOURNAL_MODE": ("db_journal_mode", as_choice("DELETE", "WAL"), "DELETE"),
    "TELEMETRY_DB_SYNCHRONOUS": ("db_synchronous", as_choice("FULL", "NORMAL"), "FULL"),
    "TELEMETRY_DB_BUSY_TIMEOUT_MS": ("db_busy_timeout_ms", as_int(0), 5000),
    "TELEMETRY_DB_MMAP_BYTES": ("db_mmap_bytes", as_int(0), 256 * 1024 * 1024),
    "TELEMETRY_ANSWER_CACHE_ENTRIES": ("answer_cache_entries", as_int(0, 10000), 32),
    "TELEMETRY_API_AUTH_ENABLED": ("auth_enabled", as_bool, False),
    "TELEMETRY_API_AUTH_TOKEN": ("auth_tokens", as_list, ()),
    "TELEMETRY_API_AUTH_READS": ("auth_reads", as_bool, False),
    "TELEMETRY_AGENT_TOKENS": ("agent_tokens", as_list, ()),
    "TELEMETRY_OPERATOR_TOKENS": ("operator_tokens", as_list, ()),
    "TELEMETRY_ALLOWED_HOSTS": ("allowed_hosts", as_list, ()),
    "TELEMETRY_SESSION_HOURS": ("session_hours", as_int(1, 24 * 365), 12),
    "TELEMETRY_LOGIN_MAX_FAILURES": ("login_max_failures", as_int(1, 1000), 10),
    "TELEMETRY_LOGIN_WINDOW_MINUTES": ("login_window_minutes", as_int(1, 24 * 60), 15),
    "TELEMETRY_RATE_LIMIT_ENABLED": ("rate_limit_enabled", as_bool, False),
    "TELEMETRY_RATE_LIMIT_RPM": ("rate_limit_rpm", as_int(1), 600),
    "TELEMETRY_MAX_BODY_BYTES": ("max_body_bytes", as_int(1024), 10 * 1024 * 1024),
    "TELEMETRY_MAX_BATCH_ITEMS": ("max_batch_items", as_int(1), 5000),
    "TELEMETRY_STALE_THRESHOLD_MINUTES": ("stale_threshold_minutes", as_int(0), 60),
    "TELEMETRY_GIT_HOSTS": ("git_hosts", as_git_hosts, ()),
    "GOOGLE_SHEETS_API_ENABLED": ("google_sheets_enabled", as_bool, False),
    "TELEMETRY_SECRET_KEY": ("secret_key_raw", as_text, ""),
    "TELEMETRY_COOKIE_SECURE": ("cookie_secure", as_bool, False),
    "TELEMETRY_TRUSTED_PROXIES": ("trusted_proxies", as_int(0, 10), 0),
    "TELEMETRY_LOG_LEVEL": ("log_level", as_choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
    "TELEMETRY_LOG_FORMAT": ("log_format", as_choice("text", "json"), "text"),
    "TELEMETRY_SCHEDULER_ENABLED": ("scheduler_enabled", as_bool, False),
    # Scheduled jobs (console/jobs, docs/jobs.md).
    "TELEMETRY_SCHEDULER_LEASE_SECONDS": ("scheduler_lease_seconds", as_int(2), 30),
    "TELEMETRY_JOB_HISTORY_DAYS": ("job_history_days", as_int(1), 30),
    "TELEMETRY_RETENTION_DAYS": ("retention_days", as_int(0), 0),
    "TELEMETRY_RETENTION_BATCH_SIZE": ("retention_batch_size", as_int(1), 5000),
    "TELEMETRY_RETENTION_SCHEDULE": ("retention_schedule", as_schedule, "30 3 * * *"),
    "TELEMETRY_RETENTION_VACUUM": ("retention_vacuum", as_bool, False),
    "TELEMETRY_BACKUP_SCHEDULE": ("backup_schedule", as_schedule, "0 2 * * *"),
    "TELEMETRY_BACKUP_KEEP": ("backup_keep", as_int(1), 7),
    "TELEMETRY_BACKUP_COMPRESS": ("backup_compress", as_bool, False),
    "TELEMETRY_PG_BIN_DIR": ("pg_bin_dir", as_text, ""),
    "TELEMETRY_EXPORT_SCHEDULE": ("export_schedule", as_schedule, "60"),
    "TELEMETRY_EXPORT_WEBHOOK_URLS": ("export_webhook_urls", as_list, ()),
    "TELEMETRY_EXPORT_WEBHOOK_TOKEN": ("export_webhook_token", as_text, ""),
    "TELEMETRY_EXPORT_WEBHOOK_SECRET": ("export_webhook_secret", as_text, ""),
    "TELEMETRY_EXPORT_MAX_ATTEMPTS": ("export_max_attempts", as_int(1), 5),
    "TELEMETRY_EXPORT_TIMEOUT_MS": ("export_timeout_ms", as_int(50), 10000),
    "TELEMETRY_EXPORT_OTLP_ENDPOINT": ("export_otlp_endpoint", as_http_url, ""),
    "TELEMETRY_EXPORT_OTLP_HEADERS": ("export_otlp_headers", as_headers, ()),
    "GOOGLE_SHEETS_API_URL": ("google_sheets_url", as_text, ""),
    "GOOGLE_SHEETS_API_TOKEN": ("google_sheets_token", as_text, ""),
    "TELEMETRY_STALE_SWEEP_MINUTES": ("stale_sweep_minutes", as_int(0), 0),
    "TELEMETRY_STALE_SWEEP_SCHEDULE": ("stale_sweep_schedule", as_schedule, "60"),
    "TELEMETRY_ROLLUP_RECONCILE_SCHEDULE": ("rollup_reconcile_schedule", as_schedule, "60"),
    # Alerts (console/alerts, docs/alerts.md).
    "TELEMETRY_ALERT_WEBHOOK_SECRET": ("alert_webhook_secret", as_text, ""),
    "TELEMETRY_SMTP_URL": ("smtp_url", as_text, ""),
    "TELEMETRY_ALERT_EVALUATE_SECONDS": ("alert_evaluate_seconds", as_int(1, 3600), 15),
    "TELEMETRY_ALERT_STORM_THRESHOLD": ("alert_storm_threshold", as_int(1), 10),
    "TELEMETRY_ALERT_MAX_ATTEMPTS": ("alert_max_attempts", as_int(1, 100), 10),
    "TELEMETRY_ALERT_TIMEOUT_MS": ("alert_timeout_ms", as_int(50, 120_000), 10000),
    "TELEMETRY_ALERT_CONSOLE_URL": ("alert_console_url", as_text, ""),
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
    answer_cache_entries: int
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
                value = mask_url(value)
            elif isinstance(value, tuple):
                value = ",".join("=".join(v) if isinstance(v, tuple) else v for v in value)
            out[name] = value
        out["(database)"] = mask_url(self.database_url)
        return out


def secret_file_variables() -> list[str]:
    """The settings that also accept `NAME_FILE`: those `describe()` masks."""
    masked = SECRET_ATTRIBUTES | {"database_url_raw"}
    return [name for name, (attr, _parser, _default) in _SPEC.items() if attr in masked]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Parse settings from `environ` (default: os.environ); keyword overrides win."""
    env = with_secret_files(os.environ if environ is None else environ, secret_file_variables())
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
