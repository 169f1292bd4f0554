"""The leader lock: whoever holds it runs the scheduled jobs; everyone else waits.

SQLite: an exclusive `flock` on `{db_path}.leader.lock` (released by the OS when the
holder dies). PostgreSQL: `pg_try_advisory_lock` on a connection of its own, with TCP
keepalives tied to the lease so that a vanished holder's lock is freed; re-acquired
after the connection drops.
"""

from __future__ import annotations

import fcntl
import logging
from typing import IO, Any

import sqlalchemy as sa

from console.core.locks import try_exclusive
from console.core.settings import Settings

log = logging.getLogger("console.jobs.leader")

# Any constant will do; it names "the scheduler leader" among advisory locks (per database).
PG_LEADER_LOCK = 0x6C74_6A62


class LeaderLock:
    """Try-lock semantics: `try_acquire()` never blocks; `still_held()` checks the hold."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._handle: IO[str] | None = None
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._handle is not None or self._conn is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        try:
            if self.settings.is_sqlite:
                return self._acquire_file()
            return self._acquire_advisory()
        except Exception as exc:  # a database that is down is "not leader", never a crash
            log.warning("leader lock not acquired: %s", exc)
            self.release()
            return False

    def still_held(self) -> bool:
        """True while the lock is ours; a dropped PostgreSQL connection means it is not."""
        if self._handle is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
            return True
        except Exception as exc:
            log.warning("leader connection lost (%s); stepping down", exc)
            self.release()
            return False

    def release(self) -> None:
        if self._handle is not None:
            try:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            finally:
                self._handle.close()
                self._handle = None
        if self._conn is not None:
            try:
                self._conn.close()  # closing the session frees its advisory lock
            except Exception:
                pass
            self._conn = None

    def _acquire_file(self) -> bool:
        self._handle = try_exclusive(self.settings.lock_path("leader"))
        return self._handle is not None

    def _acquire_advisory(self) -> bool:
        import psycopg

        lease = self.settings.scheduler_lease_seconds
        url = sa.engine.make_url(self.settings.database_url).set(drivername="postgresql")
        probe = max(1, lease // 3)
        conn = psycopg.connect(
            url.render_as_string(hide_password=False),
            autocommit=True,
            connect_timeout=max(2, probe),
            application_name="local-telemetry-leader",
            # Our side notices a dead server or network within about one lease...
            keepalives=1, keepalives_idle=probe, keepalives_interval=probe, keepalives_count=2,
        )
        try:
            # ...and the server notices a dead holder within about one lease, freeing the lock.
            conn.execute(f"SET tcp_keepalives_idle = {probe}")
            conn.execute(f"SET tcp_keepalives_interval = {probe}")
            conn.execute("SET tcp_keepalives_count = 2")
            conn.execute("SET statement_timeout = '5s'")
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (PG_LEADER_LOCK,)).fetchone()[0]
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True
