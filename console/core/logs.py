"""Logging: text or one JSON object per line, at the configured level.

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


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, the message on one line; traceback lines marked."""

    def format(self, record: logging.LogRecord) -> str:
        msg, args = record.msg, record.args
        record.msg, record.args = escape_control(record.getMessage()), None
        try:
            text = super().format(record)
        finally:
            record.msg, record.args = msg, args
        head, newline, rest = text.partition("\n")
        if not newline:
            return head
        lines = [escape_control(line) for line in rest.split("\n")]
        return head + "".join("\n  | " + line for line in lines)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("console")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # urllib3 logs each request's path at DEBUG; an export webhook's path is its secret.
    logging.getLogger("urllib3").setLevel(logging.INFO)
