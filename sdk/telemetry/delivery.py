"""Posting a batch to the console's ingest endpoint, and what its answer means for the lines."""

import json
import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, NamedTuple, Optional

from . import __version__
from .transport import Connection

# What an answer says about the batch that was posted (Verdict.kind).
ACKED = "acked"  # the console's ingest answer: the lines are applied or rejected one by one
BAD_BATCH = "bad_batch"  # 413 from anything, or the console's 400/422: a line breaks the batch
SERVER_ERROR = "server_error"  # 500: maybe one line the console cannot handle, maybe an outage
RETRY = "retry"  # an outage or a configuration problem: the lines are not to blame


def parse_retry_after(value: Optional[str]) -> float:
    """Return the seconds a Retry-After header asks for (0 when absent or unreadable)."""
    if not value:
        return 0.0
    try:
        return min(3600.0, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return min(3600.0, max(0.0, (when - datetime.now(timezone.utc)).total_seconds()))
    except (TypeError, ValueError):
        return 0.0


def backoff_delay(failures: int, cap: float = 60.0) -> float:
    """Return the wait before retry number `failures` (1, 2, 4 … cap seconds, with jitter)."""
    base = min(cap, 2.0 ** min(max(0, failures - 1), 64))  # a float overflows past 2**1023
    return min(cap, base * random.uniform(0.8, 1.2))


def json_object(resp) -> Optional[Dict[str, Any]]:
    """The answer's body as a JSON object, or None (not JSON, or not an object)."""
    try:
        answer = resp.json()
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None
    return answer if isinstance(answer, dict) else None


def console_error(answer: Optional[Dict[str, Any]]) -> bool:
    """True when an error answer (`json_object`) has the console's shape: a `detail`.

    Only then does a 400 or 422 judge the records; the same status in another
    server's page says nothing about them, and dead-lettering would lose them.
    """
    return answer is not None and "detail" in answer


def response_detail(answer: Optional[Dict[str, Any]], resp) -> str:
    """The `detail` of an error answer as text, or the start of a body that is not the console's."""
    return as_text(answer["detail"]) if console_error(answer) else (resp.text or "")[:500]


def as_text(detail) -> str:
    """A detail as text: a message as it is, a 422 list as JSON."""
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, default=str)[:2000]


def is_ingest_answer(answer: Optional[Dict[str, Any]]) -> bool:
    """True when `answer` (`json_object` of a 2xx) is the console's ingest answer.

    Only this answer acknowledges lines: a 2xx from something else at the URL (a
    proxy's or portal's page, another service) must not let the sender drop them.
    """
    return (
        answer is not None
        and type(answer.get("accepted")) is int
        and type(answer.get("duplicates", 0)) is int
        and isinstance(answer.get("rejected", []), list)
    )


def is_health_answer(answer: Optional[Dict[str, Any]]) -> bool:
    """True when `answer` (`json_object` of a 200 from GET /health) is the console's health answer."""
    return answer is not None and answer.get("status") == "ok" and isinstance(answer.get("version"), str)


class Verdict(NamedTuple):
    kind: str
    status: Optional[int]  # None when no answer came
    detail: str  # the console's answer (or the error) as text
    answer: Optional[Dict[str, Any]] = None  # the ingest answer of an ACKED verdict
    retry_after: float = 0.0


def judge(status: int, answer: Optional[Dict[str, Any]], resp) -> Verdict:
    """Sort an HTTP answer to a batch into a Verdict."""
    if 200 <= status < 300:
        if is_ingest_answer(answer):
            return Verdict(ACKED, status, "", answer)
        body = (resp.text or "")[:200]
        return Verdict(
            RETRY, status, f"HTTP {status} but not the console's ingest answer (is the URL right?): {body}"
        )
    detail = response_detail(answer, resp)
    # 413 from anything (a proxy's body limit too) is answered by smaller batches.
    if status == 413 or (status in (400, 422) and console_error(answer)):
        return Verdict(BAD_BATCH, status, detail)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if status == 500:
        return Verdict(SERVER_ERROR, status, detail, None, retry_after)
    # 502/503/504 come from a proxy or a console that is down or busy, 401/404/429 from
    # the setup or the load: never the lines' fault.
    return Verdict(RETRY, status, f"HTTP {status} from ingest: {detail}", None, retry_after)


class IngestConnection:
    """One keep-alive connection to POST /api/v1/ingest."""

    def __init__(self, api_url: str, token: Optional[str], http_timeout: float):
        self.url = api_url.rstrip("/") + "/api/v1/ingest"
        self.token = token
        self.http_timeout = http_timeout
        self._conn: Optional[Connection] = None

    def post(self, lines: List[bytes], timeout: Optional[float] = None) -> Verdict:
        """Post lines (as the bytes on disk) as one JSON array; never raises."""
        t = self.http_timeout if timeout is None else max(0.05, min(timeout, self.http_timeout))
        try:
            if self._conn is None:
                self._conn = Connection(self.url)
            resp = self._conn.post(b"[" + b",".join(lines) + b"]", self._headers(), min(3.0, t), t)
        except Exception as exc:
            return Verdict(RETRY, None, f"console unreachable: {type(exc).__name__}: {exc}")
        return judge(resp.status_code, json_object(resp), resp)

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": f"local-telemetry-sdk/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers
