"""The sender's HTTP: the standard library only, one kept-alive connection, proxies from the environment."""

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from telemetry import TelemetryClient


class Ingest:
    """A loopback server answering every POST with an ingest answer, recording who asked for what."""

    def __init__(self, drop_after_answer=False, answer=None):
        self.seen = []  # (client port, request target, headers)
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ingest.seen.append((self.client_address[1], self.path, dict(self.headers)))
                data = answer or json.dumps({"accepted": len(json.loads(body)), "duplicates": 0,
                                             "rejected": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                # Close without saying so, as a server ending an idle keep-alive connection does.
                self.close_connection = drop_after_answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers():
    made = []

    def make(**kwargs):
        made.append(Ingest(**kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def send_three_batches(client):
    run_id = client.start_run("a", "j")
    for step in range(3):
        client.log_event(run_id, "step", {"n": step})
        assert client.flush(20) == 0


def test_batches_share_one_kept_alive_connection(sdk_env, servers, monkeypatch, no_proxy_env):
    ingest = servers()
    monkeypatch.setenv("TELEMETRY_API_URL", ingest.url)
    send_three_batches(TelemetryClient())
    assert len(ingest.seen) >= 3
    assert len({port for port, _, _ in ingest.seen}) == 1
    path, headers = ingest.seen[0][1], ingest.seen[0][2]
    assert path == "/api/v1/ingest" and headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("local-telemetry-sdk/")


def test_a_connection_the_server_dropped_is_retried_at_once_not_an_outage(
    sdk_env, servers, monkeypatch, no_proxy_env
):
    ingest = servers(drop_after_answer=True)
    monkeypatch.setenv("TELEMETRY_API_URL", ingest.url)
    client = TelemetryClient()
    send_three_batches(client)
    assert len({port for port, _, _ in ingest.seen}) == len(ingest.seen) >= 3  # a new one each time
    status = client.status()
    assert status["last_error"] is None and status["in_backoff"] is False


def test_the_environments_proxy_is_used_with_its_login(sdk_env, servers, monkeypatch, no_proxy_env):
    proxy = servers()
    monkeypatch.setenv("TELEMETRY_API_URL", "http://console.invalid:8765")  # reachable only by the proxy
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://agent:s%40cret@"))
    send_three_batches(TelemetryClient())
    _, target, headers = proxy.seen[0]
    assert target == "http://console.invalid:8765/api/v1/ingest"
    assert headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"agent:s@cret").decode()


def test_no_proxy_sends_directly(sdk_env, servers, monkeypatch, no_proxy_env):
    proxy, ingest = servers(), servers()
    monkeypatch.setenv("TELEMETRY_API_URL", ingest.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    send_three_batches(TelemetryClient())
    assert proxy.seen == [] and len(ingest.seen) >= 3


def test_an_endless_answer_is_cut_and_is_not_an_acknowledgement(sdk_env, servers, monkeypatch, no_proxy_env):
    # 9 MiB of JSON whitespace before the ingest answer: read up to 8 MiB, so never acknowledged.
    ingest = servers(answer=b" " * (9 << 20) + b'{"accepted": 1, "duplicates": 0, "rejected": []}')
    monkeypatch.setenv("TELEMETRY_API_URL", ingest.url)
    client = TelemetryClient()
    client.start_run("a", "j")
    assert client.flush(3) == 1
    assert "not the console's ingest answer" in client.status()["last_error"]


def test_an_answer_nested_too_deep_to_parse_is_not_an_acknowledgement(sdk_env, servers, monkeypatch,
                                                                     no_proxy_env):
    ingest = servers(answer=b"[" * 200_000 + b"]" * 200_000)
    monkeypatch.setenv("TELEMETRY_API_URL", ingest.url)
    client = TelemetryClient()
    client.start_run("a", "j")
    assert client.flush(3) == 1
    assert client.status()["last_error"].startswith("HTTP 200 but not the console's ingest answer")


FRESH_AGENT = textwrap.dedent(
    """
    import json, sys
    from telemetry import TelemetryClient
    client = TelemetryClient()
    with client.track_run("a", "j") as ctx:
        ctx.log_event("e")
    left = client.flush(30)
    heavy = sorted(m for m in ("requests", "urllib3", "urllib.request", "charset_normalizer", "idna")
                   if m in sys.modules)
    print(json.dumps({"left": left, "delivered": client.status()["delivered"], "heavy": heavy}))
    """
)


def test_a_fresh_agent_delivers_without_importing_requests(sdk_env, servers, no_proxy_env):
    ingest = servers()
    env = dict(os.environ, TELEMETRY_API_URL=ingest.url)
    out = subprocess.run([sys.executable, "-c", FRESH_AGENT], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"left": 0, "delivered": 3, "heavy": []}
