"""One keep-alive HTTP(S) connection over the standard library, for the sender's posts.

The sender runs inside the agent's process. `requests` costs about 0.4 s of
interpreter time to import, and on the sender's thread that time is taken from
the agent's calls (they wait for the GIL); `http.client` is already light and
does less Python work per post. Proxies are taken from the environment as
`requests` took them (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`).
"""

import base64
import http.client
import json
import os
import ssl
from typing import Any, Dict, Optional
from urllib.parse import SplitResult, unquote, urlsplit

MAX_ANSWER_BYTES = 8 << 20  # an answer is read up to this; more is not the console's ingest answer
# A kept-alive connection the server closed while idle fails like this on reuse.
_DROPPED = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


class Answer:
    """An HTTP answer: what delivery.judge reads of it."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers, content: bytes):
        self.status_code = status_code
        self.headers = headers  # case-insensitive .get()
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


class Proxy:
    """A proxy to reach a URL through: its address and, when it has one, its login."""

    def __init__(self, url: str):
        parts = urlsplit(url if "://" in url else "http://" + url)
        self.host = parts.hostname or ""
        self.port = parts.port or 80
        self.headers: Dict[str, str] = {}
        if parts.username is not None:
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.headers["Proxy-Authorization"] = "Basic " + base64.b64encode(login).decode()


def proxy_for(target: SplitResult) -> Optional[Proxy]:
    """The proxy the environment names for `target`, or None (none set, or NO_PROXY covers it)."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the usual case: no urllib.request import
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(target.scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass_environment(target.hostname or "", proxies):
        return None
    return Proxy(url)


class Connection:
    """POST to one URL over a connection kept open between posts."""

    def __init__(self, url: str):
        self.target = urlsplit(url)
        self.https = self.target.scheme == "https"
        self.host = self.target.hostname or ""
        self.port = self.target.port or (443 if self.https else 80)
        self.path = (self.target.path or "/") + (f"?{self.target.query}" if self.target.query else "")
        self.proxy = proxy_for(self.target)
        self._conn: Optional[http.client.HTTPConnection] = None
        self._tls: Optional[ssl.SSLContext] = None  # made once: loading the CA store costs milliseconds

    def post(
        self, body: bytes, headers: Dict[str, str], connect_timeout: float, read_timeout: float
    ) -> Answer:
        """Post `body` and return the answer; raise OSError or http.client.HTTPException.

        A kept-alive connection the server dropped is retried once on a new one: the
        request never reached it, and the ingest endpoint is idempotent per line anyway.
        """
        fresh = self._conn is None
        try:
            return self._exchange(body, headers, connect_timeout, read_timeout)
        except _DROPPED:
            self.close()
            if fresh:
                raise
        except BaseException:
            self.close()
            raise
        try:
            return self._exchange(body, headers, connect_timeout, read_timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _exchange(self, body: bytes, headers: Dict[str, str], connect_timeout: float, read_timeout: float):
        conn = self._conn or self._connect(connect_timeout)
        conn.sock.settimeout(read_timeout)
        target = self.path
        if self.proxy is not None and not self.https:
            target = f"http://{self.host}:{self.port}{self.path}"  # a plain proxy takes the whole URL
            headers = {**headers, **self.proxy.headers}
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        content = resp.read(MAX_ANSWER_BYTES)
        if resp.will_close or not resp.isclosed():  # the server ends it, or an answer too long to finish
            self.close()
        return Answer(resp.status, resp.headers, content)

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        host, port = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        if self.https:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
            if self.proxy is not None:
                conn.set_tunnel(self.host, self.port, headers=self.proxy.headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.connect()
        self._conn = conn
        return conn
