"""How the sender reads the console's answers: when to retry, and what an error says."""

import json
import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Optional


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
    base = min(cap, 2.0 ** max(0, failures - 1))
    return min(cap, base * random.uniform(0.8, 1.2))


def json_object(resp) -> Optional[Dict[str, Any]]:
    """The answer's body as a JSON object, or None (not JSON, or not an object)."""
    try:
        answer = resp.json()
    except ValueError:
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
