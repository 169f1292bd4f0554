"""Logging: text or one JSON object per line, at the configured level.

The request being served is known through `current_request_id` (the HTTP layer
sets it for the length of each request), so every line logged while serving it
carries its id, in both formats.

A log line may carry what a client sent (a path whose %0A was decoded, a header).
In text logs control characters are escaped (`\x0a`), and the lines of a traceback
after a record's first line start with "  | ", so no client can forge a line that
passes for a record. JSON lines are escaped by the encoding.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_PLAIN_ID = re.compile(r"[A-Za-z0-9._:/+=-]+")
_OUR_HANDLER = "_telemetry_console"


def log_time(seconds: float) -> str:
    """A log line's time: UTC, ISO 8601, milliseconds (`2026-01-05T18:40:27.123+00:00`)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


# C0 controls but tab, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# In a quoted field of the access log, the quote and the escape character too.
_QUOTED = re.compile('[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029"\\\\]')


def _hex(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """`text` on one line: control characters (CR, LF, ...) as \\xHH."""
    return _CONTROL.sub(_hex, text)


def escape_quoted(text: str) -> str:
    """`text` fit for a double-quoted log field: control characters, `"` and `\\` as \\xHH."""
    return _QUOTED.sub(_hex, text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, pid, message (+ request_id, exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": log_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode(entry)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request_id=...]: message`, the message on one line; traceback lines marked.

    The request id may come from the client: quoted unless plain, so it cannot fake other fields.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_part)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = current_request_id.get()
        if request_id is None:
            record.request_part = ""
        else:
            shown = request_id if _PLAIN_ID.fullmatch(request_id) else escape_control(json.dumps(request_id))
            record.request_part = f" request_id={shown}"
        msg, args = record.msg, record.args
        record.msg, record.args = escape_control(record.getMessage()), None
        try:
            text = super().format(record)
        finally:
            record.msg, record.args = msg, args
        head, newline, rest = text.partition("\n")
        if not newline:
            return head
        return head + "".join("\n  | " + escape_control(line) for line in rest.split("\n"))


def formatter_for(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def _install(logger: logging.Logger, handler: logging.Handler) -> None:
    """Replace our earlier handler on `logger`, leaving other handlers (a test's, say) alone."""
    setattr(handler, _OUR_HANDLER, True)
    logger.handlers[:] = [h for h in logger.handlers if not getattr(h, _OUR_HANDLER, False)] + [handler]


def configure_logging(level: str, fmt: str) -> None:
    """The console's loggers at `level`; other libraries' warnings in the same format, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(fmt))
    root = logging.getLogger("console")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Without a handler on the root logger, a library's warning (APScheduler's, a
    # Python warning) would reach stderr as bare text through logging's last resort.
    others = logging.StreamHandler(sys.stderr)
    others.setLevel(logging.WARNING)
    others.setFormatter(formatter_for(fmt))
    _install(logging.getLogger(), others)
    logging.captureWarnings(True)
    # urllib3 logs each request's path at DEBUG; an export webhook's path is its secret.
    logging.getLogger("urllib3").setLevel(logging.INFO)
