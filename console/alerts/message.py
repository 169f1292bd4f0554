"""What a notification says: the webhook's JSON document, and a title and text for mail and apprise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from console.core.timeutil import format_utc

WHAT = {
    "failure": "failed",
    "stale": "has gone silent",
    "missing": "did not start on schedule",
    "slow": "is running slow",
}


@dataclass
class Message:
    notification_id: str
    title: str
    text: str
    document: dict[str, Any]


def run_summary(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"event_id": run["event_id"], "run_id": run["run_id"], "status": run["status"],
            "error_summary": run["error_summary"], "duration_ms": run["duration_ms"]}


def incident_document(notification_id: str, incident: Mapping[str, Any], rule_name: str, state: str,
                      at, console_url: str, run: Mapping[str, Any] | None) -> dict[str, Any]:
    """The webhook body of one notification (docs/alerts.md)."""
    return {
        "notification_id": notification_id,
        "incident_id": incident["id"],
        "rule": rule_name,
        "rule_id": incident["rule_id"],
        "agent_name": incident["agent_name"],
        "job_type": incident["job_type"],
        "kind": incident["kind"],
        "state": state,
        "repeat": state == "open" and incident.get("transition") == "repeat",
        "at": format_utc(at),
        "opened_at": format_utc(incident["opened_at"]),
        "resolved_at": format_utc(incident["resolved_at"]) if incident["resolved_at"] else None,
        "detail": incident["detail"],
        "console_url": f"{console_url}/alerts?incident={incident['id']}",
        "run": run_summary(run),
    }


def one(document: dict[str, Any]) -> Message:
    who = document["agent_name"] + (f" ({document['job_type']})" if document["job_type"] else "")
    if document["state"] == "resolved":
        title = f"Resolved: {who} {document['kind']}"
    else:
        title = f"{'Still: ' if document['repeat'] else ''}{who} {WHAT.get(document['kind'], document['kind'])}"
    lines = [title, f"rule: {document['rule']}", f"at: {document['at']}"]
    if document["detail"]:
        lines.append(document["detail"])
    run = document["run"]
    if run:
        lines.append(f"run {run['run_id']}: {run['status']}" + (f": {run['error_summary']}" if run["error_summary"]
                                                              else ""))
    lines.append(document["console_url"])
    return Message(document["notification_id"], title, "\n".join(lines), document)


def grouped(group_key: str, documents: list[dict[str, Any]], at, console_url: str) -> Message:
    """A storm: one notification that lists many incidents."""
    document = {
        "notification_id": group_key,
        "grouped": True,
        "count": len(documents),
        "at": format_utc(at),
        "console_url": f"{console_url}/alerts",
        "notifications": documents,
    }
    title = f"{len(documents)} alerts opened"
    lines = [title] + [f"- {d['agent_name']}{' (' + d['job_type'] + ')' if d['job_type'] else ''}: "
                       f"{WHAT.get(d['kind'], d['kind'])} [{d['rule']}]" for d in documents]
    lines.append(document["console_url"])
    return Message(group_key, title, "\n".join(lines), document)
