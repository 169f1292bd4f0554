"""`python -m console <command>`: serve, db, settings, and what the other modules here add.

A command is a function decorated with `@command(...)` (`registry.py`); its arguments
are declared with `arg(...)`. Adding one is a few lines in a module of this package,
imported below.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from console import __version__
from console.cli import commands, jobs, rollups, users  # noqa: F401
from console.cli.registry import COMMANDS
from console.core.files import restrict_umask
from console.core.logs import configure_logging
from console.core.settings import SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m console", description="Local Telemetry console.")
    parser.add_argument("--version", action="version", version=f"local-telemetry-console {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_func, help_text, args) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        for names, options in args:
            sp.add_argument(*names, **options)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    restrict_umask()  # before any file is made; gunicorn's workers inherit it
    parser = build_parser()
    options = parser.parse_args(argv)
    if not options.command:
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    func = COMMANDS[options.command][0]
    return func(settings, options) or 0
