"""gunicorn settings for `python -m console serve`, all from TELEMETRY_* settings."""

from console.settings import load_settings

_settings = load_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
worker_class = "gthread"
threads = _settings.api_threads
timeout = _settings.api_timeout
graceful_timeout = 30
keepalive = 5
preload_app = False  # each worker opens its own engine and scheduler
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
if _settings.log_format == "json":
    access_log_format = '{"remote":"%(h)s","request":"%(r)s","status":%(s)s,"bytes":"%(b)s","ms":%(M)s,"request_id":"%({x-request-id}o)s"}'
