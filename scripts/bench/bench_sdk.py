"""Benchmark the SDK's agent-side calls; prints a table (not a test).

For each scenario — console up (a loopback ingest stub or --console URL), console down,
console down with 1,000 and with 100,000 lines another agent left pending, sender draining a
backlog — measures p50/p99 of log_event, start_run and end_run beside a baseline that appends
the same line with os.write() to a file, and each p99 as a multiple of the same call's p99
with the console up (the goal for a pending backlog: at most 1.5x). Also: load average,
sender throughput, and the RSS an idle client adds after 10,000 calls.

    .venv/bin/python scripts/bench/bench_sdk.py [--calls 10000] [--console http://127.0.0.1:8765]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start_stub():
    """A loopback ingest stub that acknowledges every line (for a run without a console)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            n = body.count(b'{"v":1,')
            data = json.dumps({"accepted": n, "duplicates": 0, "rejected": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def pct(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def measure(client, calls):
    from telemetry.spool import make_line

    timer = time.perf_counter
    run_id = client.start_run("bench", "job")
    ev, st, en = [], [], []
    for i in range(calls):
        t = timer()
        client.log_event(run_id, "checkpoint", {"step": i})
        ev.append(timer() - t)
    for _ in range(max(1, calls // 10)):
        t = timer()
        rid = client.start_run("bench", "job")
        st.append(timer() - t)
        t = timer()
        client.end_run(rid, status="success", items_succeeded=1)
        en.append(timer() - t)
    client.end_run(run_id)
    head = client._runs.get(run_id) or client._recent[run_id]
    fd, path = tempfile.mkstemp()
    os.close(fd)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    base = []
    for i in range(calls):
        line = make_line("event", head.head, {"event_type": "checkpoint", "payload": {"step": i}})
        t = timer()
        os.write(fd, line)
        base.append(timer() - t)
    os.close(fd)
    os.unlink(path)
    return {"log_event": ev, "start_run": st, "end_run": en, "baseline write()": base}


def leave_pending(base, lines):
    """Spool `lines` lines as an earlier agent would have left them, undelivered."""
    from telemetry.spool import SpoolWriter, make_line, run_head

    writer = SpoolWriter(os.path.join(base, "raw"))
    head = run_head("earlier", "earlier-run", "earlier", "job", "2026-12-04T00:00:00+00:00")
    day = time.strftime("%Y%m%d", time.gmtime())
    for i in range(lines):
        writer.append(make_line("event", head, {"event_type": "backlog", "payload": {"i": i}}), day)
    writer.close()


def scenario(name, url, calls, backlog=0, pending=0):
    from telemetry import TelemetryClient, TelemetryConfig

    base = tempfile.mkdtemp(prefix="bench-sdk-")
    leave_pending(base, pending)
    config = TelemetryConfig(metrics_dir=base, api_url=url, git_detect=False,
                             heartbeat_seconds=0, flush_timeout=0)
    client = TelemetryClient(config)
    if backlog:
        rid = client.start_run("backlog", "job")
        for i in range(backlog):
            client.log_event(rid, "backlog", {"i": i})
        client.end_run(rid)
    started, before = time.monotonic(), client._sender.delivered
    result = measure(client, calls)
    if backlog:
        left = client.flush(timeout=120)
        took = time.monotonic() - started
        rate = (client._sender.delivered - before) / took
        result["_throughput"] = f"{rate:,.0f} records/s delivered ({left} left)"
    client._sender._exiting = True
    return name, result


RSS_PROBE = r"""
import gc, sys
def rss_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
import telemetry
gc.collect(); before = rss_kb()
c = telemetry.TelemetryClient()
run_id = c.start_run("rss", "job")
for i in range(10000):
    c.log_event(run_id, "e", {"i": i})
c.end_run(run_id)
gc.collect(); print(rss_kb() - before)
"""


def rss_added_kb():
    env = dict(os.environ, TELEMETRY_BASE_DIR=tempfile.mkdtemp(prefix="bench-rss-"),
               TELEMETRY_API_URL="http://127.0.0.1:9", TELEMETRY_FLUSH_TIMEOUT="0",
               TELEMETRY_GIT_DETECT="false")
    out = subprocess.run([sys.executable, "-c", RSS_PROBE], env=env, capture_output=True,
                         text=True, timeout=300)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10000)
    parser.add_argument("--backlog", type=int, default=50000)
    parser.add_argument("--console", help="URL of a running console (default: a loopback stub)")
    args = parser.parse_args()
    # The first scenario's sender would otherwise import requests (about 0.4 s of the
    # interpreter) while it is measured; every later scenario finds it imported.
    import requests  # noqa: F401

    up = args.console
    if not up:
        _, up = start_stub()
    runs = [
        scenario("console up", up, args.calls),
        scenario("console down", "http://127.0.0.1:9", args.calls),
        scenario("down, 1,000 pending", "http://127.0.0.1:9", args.calls, pending=1000),
        scenario("down, 100,000 pending", "http://127.0.0.1:9", args.calls, pending=100000),
        scenario(f"sender draining {args.backlog:,}", up, args.calls, backlog=args.backlog),
    ]
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()}, "
          f"{os.cpu_count()} cpus, console {'stub' if not args.console else args.console}")
    print(f"{'scenario':<26} {'call':<18} {'p50 µs':>8} {'p99 µs':>8} {'p50 x write()':>14} {'p99 x up':>9}")
    reference = runs[0][1]
    for name, result in runs:
        base = pct(result["baseline write()"], .5)
        for call, samples in result.items():
            if not call.startswith("_"):
                p50, p99 = pct(samples, .5), pct(samples, .99)
                ratio = p99 / pct(reference[call], .99)
                print(f"{name:<26} {call:<18} {p50:8.1f} {p99:8.1f} {p50 / base:14.1f} {ratio:9.2f}")
        if "_throughput" in result:
            print(f"{name:<26} throughput: {result['_throughput']}")
    print(f"load average after: {os.getloadavg()}")
    added = rss_added_kb()
    print(f"RSS added by an idle client after 10,000 calls: {added} KiB")
    print(f"max RSS of this benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")


if __name__ == "__main__":
    main()
