"""gunicorn entry point at the repository root: `gunicorn wsgi:app` (`python -m console serve` uses console.server.wsgi)."""

from console.server.wsgi import app  # noqa: F401
