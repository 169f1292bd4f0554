"""Configuration: environment variables, then defaults; never raises."""

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

logger = logging.getLogger("telemetry")

DEFAULT_API_URL = "http://localhost:8765"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_base_dir(environ: Optional[Mapping[str, str]] = None, platform: Optional[str] = None) -> Path:
    """Return TELEMETRY_BASE_DIR, else the legacy AGENT_METRICS_DIR, else the platform's default.

    The console's `console.core.settings.default_base_dir` keeps the same rule;
    tests/test_base_dir_rule.py runs both against one table of cases.
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    explicit = environ.get("TELEMETRY_BASE_DIR") or environ.get("AGENT_METRICS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    in_container = os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")
    if in_container and os.path.isdir("/data") and os.access("/data", os.W_OK):
        return Path("/data")
    home = Path(environ.get("HOME") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Application Support" / "local-telemetry"
    if platform.startswith("win"):
        local = environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(local) / "local-telemetry"
    xdg = environ.get("XDG_DATA_HOME") or str(home / ".local" / "share")
    return Path(xdg) / "local-telemetry"


def resolve_base_dir() -> Path:
    """The base directory for this process's environment."""
    return default_base_dir()


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    logger.warning("telemetry: %s=%r is not a boolean; using %s", name, raw, default)
    return default


def _env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        logger.warning("telemetry: %s=%r is not a number; using %s", name, raw, default)
        return default
    if value != value or value < minimum:  # NaN or below the floor
        logger.warning("telemetry: %s=%r is out of range; using %s", name, raw, default)
        return default
    return value


def _env_choice(name: str, default: str, choices: tuple) -> str:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        logger.warning("telemetry: %s=%r is not one of %s; using %s", name, raw, choices, default)
        return default
    return raw


@dataclass
class TelemetryConfig:
    """Every setting of the SDK; `from_env()` reads them, tests may build one directly."""

    metrics_dir: Path = field(default_factory=resolve_base_dir)
    api_url: str = DEFAULT_API_URL
    api_token: Optional[str] = None
    api_enabled: bool = True  # False: spool only; `telemetry sync` or another process delivers
    agent_owner: Optional[str] = None
    disabled: bool = False
    spool_fsync: str = "never"
    flush_timeout: float = 2.0
    heartbeat_seconds: float = 30.0
    retention_days: float = 7.0
    git_detect: bool = True
    batch_size: int = 500
    batch_seconds: float = 1.0
    http_timeout: float = 10.0
    max_backoff: float = 60.0
    max_line_attempts: int = 5

    @property
    def base_dir(self) -> Path:
        """Return the base directory (the older name is `metrics_dir`)."""
        return Path(self.metrics_dir)

    @property
    def ndjson_dir(self) -> Path:
        """Return the spool directory, `{base}/raw`."""
        return self.base_dir / "raw"

    @classmethod
    def from_env(cls) -> "TelemetryConfig":
        """Read the configuration from TELEMETRY_* variables (and the older names as fallbacks)."""
        api_url = (
            (os.environ.get("TELEMETRY_API_URL") or os.environ.get("METRICS_API_URL") or DEFAULT_API_URL)
            .strip()
            .rstrip("/")
        )
        if not api_url.startswith(("http://", "https://")):
            logger.warning("telemetry: API URL %r is not http(s); using %s", api_url, DEFAULT_API_URL)
            api_url = DEFAULT_API_URL
        token = os.environ.get("TELEMETRY_API_TOKEN") or os.environ.get("TELEMETRY_API_AUTH_TOKEN")
        if token and "," in token:  # the console accepts several; a client sends one
            token = token.split(",")[0].strip()
        return cls(
            metrics_dir=resolve_base_dir(),
            api_url=api_url,
            api_token=token or None,
            api_enabled=_env_bool("TELEMETRY_API_ENABLED", _env_bool("METRICS_API_ENABLED", True)),
            agent_owner=os.environ.get("AGENT_OWNER") or None,
            disabled=_env_bool("TELEMETRY_DISABLED", False),
            spool_fsync=_env_choice("TELEMETRY_SPOOL_FSYNC", "never", ("never", "always")),
            flush_timeout=_env_float("TELEMETRY_FLUSH_TIMEOUT", 2.0),
            heartbeat_seconds=_env_float("TELEMETRY_HEARTBEAT_SECONDS", 30.0),
            retention_days=_env_float("TELEMETRY_SPOOL_RETENTION_DAYS", 7.0),
            git_detect=_env_bool("TELEMETRY_GIT_DETECT", True),
            max_line_attempts=int(_env_float("TELEMETRY_MAX_LINE_ATTEMPTS", 5, minimum=1)),
        )

    def __str__(self) -> str:
        token = "***REDACTED***" if self.api_token else None
        return (
            f"TelemetryConfig(base_dir={self.base_dir}, api_url={self.api_url}, "
            f"api_token={token}, disabled={self.disabled}, spool_fsync={self.spool_fsync})"
        )

    __repr__ = __str__
