"""Logging: text or one JSON object per line, at the configured level.

`configure_logging` sets up the console's loggers and, for everything else (the
scheduler library, Python warnings), the root logger at WARNING, in the same format,
so that with TELEMETRY_LOG_FORMAT=json every line on stderr is JSON. `context`
returns extra fields for the line being written (the app passes the request id).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

LogContext = Callable[[], Mapping[str, Any]]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _no_context() -> Mapping[str, Any]:
    return {}


class ContextFilter(logging.Filter):
    """Puts the fields of `context()` on each record (as record.context)."""

    def __init__(self, context: LogContext):
        super().__init__()
        self.context = context

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = dict(self.context())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The text line, with the context as `key=value` after the message (escaped: a
    client-chosen request id cannot start a line of its own)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = getattr(record, "context", {})
        if extra:
            fields = " ".join(f"{key}={str(value).encode('unicode_escape').decode('ascii')}"
                              for key, value in extra.items())
            head, sep, rest = line.partition("\n")  # keep a traceback below the first line
            line = f"{head} {fields}{sep}{rest}"
        return line


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


class _ConsoleHandler(logging.StreamHandler):
    """Ours, so that configuring again replaces it and leaves other handlers alone."""


def configure_logging(level: str, fmt: str, context: LogContext | None = None) -> None:
    handler = _ConsoleHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter(context or _no_context))
    root = logging.getLogger("console")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Other libraries' warnings and errors, and Python's warnings, in the same format.
    logging.captureWarnings(True)
    everything = logging.getLogger()
    everything.handlers[:] = [h for h in everything.handlers if not isinstance(h, _ConsoleHandler)] + [handler]
    everything.setLevel(max(logging.WARNING, logging.getLevelName(level)))
