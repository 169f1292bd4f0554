"""Slow clients against the real `serve` (scripts/bench/slow_clients.py does the attacking).

Trickling, idle and deaf connections must not stop the console: other clients are
answered quickly, its memory stays put, and every hostile connection is dropped.
The soak version is the attack of issue #16 (200 of each for 60 s); the short one,
in every run, is the same attack scaled down.
"""

from __future__ import annotations

import math
import socket

import pytest
import requests

from scripts.bench.slow_clients import attack
from tests.helpers import ConsoleProcess, free_port
from tests.reliability.support import record_figures

MB = 2**20


def _attacked_console(tmp_path, deadline: int) -> ConsoleProcess:
    console = ConsoleProcess({"TELEMETRY_DB_PATH": str(tmp_path / "slow.sqlite"), "TELEMETRY_API_PORT": str(free_port()),
                              "TELEMETRY_BASE_DIR": str(tmp_path / "base"),
                              "TELEMETRY_API_REQUEST_DEADLINE": str(deadline)}, tmp_path / "log")
    console.start()
    return console


def _assert_unharmed(report, deadline: int, keepalive: int = 5) -> None:
    answered = [s for s in report.probe_seconds if s != math.inf]
    assert report.probe_failures == [], report.summary()
    assert len(answered) >= 10, report.summary()
    assert report.p99() < 1.0, report.summary()
    assert report.rss_growth < 100 * MB, report.summary()
    # Every kind was dropped by the console, and none outlived its bound many times over
    # (a hang guard: trickle and idle hit the request deadline, deaf the keep-alive timeout).
    for kind, bound in (("trickle", deadline), ("idle", deadline), ("deaf", keepalive)):
        assert report.dropped[kind] > 0, report.summary()
        assert report.longest_life[kind] < 10 * bound, report.summary()


def test_twenty_of_each_slow_client_for_eight_seconds_do_not_stop_the_console(tmp_path):
    console = _attacked_console(tmp_path, deadline=2)
    try:
        report = attack(console.port, console.proc.pid, each=20, seconds=8, trickle_every=0.5)
    finally:
        console.stop()
    record_figures("slow_clients_short", report.summary())
    _assert_unharmed(report, deadline=2)


@pytest.mark.soak
def test_two_hundred_of_each_slow_client_for_a_minute_do_not_stop_the_console(tmp_path):
    console = _attacked_console(tmp_path, deadline=10)
    try:
        report = attack(console.port, console.proc.pid, each=200, seconds=60, trickle_every=3.0)
    finally:
        console.stop()
    record_figures("slow_clients_soak", report.summary())
    _assert_unharmed(report, deadline=10)


def test_more_idle_connections_than_gunicorns_default_limit_do_not_stop_it_accepting(tmp_path):
    # gunicorn stops accepting at 1,000 connections per worker by default; with a 60 s
    # deadline the idle ones would hold that place far longer than the probe's guard.
    console = _attacked_console(tmp_path, deadline=60)
    idle = []
    try:
        for _ in range(1200):
            idle.append(socket.create_connection(("127.0.0.1", console.port), timeout=10))
        response = requests.get(console.url + "/health", timeout=10)  # the hang guard
        assert response.status_code == 200
    finally:
        for sock in idle:
            sock.close()
        console.stop()
