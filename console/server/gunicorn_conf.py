"""gunicorn settings for `python -m console serve`, all from TELEMETRY_* settings."""

from console.core.logs import configure_logging
from console.core.settings import load_settings

_settings = load_settings()
# The master's own lines (its hooks, libraries' warnings) in the configured format too.
configure_logging(_settings.log_level, _settings.log_format)

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
worker_class = "console.server.worker.ConsoleThreadWorker"
threads = _settings.api_threads
# Connections a worker holds at once (gunicorn's default is 1,000). A connection still
# sending its request costs the worker's loop a few kB and leaves at its deadline, so a
# thousand slow clients must not be enough to stop it accepting others.
worker_connections = 4096
timeout = _settings.api_timeout
graceful_timeout = 30
keepalive = 5
preload_app = False  # each worker opens its own engine and scheduler
accesslog = "-"  # on stderr, beside gunicorn's and the app's lines (console/server/access_log.py)
errorlog = "-"
loglevel = _settings.log_level.lower()
# gunicorn would believe X-Forwarded-Proto from any loopback client (so a local page or
# script could claim HTTPS); proxies are trusted only by TELEMETRY_TRUSTED_PROXIES (ProxyFix).
secure_scheme_headers: dict[str, str] = {}
# The access line is built by our logger class (gunicorn's cost 87 µs per request).
logger_class = f"console.server.access_log.{'Json' if _settings.log_format == 'json' else 'Text'}AccessLogger"


def on_starting(server):
    if not _settings.binds_loopback and not _settings.auth_enabled:
        server.log.warning(
            "SECURITY: listening on %s (beyond loopback) with auth off: anyone who can reach this port can "
            "read, write and delete runs. Set TELEMETRY_API_AUTH_ENABLED=true with TELEMETRY_OPERATOR_TOKENS and "
            "TELEMETRY_AGENT_TOKENS, or TELEMETRY_API_HOST=127.0.0.1.",
            bind,
        )
    # A serving console holds a shared lock on {db_path}.serving.lock: `restore` refuses while it is held.
    from console.jobs.serving import hold_serving_lock

    hold_serving_lock(_settings)


def post_fork(server, worker):
    # The scheduler starts in each worker only when TELEMETRY_SCHEDULER_ENABLED (serve sets it); one leads.
    from console.jobs.scheduler import start_in_worker

    start_in_worker(_settings)


def post_worker_init(worker):
    # The app is loaded: move its long-lived objects (modules, models, templates) out
    # of the collector's reach, so that a full collection no longer walks them all
    # (those pauses added 40-60 ms to one request in ten at 1,000,000 runs).
    import gc

    gc.freeze()
