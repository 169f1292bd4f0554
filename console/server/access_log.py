"""gunicorn's access log, each line built straight from the few fields it shows.

gunicorn's `Logger.access` builds some fifty atoms for every request (each request
and response header, the whole WSGI environ) and fills its template through a
Python-level mapping: 87 µs per request here, a tenth of a single POST's CPU.
These logger classes write the same lines for a quarter of that:

- `TextAccessLogger`: gunicorn's default ("combined") line, each field the client
  chose (request line, user, referer, user agent) escaped: control characters, `"`
  and backslash as `\\xHH`, so that no field can end its quotes or the line.
- `JsonAccessLogger` (TELEMETRY_LOG_FORMAT=json): one JSON object per request,
  encoded as JSON (gunicorn's template put header values between quotes as they
  came, so a request id holding a `"` broke the line), with its time; gunicorn's
  own lines (start, workers, signals, errors) become JSON objects too.

Both write to stderr, gunicorn's lines and the app's included, so that one stream
holds every line in order.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from datetime import timedelta
from typing import Any

from gunicorn import glogging

from console.core.logs import JsonFormatter, escape_quoted, log_time


class _AccessLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        cfg = self.cfg
        # gunicorn's own test, asked once instead of per request (each setting read costs).
        self._logs_access = bool(
            cfg.accesslog
            or cfg.logconfig
            or cfg.logconfig_dict
            or cfg.logconfig_json
            or (cfg.syslog and not cfg.disable_redirect_access_to_syslog)
        )
        for handler in self.access_log.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
        if self.error_formatter is not None:
            for handler in self.error_log.handlers:
                handler.setFormatter(self.error_formatter)

    # gunicorn's own lines keep its text form unless a subclass says otherwise.
    error_formatter: logging.Formatter | None = None

    def access(self, resp, req, environ, request_time: timedelta) -> None:
        if not self._logs_access:
            return
        try:
            self.access_log.info(self.line(resp, environ, request_time))
        except Exception:
            self.error(traceback.format_exc())

    def line(self, resp, environ: dict[str, Any], request_time: timedelta) -> str:
        raise NotImplementedError


def _status(resp) -> str:
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else str(status)


def _request(environ: dict[str, Any]) -> str:
    return f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"


def _sent(resp) -> str:
    sent = getattr(resp, "sent", None)
    return str(sent) if sent is not None else "-"


class TextAccessLogger(_AccessLogger):
    """The combined log format: `h l u t "r" s b "f" "a"`."""

    def line(self, resp, environ, request_time) -> str:
        user = escape_quoted(self._get_user(environ) or "-").replace(" ", "\\x20")
        return (
            f"{environ.get('REMOTE_ADDR', '-')} - {user} {self.now()} "
            f'"{escape_quoted(_request(environ))}" {_status(resp)} {_sent(resp)} '
            f'"{escape_quoted(environ.get("HTTP_REFERER", "-"))}" "{escape_quoted(environ.get("HTTP_USER_AGENT", "-"))}"'
        )


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder, not one per line


class JsonAccessLogger(_AccessLogger):
    """time, remote, request, status, bytes, ms and the request id the answer carried."""

    error_formatter = JsonFormatter()

    def line(self, resp, environ, request_time) -> str:
        request_id = next((v for k, v in resp.headers if k.lower() == "x-request-id"), "-")
        return _encode(
            {
                "time": log_time(time.time()),
                "remote": environ.get("REMOTE_ADDR", "-"),
                "request": _request(environ),
                "status": int(_status(resp)),
                "bytes": _sent(resp),
                "ms": request_time.seconds * 1000 + request_time.microseconds // 1000,
                "request_id": request_id,
            }
        )
