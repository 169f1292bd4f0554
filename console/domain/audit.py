"""The audit log: who did what to the store (operators' actions, failed page logins).

`actor` names who, never with secret material: `token:operator#1` (the first of
TELEMETRY_OPERATOR_TOKENS), `operator:alice` (a page user), `cli`, `sweep`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from console.core.timeutil import utcnow
from console.store.models import audit_log

MAX_DETAIL_CHARS = 4000


def record(session: Session, actor: str, action: str, *, event_id: Optional[str] = None,
           detail: Optional[str] = None, now: Optional[datetime] = None) -> None:
    session.execute(audit_log.insert().values(
        at=now or utcnow(), actor=actor[:200], action=action, event_id=event_id,
        detail=detail[:MAX_DETAIL_CHARS] if detail is not None else None,
    ))


def count(session: Session, action: str) -> int:
    """How many entries of `action` the log holds."""
    return session.execute(select(func.count()).select_from(audit_log).where(audit_log.c.action == action)).scalar_one()
