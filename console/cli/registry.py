"""The registry of `python -m console` commands.

A command is a function decorated with `@command(...)` in a module of this
package; its arguments are declared with `arg(...)`. `console.cli.main` imports
every command module, so that a new one is registered by adding it there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

COMMANDS: dict[str, tuple[Callable, str, list[tuple[tuple, dict]]]] = {}


def arg(*names, **options) -> tuple[tuple, dict]:
    return names, options


def command(name: str, help: str, *args: tuple[tuple, dict]) -> Callable:
    """Register `func(settings, options) -> int` as `python -m console <name>`."""

    def decorator(func: Callable) -> Callable:
        COMMANDS[name] = (func, help, list(args))
        return func

    return decorator


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
