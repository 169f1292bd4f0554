"""The slow-client attack on a serving console, and what it did to the console.

Three kinds of hostile connection, `each` of every kind, for `seconds`; each one
the server drops is opened again at once, so the pressure holds throughout:

- trickle: a `POST` head announcing a 100,000-byte body, then one byte every `trickle_every` s;
- idle: connects and sends nothing;
- deaf: sends a whole request for a 50 kB static file and never reads the answer (a 4 kB receive buffer).

Meanwhile a probe client sends `GET /health` and a normal `POST /api/v1/runs`, each
on a new connection, one after the other; a probe unanswered within PROBE_GUARD
seconds counts as infinitely slow. The RSS of every process in the console's
process group is sampled throughout. Used by tests/security/test_slow_clients.py
(`make soak` runs the long one) and scripts/bench/bench_servers.py.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

PROBE_GUARD = 10.0
TRICKLE_HEAD = (
    b"POST /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n"
)
# A cheap answer (a static file) larger than the deaf client's receive buffer: the deaf
# test slowness, not the cost of what they ask for.
DEAF_REQUEST = b"GET /assets/htmx.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
KINDS = ("trickle", "idle", "deaf")


@dataclass
class AttackReport:
    probe_seconds: list[float] = field(default_factory=list)  # math.inf: unanswered or failed
    probe_failures: list[str] = field(default_factory=list)
    rss_before: int = 0
    rss_peak: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    longest_life: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    still_open_at_end: int = 0

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_before

    def p99(self) -> float:
        ordered = sorted(self.probe_seconds)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.inf

    def summary(self) -> dict:
        answered = [s for s in self.probe_seconds if s != math.inf]
        return {
            "probes": len(self.probe_seconds),
            "answered": len(answered),
            "p99_ms": round(self.p99() * 1000, 1) if answered else None,
            "rss_growth_mb": round(self.rss_growth / 2**20, 1),
            "dropped": self.dropped,
            "longest_life_s": {k: round(v, 1) for k, v in self.longest_life.items()},
            "still_open_at_end": self.still_open_at_end,
            "failures": self.probe_failures[:5],
        }


def group_rss(pgid: int) -> int:
    """The resident bytes of every process in process group `pgid` (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # the fifth field: the process group
                continue
            with open(f"/proc/{entry}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
    return total


class _Hostile:
    __slots__ = ("kind", "sock", "opened", "next_byte")

    def __init__(self, kind: str, port: int):
        self.kind = kind
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_GUARD)
        self.opened = time.monotonic()
        self.next_byte = self.opened
        if kind == "deaf":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.sock.sendall(DEAF_REQUEST)
        elif kind == "trickle":
            self.sock.sendall(TRICKLE_HEAD)
        self.sock.setblocking(False)


def _probe(port: int, report: AttackReport, stop: threading.Event) -> None:
    paths = ("/health", "/api/v1/runs")
    turn = 0
    while not stop.is_set():
        path = paths[turn % 2]
        turn += 1
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_GUARD)
            if path == "/health":
                conn.request("GET", path)
                expected = 200
            else:
                run_id = str(uuid.uuid4())
                body = json.dumps({"event_id": run_id, "run_id": run_id, "agent_name": "probe", "job_type": "t",
                                   "start_time": "2026-12-04T00:00:00Z"})
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                expected = 201
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status != expected:
                raise RuntimeError(f"{path} answered {response.status}")
            report.probe_seconds.append(time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - every failed probe counts, whatever failed
            report.probe_seconds.append(math.inf)
            report.probe_failures.append(f"{path}: {exc!r}")
        stop.wait(0.05)


def attack(port: int, pgid: int, *, each: int, seconds: float, trickle_every: float = 3.0) -> AttackReport:
    """Run the attack against the console on `port` (process group `pgid`); what it measured."""
    report = AttackReport(rss_before=group_rss(pgid))
    report.rss_peak = report.rss_before
    hostiles: dict[int, _Hostile] = {}
    poller = select.poll()

    def open_one(kind: str) -> None:
        try:
            hostile = _Hostile(kind, port)
        except OSError:
            return  # the server's backlog is full: tried again on the next round
        hostiles[hostile.sock.fileno()] = hostile
        # The deaf never read: they learn of the server's close from POLLRDHUP alone.
        poller.register(hostile.sock, select.POLLRDHUP if kind == "deaf" else select.POLLIN | select.POLLRDHUP)

    def dropped(hostile: _Hostile) -> None:
        poller.unregister(hostile.sock)
        del hostiles[hostile.sock.fileno()]
        hostile.sock.close()
        report.dropped[hostile.kind] += 1
        report.longest_life[hostile.kind] = max(report.longest_life[hostile.kind], time.monotonic() - hostile.opened)

    for kind in KINDS:
        for _ in range(each):
            open_one(kind)
    stop = threading.Event()
    prober = threading.Thread(target=_probe, args=(port, report, stop), daemon=True)
    prober.start()
    end = time.monotonic() + seconds
    next_sample = 0.0
    while (now := time.monotonic()) < end:
        for fd, events in poller.poll(100):
            hostile = hostiles.get(fd)
            if hostile is None:
                continue
            if hostile.kind != "deaf":
                try:
                    if hostile.sock.recv(65536):
                        continue  # an answer (a 408, say); the close follows
                except BlockingIOError:
                    continue
                except OSError:
                    pass
            elif not events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                continue
            dropped(hostile)
            open_one(hostile.kind)
        for hostile in [h for h in hostiles.values() if h.kind == "trickle" and h.next_byte <= now]:
            hostile.next_byte = now + trickle_every
            try:
                hostile.sock.send(b"{")
            except OSError:
                dropped(hostile)
                open_one("trickle")
        if now >= next_sample:
            report.rss_peak = max(report.rss_peak, group_rss(pgid))
            next_sample = now + 0.5
        missing = [k for k in KINDS for _ in range(each - sum(h.kind == k for h in hostiles.values()))]
        for kind in missing:
            open_one(kind)
    stop.set()
    prober.join(PROBE_GUARD * 2)
    report.rss_peak = max(report.rss_peak, group_rss(pgid))
    report.still_open_at_end = len(hostiles)
    for hostile in hostiles.values():
        hostile.sock.close()
    return report
