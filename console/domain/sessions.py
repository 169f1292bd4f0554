"""Page login sessions kept on the server (plain functions over a Session, no Flask).

The browser holds only a random session id; the table holds its SHA-256, so a copy of
the table cannot be replayed as cookies. Logout deletes the row, so a copied cookie
is worthless afterwards; a session ends by itself at `expires_at`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any, Optional

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from console.core.timeutil import utcnow
from console.store.models import page_sessions


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def start(session: Session, kind: str, name: str, credential: str, hours: int,
          now: Optional[datetime] = None) -> str:
    """Record a new login; returns the id to hand to the browser. Forgets expired sessions."""
    now = now or utcnow()
    session.execute(delete(page_sessions).where(page_sessions.c.expires_at <= now))
    session_id = secrets.token_urlsafe(32)
    session.execute(insert(page_sessions).values(
        id_hash=_hash(session_id), kind=kind, name=name, credential=credential,
        created_at=now, expires_at=now + timedelta(hours=hours)))
    return session_id


def find(session: Session, session_id: str, now: Optional[datetime] = None) -> Optional[dict[str, Any]]:
    """The live session of `session_id` (kind, name, credential), or None when unknown, ended or expired."""
    if not session_id:
        return None
    row = session.execute(select(page_sessions).where(page_sessions.c.id_hash == _hash(session_id))).mappings().first()
    if row is None or row["expires_at"] <= (now or utcnow()):
        return None
    return dict(row)


def end(session: Session, session_id: str) -> None:
    if session_id:
        session.execute(delete(page_sessions).where(page_sessions.c.id_hash == _hash(session_id)))
