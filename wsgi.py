"""gunicorn entry point: `gunicorn wsgi:app` (use `python -m console serve`)."""

from console.app import create_app

app = create_app()
