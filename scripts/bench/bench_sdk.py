"""Benchmark the SDK's agent-side calls; prints a table (not a test).

Each measured agent is a fresh interpreter, as a new agent is: its sender starts,
takes the base dir's lock and posts (or fails to) while its calls are measured.
Scenarios — console up (a loopback ingest stub or --console URL), console down,
console down with 1,000 and with 100,000 lines an earlier agent left pending, and
the sender draining a backlog — run in interleaved rounds; for each, the median over
the rounds of p50/p99/max of log_event, start_run and end_run beside a baseline that
appends the same line with os.write(), and each p99 as a multiple of the same call's
p99 with the console up (the goal for a pending backlog: at most 1.5x), with the
spread of that multiple over the rounds. Also: load average, sender throughput, and
the RSS an idle client adds after 10,000 calls.

    PYTHONPATH=sdk .venv/bin/python scripts/bench/bench_sdk.py [--calls 10000] [--rounds 3]
        [--console http://127.0.0.1:8765]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
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

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # An agent that exits resets its kept-alive connection: expected, not news.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = QuietServer(("127.0.0.1", 0), Handler)
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


def agent(url, base, calls, backlog):
    """Be a new agent (this process is a fresh interpreter): measure its calls, return percentiles."""
    from telemetry import TelemetryClient, TelemetryConfig

    config = TelemetryConfig(metrics_dir=base, api_url=url, git_detect=False,
                             heartbeat_seconds=0, flush_timeout=0)
    client = TelemetryClient(config)
    if backlog:
        rid = client.start_run("backlog", "job")
        for i in range(backlog):
            client.log_event(rid, "backlog", {"i": i})
        client.end_run(rid)
    started, before = time.monotonic(), client._sender.delivered
    samples = measure(client, calls)
    result = {call: [pct(s, .5), pct(s, .99), pct(s, 1.0)] for call, s in samples.items()}
    if backlog:
        left = client.flush(timeout=120)
        rate = (client._sender.delivered - before) / (time.monotonic() - started)
        result["_throughput"] = f"{rate:,.0f} records/s delivered ({left} left)"
    result["_imported_requests"] = "requests" in sys.modules
    return result


def scenario(url, calls, backlog=0, pending_dir=None):
    """Run one new agent in a fresh interpreter (its sender starts, posts, imports what it
    imports while the agent's calls are measured), beside lines an earlier agent left."""
    base = tempfile.mkdtemp(prefix="bench-sdk-")
    if pending_dir:
        shutil.copytree(os.path.join(pending_dir, "raw"), os.path.join(base, "raw"))
    out = subprocess.run(
        [sys.executable, __file__, "--agent", url, "--base", base, "--calls", str(calls),
         "--backlog", str(backlog)],
        capture_output=True, text=True, timeout=900,
    )
    shutil.rmtree(base, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"agent failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def pending_template(lines):
    """A base dir holding `lines` lines an earlier agent left undelivered (copied per run)."""
    base = tempfile.mkdtemp(prefix=f"bench-pending-{lines}-")
    leave_pending(base, lines)
    return base


def sender_step_cpu(url, steps=40):
    """CPU time of the sender's thread for each 500-line step of a backlog (ms): its GIL's share."""
    from telemetry.batches import BatchDelivery

    base = pending_template(steps * 500)
    delivery = BatchDelivery(os.path.join(base, "raw"), url, None, 500, 1.0, 10.0, 60.0, 5)
    cpu = []
    for _ in range(steps):
        started = time.thread_time()
        delivery.deliver_once(True)
        cpu.append((time.thread_time() - started) * 1e3)
    shutil.rmtree(base, ignore_errors=True)
    return cpu[0], statistics.median(cpu[1:])


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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the scenarios")
    parser.add_argument("--console", help="URL of a running console (default: a loopback stub)")
    parser.add_argument("--agent", help=argparse.SUPPRESS)  # internal: be one agent, print JSON
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        print(json.dumps(agent(args.agent, args.base, args.calls, args.backlog)))
        return

    up = args.console
    if not up:
        _, up = start_stub()
    down = "http://127.0.0.1:9"
    templates = {n: pending_template(n) for n in (1000, 100000)}
    plan = [
        ("console up", dict(url=up)),
        ("console down", dict(url=down)),
        ("down, 1,000 pending", dict(url=down, pending_dir=templates[1000])),
        ("down, 100,000 pending", dict(url=down, pending_dir=templates[100000])),
        (f"sender draining {args.backlog:,}", dict(url=up, backlog=args.backlog)),
    ]
    load_before = os.getloadavg()
    # Rounds interleave the scenarios, so that a burst of the machine's other load
    # falls on all of them alike; each figure is the median over the rounds.
    rounds = {name: [] for name, _ in plan}
    for _ in range(args.rounds):
        for name, kwargs in plan:
            rounds[name].append(scenario(calls=args.calls, **kwargs))
    for templ in templates.values():
        shutil.rmtree(templ, ignore_errors=True)

    print(f"python {sys.version.split()[0]}, load average before {load_before}, after {os.getloadavg()}, "
          f"{os.cpu_count()} cpus, console {'stub' if not args.console else args.console}, "
          f"{args.rounds} round(s), each agent a fresh interpreter")
    print(f"{'scenario':<26} {'call':<18} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8} {'p50 x write()':>14} "
          f"{'p99 x up':>9} {'(rounds)':>18}")
    up_rounds = rounds["console up"]
    for name, results in rounds.items():
        base = statistics.median(r["baseline write()"][0] for r in results)
        for call in ("log_event", "start_run", "end_run", "baseline write()"):
            p50 = statistics.median(r[call][0] for r in results)
            p99 = statistics.median(r[call][1] for r in results)
            worst = statistics.median(r[call][2] for r in results)
            ratio = p99 / statistics.median(r[call][1] for r in up_rounds)
            each = [r[call][1] / u[call][1] for r, u in zip(results, up_rounds, strict=True)]
            spread = f"{min(each):.2f}-{max(each):.2f}"
            print(f"{name:<26} {call:<18} {p50:8.1f} {p99:8.1f} {worst:8.0f} {p50 / base:14.1f} {ratio:9.2f} "
                  f"{spread:>18}")
        if "_throughput" in results[0]:
            print(f"{name:<26} throughput: {results[0]['_throughput']}")
        if any(r["_imported_requests"] for r in results):
            print(f"{name:<26} the agent's process imported requests")
    first, median = sender_step_cpu(up)
    print(f"sender CPU per 500-line step (this process): first {first:.1f} ms, then median {median:.2f} ms")
    added = rss_added_kb()
    print(f"RSS added by an idle client after 10,000 calls: {added} KiB")
    print(f"max RSS of this benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")


if __name__ == "__main__":
    main()
