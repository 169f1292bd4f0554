"""No client can forge a log line: request data in text logs is escaped (real `serve`'s
access log, and the console's own log lines)."""

from __future__ import annotations

import base64
import re
import socket

import pytest

from console.core.logs import configure_logging
from console.domain import runs
from tests.helpers import ConsoleProcess, free_port

FORGED = "1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] \"GET /forged HTTP/1.1\" 200 0 \"-\" \"-\""
# A text-format record of the console's own logger starts with a time and a level.
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def raw_get(port: int, target: bytes, headers: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:  # hang guard
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_access_log_keeps_each_request_on_one_line(env, tmp_path):
    log_path = tmp_path / "console.log"
    console = ConsoleProcess({**env, "TELEMETRY_API_PORT": str(free_port()), "TELEMETRY_LOG_FORMAT": "text"},
                             log_path)
    console.start(timeout=60)
    try:
        user = base64.b64encode(f"evil\n{FORGED}\n:pw".encode()).decode()
        answers = [
            raw_get(console.port, b"/api/v1/runs/x%0A" + FORGED.replace(" ", "%20").encode() + b"?q=%0D%0Aabc"),
            raw_get(console.port, b"/health", b"Authorization: Basic " + user.encode() + b"\r\n"),
            raw_get(console.port, b"/health", b'User-Agent: ua" "' + FORGED.encode() + b"\r\n"
                                               + b'Referer: r"\\x0a' + b"\r\n"),
            raw_get(console.port, "/health?caf\u00e9".encode()),
        ]
        assert all(answer.startswith(b"HTTP/1.1 ") for answer in answers), answers
        # A raw non-ASCII byte in the request line is refused by the server's parser (JSON 400)
        # before the app or the access log sees it.
        assert answers[3].startswith(b"HTTP/1.1 400 ") and b'"detail"' in answers[3]
    finally:
        console.stop()
    lines = log_path.read_text(errors="replace").splitlines()
    access = [line for line in lines if '"GET /' in line and "python-requests" not in line]  # not start()'s polls
    assert len(access) == 3, access
    assert not [line for line in lines if line.startswith("1.2.3.4")], "a forged access line"
    assert "evil\\x0a1.2.3.4\\x20-" in access[1]  # the user, escaped, spaces included (it is unquoted)
    assert '"ua\\x22 \\x221.2.3.4' in access[2] and '"r\\x22\\x5cx0a"' in access[2]
    for line in access:  # h l u t "r" s b "f" "a": three quoted fields, none ended early
        assert line.count('"') == 6, line


def test_console_log_lines_escape_a_decoded_newline_and_mark_traceback_lines(client, monkeypatch, capsys):
    configure_logging("INFO", "text")  # its handler writes to this test's (captured) stderr

    def explode(session, event_id):
        raise RuntimeError(f"no run {event_id}")

    monkeypatch.setattr(runs, "get_run", explode)
    forged = "2026-01-01 00:00:00,000 INFO console.auth: admin logged in"
    resp = client.get("/api/v1/runs/x%0A" + forged.replace(" ", "%20") + "%0D%E2%80%A8")
    assert resp.status_code == 500
    err = capsys.readouterr().err
    assert "unexpected error on GET /api/v1/runs/x\\x0a2026-01-01" in err
    assert "\\x0d\\u2028" in err
    records = [line for line in err.splitlines() if RECORD_START.match(line)]
    assert len(records) == 1 and re.search(r"ERROR console.api( request_id=\S+)?: unexpected error", records[0]), err
    others = [line for line in err.splitlines() if not RECORD_START.match(line)]
    assert others and all(line.startswith("  | ") for line in others), others  # the traceback, marked
    # The exception's own text keeps its newline (a traceback is many lines), marked too.
    assert "  | RuntimeError: no run x" in others and "  | " + forged + "\\x0d\\u2028" in others, others
