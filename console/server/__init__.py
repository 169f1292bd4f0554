"""Serving: gunicorn's settings, the console's worker and its access log."""
