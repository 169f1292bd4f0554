"""Cancel an agent's stale runs through the console's stale rule (GET /api/v1/runs/stale)."""

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

logger = logging.getLogger("telemetry")


def _token(auth_token: Optional[str]) -> Optional[str]:
    return auth_token or os.environ.get("TELEMETRY_API_TOKEN") or os.environ.get("TELEMETRY_API_AUTH_TOKEN")


def _find_stale(
    session, api_url: str, agent_name: Optional[str], minutes: int, status_to_check: str, timeout: float
) -> List[Dict[str, Any]]:
    resp = session.get(
        f"{api_url}/api/v1/runs/stale", params={"older_than_minutes": minutes}, timeout=timeout
    )
    if resp.status_code == 404:  # an older console without the stale endpoint
        before = (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()
        params = {"status": status_to_check, "created_before": before, "limit": 1000}
        if agent_name:
            params["agent_name"] = agent_name
        resp = session.get(f"{api_url}/api/v1/runs", params=params, timeout=timeout)
    resp.raise_for_status()
    runs = resp.json()
    return [r for r in runs if not agent_name or r.get("agent_name") == agent_name]


def cleanup_stale_runs(
    api_url: str,
    agent_name: Optional[str],
    stale_threshold_hours: float = 1,
    status_to_check: str = "running",
    cleanup_status: str = "cancelled",
    auth_token: Optional[str] = None,
    timeout: float = 30,
) -> Dict[str, Any]:
    """Cancel the agent's runs the console calls stale; return what was found and done.

    Returns {"found", "cancelled", "cleaned" (same number, the older key), "failed",
    "errors": [str], "stale_runs": [run records]}. Never raises.
    """
    import requests

    result: Dict[str, Any] = {
        "found": 0,
        "cancelled": 0,
        "cleaned": 0,
        "failed": 0,
        "errors": [],
        "stale_runs": [],
    }
    api_url = (api_url or "").rstrip("/")
    session = requests.Session()
    session.headers["User-Agent"] = "local-telemetry-sdk (cleanup_stale_runs)"
    token = _token(auth_token)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    minutes = max(1, int(round(float(stale_threshold_hours) * 60)))
    try:
        stale = _find_stale(session, api_url, agent_name, minutes, status_to_check, timeout)
    except Exception as exc:
        result["errors"].append(f"Failed to query stale runs: {exc}")
        logger.error("telemetry: %s", result["errors"][-1])
        return result
    result["found"] = len(stale)
    result["stale_runs"] = stale
    now = datetime.now(timezone.utc).isoformat()
    for run in stale:
        event_id = run.get("event_id")
        if not event_id:
            result["failed"] += 1
            result["errors"].append(f"Run missing event_id: {run.get('run_id')}")
            continue
        body = {
            "status": cleanup_status,
            "end_time": now,
            "error_summary": f"Stale run {cleanup_status} by cleanup_stale_runs "
            f"(silent for more than {minutes} minutes)",
            "output_summary": f"Process did not complete - marked as {cleanup_status} on restart",
        }
        try:
            resp = session.patch(f"{api_url}/api/v1/runs/{event_id}", json=body, timeout=timeout)
            resp.raise_for_status()
        except Exception as exc:
            result["failed"] += 1
            result["errors"].append(f"Failed to update run {event_id}: {exc}")
            continue
        result["cancelled"] += 1
    result["cleaned"] = result["cancelled"]
    logger.info(
        "telemetry: stale cleanup: %d found, %d %s, %d failed",
        result["found"],
        result["cancelled"],
        cleanup_status,
        result["failed"],
    )
    return result


def cleanup_on_startup(
    api_url: str = "http://localhost:8765",
    agent_name: Optional[str] = None,
    stale_threshold_hours: float = 1,
    auth_token: Optional[str] = None,
) -> bool:
    """Cancel the agent's stale runs; return True when nothing failed."""
    if not agent_name:
        logger.error("telemetry: cleanup_on_startup needs agent_name")
        return False
    try:
        result = cleanup_stale_runs(api_url, agent_name, stale_threshold_hours, auth_token=auth_token)
    except Exception:
        logger.exception("telemetry: stale cleanup failed")
        return False
    return result["failed"] == 0 and not result["errors"]
