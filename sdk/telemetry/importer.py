"""Turn an older tool's NDJSON (run records and events) into spool lines v1."""

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Dict, Iterable, Iterator, List, Tuple

from .models import COUNTER_FIELDS, RUN_FIELDS, normalize_status
from .spool import make_line, run_head

_NAMESPACE = uuid.UUID("7d1f3c52-9a0e-4c8a-9d43-5b0e1f6a2c11")


def _with_zone(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:  # the older tool wrote UTC; say so
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.isoformat()


def _line_id(raw: bytes) -> str:
    return str(uuid.uuid5(_NAMESPACE, hashlib.sha256(raw).hexdigest()))


def _run_line(obj: dict, raw: bytes) -> Tuple[str, bytes]:
    run_id = str(obj["run_id"])
    event_id = str(obj.get("event_id") or uuid.uuid5(_NAMESPACE, "run:" + run_id))
    start = _with_zone(obj["start_time"])
    head = run_head(event_id, run_id, str(obj["agent_name"]), str(obj["job_type"]), start)
    status = normalize_status(obj.get("status")) or "running"
    data = {k: v for k, v in obj.items() if k in RUN_FIELDS and v is not None}
    for key in COUNTER_FIELDS:
        if key in data and (not isinstance(data[key], int) or data[key] < 0):
            del data[key]
    data["status"] = status
    if "end_time" in data:
        data["end_time"] = _with_zone(data["end_time"])
    kind = "run_started" if status == "running" else "run_ended"
    ts = _with_zone(obj.get("updated_at") or obj.get("end_time") or obj["start_time"])
    return head, make_line(kind, head, data, ts, _line_id(raw))


def _event_line(obj: dict, head: str, raw: bytes) -> bytes:
    payload = obj.get("payload", obj.get("payload_json"))
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            pass
    ts = _with_zone(obj.get("timestamp") or datetime.now(timezone.utc).isoformat())
    data = {"event_type": str(obj.get("event_type")), "payload": payload}
    return make_line("event", head, data, ts, _line_id(raw))


def convert(lines: Iterable[bytes]) -> Iterator[Tuple[bytes, str]]:
    """Yield (spool line, "") for each convertible input line, or (raw line, reason) for a skip."""
    raws: List[bytes] = [r.strip() for r in lines]
    heads: Dict[str, str] = {}
    parsed = []
    for raw in raws:
        if not raw:
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            parsed.append((raw, None))
            continue
        parsed.append((raw, obj))
        if isinstance(obj, dict) and "v" not in obj and obj.get("record_type", "run") == "run":
            try:
                heads[str(obj["run_id"])] = _run_line(obj, raw)[0]
            except (KeyError, TypeError):
                pass
    for raw, obj in parsed:
        if not isinstance(obj, dict):
            yield raw, "not a JSON object"
        elif "v" in obj:
            yield raw + b"\n", ""  # already a spool line: passed through untouched
        elif obj.get("record_type") == "event" or ("event_type" in obj and "agent_name" not in obj):
            head = heads.get(str(obj.get("run_id")))
            if head is None:
                yield raw, f"event for run {obj.get('run_id')!r} whose run record is not in the files"
            else:
                yield _event_line(obj, head, raw), ""
        else:
            try:
                yield _run_line(obj, raw)[1], ""
            except (KeyError, TypeError) as exc:
                yield raw, f"run record without {exc}"
