"""gunicorn's entry point: `console.server.wsgi:app` (start it with `python -m console serve`)."""

from console.app import create_app

app = create_app()
