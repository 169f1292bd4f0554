"""The built-in commands: serve, db, settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from console.cli.registry import arg, command, print_json
from console.core.settings import Settings
from console.store import migrate

# The installed (or checked-out) `console` package.
PACKAGE = Path(__file__).resolve().parents[1]


@command(
    "serve",
    "Upgrade the schema (under a lock) and serve the console with gunicorn.",
    arg("--no-upgrade", action="store_true", help="do not apply migrations first"),
)
def serve(settings: Settings, options) -> int:
    if settings.auto_upgrade and not options.no_upgrade:
        migrate.upgrade(settings)
    env = dict(os.environ)
    # The scheduler runs by default under `serve` (only there), unless switched off.
    env.setdefault("TELEMETRY_SCHEDULER_ENABLED", "true")
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", str(PACKAGE / "server" / "gunicorn_conf.py"),
        "console.server.wsgi:app",
    ]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached


@command(
    "db",
    "Manage the schema: upgrade, downgrade, current, history.",
    arg("action", choices=["upgrade", "downgrade", "current", "history"]),
    arg("revision", nargs="?", help="target revision (upgrade: head; downgrade: required, e.g. base)"),
)
def db(settings: Settings, options) -> int:
    if options.action == "upgrade":
        migrate.upgrade(settings, options.revision or "head")
        print(f"schema at {migrate.current_revision(settings)}")
    elif options.action == "downgrade":
        if not options.revision:
            print("error: downgrade needs a revision, e.g. `db downgrade base`", file=sys.stderr)
            return 2
        migrate.downgrade(settings, options.revision)
        print(f"schema at {migrate.current_revision(settings) or 'base'}")
    elif options.action == "current":
        print(migrate.current_revision(settings) or "base (empty)")
    else:
        for line in migrate.history():
            print(line)
    return 0


@command("settings", "Print the effective settings (secrets masked).")
def show_settings(settings: Settings, options) -> int:
    print_json(settings.describe())
    return 0
