"""gunicorn settings for `python -m console serve`, all from TELEMETRY_* settings."""

from console.core.settings import load_settings

_settings = load_settings()

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
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
# The access line is built by our logger class (gunicorn's cost 87 µs per request).
logger_class = f"console.server.access_log.{'Json' if _settings.log_format == 'json' else 'Text'}AccessLogger"


def on_starting(server):
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
