"""Console users for page login: a name and a hashed password, set up from the CLI.

Plain functions over a Session (no Flask). Passwords are hashed with werkzeug's
scrypt/pbkdf2 (`generate_password_hash`); the clear text is never stored or logged.
"""

from __future__ import annotations

from typing import Optional

from sqlalchemy import Column, Integer, Table, Text, delete, insert, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from console.core.timeutil import utcnow
from console.domain.errors import Conflict, Invalid, NotFound
from console.store.models import metadata
from console.store.types import UTCDateTime

MIN_PASSWORD_CHARS = 8

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    sqlite_autoincrement=True,
)


def _check_new(username: str, password: str) -> None:
    if not username or len(username) > 200 or any(c.isspace() for c in username):
        raise Invalid("username must be 1-200 characters without spaces")
    if len(password) < MIN_PASSWORD_CHARS:
        raise Invalid(f"password must have at least {MIN_PASSWORD_CHARS} characters")


def create_user(session: Session, username: str, password: str) -> None:
    """Add a user; Conflict when the name is taken."""
    _check_new(username, password)
    if session.execute(select(users.c.id).where(users.c.username == username)).first():
        raise Conflict(f"user {username!r} exists")
    session.execute(
        insert(users).values(username=username, password_hash=generate_password_hash(password), created_at=utcnow())
    )


def set_password(session: Session, username: str, password: str) -> None:
    """Replace a user's password; NotFound for an unknown user."""
    _check_new(username, password)
    result = session.execute(
        update(users)
        .where(users.c.username == username)
        .values(password_hash=generate_password_hash(password), updated_at=utcnow())
    )
    if result.rowcount == 0:
        raise NotFound(f"user {username!r} not found")


def delete_user(session: Session, username: str) -> None:
    """Remove a user; NotFound for an unknown user."""
    if session.execute(delete(users).where(users.c.username == username)).rowcount == 0:
        raise NotFound(f"user {username!r} not found")


def list_users(session: Session) -> list[str]:
    """Every user name, sorted."""
    return list(session.execute(select(users.c.username).order_by(users.c.username)).scalars())


def verify_password(session: Session, username: str, password: str) -> bool:
    """True when the user exists and the password matches its hash."""
    stored = session.execute(select(users.c.password_hash).where(users.c.username == username)).scalar()
    if stored is None:
        # Hash anyway, so that an unknown name costs as much time as a wrong password.
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(stored, password)


def password_fingerprint(session: Session, username: str) -> Optional[str]:
    """A short digest of the stored hash: a session dies when the password changes."""
    stored = session.execute(select(users.c.password_hash).where(users.c.username == username)).scalar()
    if stored is None:
        return None
    import hashlib

    return hashlib.sha256(stored.encode()).hexdigest()[:16]


_DUMMY_HASH = generate_password_hash("not-a-real-password")
