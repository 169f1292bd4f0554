"""`python -m console <command>`: serve, db, settings, and what later modules add.

A command is a function decorated with `@command(...)`; its arguments are declared
with `arg(...)`. Adding one is a few lines in the module that owns the work.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Optional

from .settings import SettingsError, load_settings

COMMANDS: dict[str, tuple[Callable, str, list[tuple[tuple, dict]]]] = {}


def arg(*names, **options) -> tuple[tuple, dict]:
    return names, options


def command(name: str, help: str, *args: tuple[tuple, dict]) -> Callable:
    """Register `func(settings, options) -> int` as `python -m console <name>`."""

    def decorator(func: Callable) -> Callable:
        COMMANDS[name] = (func, help, list(args))
        return func

    return decorator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m console", description="Local Telemetry console.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_func, help_text, args) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        for names, options in args:
            sp.add_argument(*names, **options)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from . import commands  # noqa: F401  (registers the built-in commands)

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
    func = COMMANDS[options.command][0]
    return func(settings, options) or 0


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
