"""Backup and restore.

SQLite: the online backup API copies a consistent snapshot while ingest goes on, into
`{backup_dir}/telemetry-YYYYmmddTHHMMSSZ.sqlite[.gz]`; the copy counts only after
`PRAGMA integrity_check` says ok (it is written under a hidden `.partial` name until
then); the newest TELEMETRY_BACKUP_KEEP are kept. PostgreSQL: `pg_dump` in custom
format (checked with `pg_restore --list`). Restore checks the file first, refuses
while a console serves the target (unless forced) and keeps the replaced file aside.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from console.core.files import temporary_sibling
from console.core.locks import try_exclusive
from console.core.progress import Progress, quiet
from console.core.settings import Settings
from console.core.timeutil import utcnow
from console.jobs.serving import serving_lock_path
from console.store.db import Database

PATTERNS = ("telemetry-*.sqlite", "telemetry-*.sqlite.gz", "telemetry-*.dump")


class BackupError(RuntimeError):
    """A backup could not be taken or a file is not a usable backup."""


class RestoreRefused(RuntimeError):
    """A console is serving the target database."""


def scheduled_backup(db: Database, settings: Settings) -> dict[str, Any]:
    """The scheduled job: take a backup, keep the newest N."""
    return take_backup(settings)


def take_backup(settings: Settings, *, now: datetime | None = None, dest_dir: Path | None = None,
                progress: Progress = quiet) -> dict[str, Any]:
    """Take one checked backup of the configured database; return what was written and pruned."""
    started = time.monotonic()
    directory = Path(dest_dir or settings.backup_dir)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
    if settings.is_sqlite:
        suffix = ".sqlite.gz" if settings.backup_compress else ".sqlite"
        final = _free_name(directory, stamp, suffix)
        runs = _sqlite_backup(settings, final, settings.backup_compress, progress)
    else:
        final = _free_name(directory, stamp, ".dump")
        runs = None
        progress(f"backup: pg_dump to {final.name}")
        _pg_dump(settings, final, progress)
    progress(f"backup: {final.name} written; pruning to the newest {settings.backup_keep}")
    removed = prune_backups(directory, settings.backup_keep)
    report: dict[str, Any] = {"path": str(final), "bytes": final.stat().st_size, "removed": [str(p) for p in removed],
                              "seconds": round(time.monotonic() - started, 3)}
    if runs is not None:
        report["runs"] = runs
    return report


def list_backups(directory: Path) -> list[Path]:
    """Backup files in `directory`, oldest first."""
    files = {p for pattern in PATTERNS for p in directory.glob(pattern)}
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def prune_backups(directory: Path, keep: int) -> list[Path]:
    files = list_backups(directory)
    doomed = files[:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _free_name(directory: Path, stamp: str, suffix: str) -> Path:
    path = directory / f"telemetry-{stamp}{suffix}"
    n = 2
    while path.exists():
        path = directory / f"telemetry-{stamp}-{n}{suffix}"
        n += 1
    return path


def _sqlite_backup(settings: Settings, final: Path, compress: bool, progress: Progress) -> int:
    partial = temporary_sibling(final, ".partial")
    copy = temporary_sibling(final, ".sqlite") if compress else partial
    try:
        source = sqlite3.connect(str(settings.db_path), timeout=settings.db_busy_timeout_ms / 1000)
        target = sqlite3.connect(str(copy))
        progress(f"backup: copying {settings.db_path.name} to {final.name}")
        try:
            # One step (pages=-1): a consistent snapshot under one short read lock; a
            # step-wise copy would start over each time ingest writes.
            source.backup(target)
            # A copy of a WAL database is in WAL mode too: checking it read-only would
            # leave -wal and -shm files beside it. A backup is one file.
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
            source.close()
        progress("backup: checking the copy (integrity_check)")
        runs = check_sqlite_file(copy)
        if compress:
            progress("backup: compressing")
            with open(copy, "rb") as raw, gzip.open(partial, "wb", compresslevel=6) as packed:
                shutil.copyfileobj(raw, packed, 1024 * 1024)
            copy.unlink()
        _fsync(partial)
        os.replace(partial, final)
        _fsync_dir(final.parent)
        return runs
    except BaseException:
        partial.unlink(missing_ok=True)
        copy.unlink(missing_ok=True)
        raise


def check_sqlite_file(path: Path) -> int:
    """Raise BackupError unless `path` is a sound console database; return its run count."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                raise BackupError(f"{path.name} failed integrity_check: {result[:3]}")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "agent_runs" not in tables:
                raise BackupError(f"{path.name} holds no agent_runs table: not a telemetry database")
            return conn.execute("SELECT count(*) FROM agent_runs").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path.name} is not a readable SQLite database: {exc}") from exc


def pg_tool(settings: Settings, name: str) -> str:
    """The path of pg_dump / pg_restore (TELEMETRY_PG_BIN_DIR, else the PATH)."""
    if settings.pg_bin_dir:
        candidate = Path(settings.pg_bin_dir) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} is not on the PATH: install the PostgreSQL client tools (same major version as the "
            "server, e.g. apt-get install postgresql-client) or set TELEMETRY_PG_BIN_DIR"
        )
    return found


def _pg_args(settings: Settings) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and an environment that carries it."""
    url = sa.engine.make_url(settings.database_url).set(drivername="postgresql")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
        url = url.set(password=None)
    return url.render_as_string(hide_password=False), env


def _pg_dump(settings: Settings, final: Path, progress: Progress) -> None:
    partial = temporary_sibling(final, ".partial")
    url, env = _pg_args(settings)
    try:
        done = subprocess.run([pg_tool(settings, "pg_dump"), "--format=custom", "--file", str(partial),
                               "--dbname", url], env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        progress("backup: checking the archive (pg_restore --list)")
        check_pg_dump(settings, partial)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def check_pg_dump(settings: Settings, path: Path) -> None:
    done = subprocess.run([pg_tool(settings, "pg_restore"), "--list", str(path)], capture_output=True, text=True)
    if done.returncode != 0 or "agent_runs" not in done.stdout:
        raise BackupError(f"{path.name} is not a usable pg_dump archive: {done.stderr.strip()[-300:]}")


def restore(settings: Settings, file: Path, *, to: Path | None = None, force: bool = False,
            now: datetime | None = None, progress: Progress = quiet) -> dict[str, Any]:
    """Put a backup in place of the target database (SQLite file or PostgreSQL database)."""
    file = Path(file)
    if not file.exists():
        raise BackupError(f"{file} does not exist")
    if not settings.is_sqlite and to is None:
        return _pg_restore(settings, file, force, progress)
    target = Path(to) if to is not None else settings.db_path
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = (now or utcnow()).strftime("%Y%m%dT%H%M%SZ")
    # Stage (and check) the new file beside the target first.
    fd, staged_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".restoring", dir=target.parent)
    os.close(fd)
    staged = Path(staged_name)
    try:
        progress(f"restore: staging {file.name} beside {target.name}")
        if file.name.endswith(".gz"):
            with gzip.open(file, "rb") as packed, open(staged, "wb") as raw:
                shutil.copyfileobj(packed, raw, 1024 * 1024)
        else:
            shutil.copyfile(file, staged)
        progress("restore: checking it (integrity_check)")
        runs = check_sqlite_file(staged)
        lock = try_exclusive(serving_lock_path(settings, target))
        if lock is None and not force:
            raise RestoreRefused(f"a console is serving {target}: stop it first, or use --force")
        try:
            aside = None
            if target.exists():
                aside = target.with_name(f"{target.name}.replaced-{stamp}")
                os.replace(target, aside)
            for sidecar in ("-journal", "-wal", "-shm"):  # they belong to the file set aside
                old = Path(f"{target}{sidecar}")
                if old.exists():
                    os.replace(old, Path(f"{aside or target}{sidecar}.replaced-{stamp}"))
            progress(f"restore: putting it in place of {target}")
            _fsync(staged)
            os.replace(staged, target)
            _fsync_dir(target.parent)
        finally:
            if lock is not None:
                lock.close()
    finally:
        staged.unlink(missing_ok=True)
    return {"restored": str(target), "from": str(file), "runs": runs,
            "replaced_file_kept_at": str(aside) if aside else None, "forced": force and lock is None}


def _pg_restore(settings: Settings, file: Path, force: bool, progress: Progress) -> dict[str, Any]:
    progress(f"restore: checking {file.name} (pg_restore --list)")
    check_pg_dump(settings, file)
    lock = try_exclusive(serving_lock_path(settings))
    if lock is None and not force:
        raise RestoreRefused("a console on this host is serving this PostgreSQL database: stop it first, or use --force")
    url, env = _pg_args(settings)
    progress("restore: pg_restore --clean --single-transaction")
    try:
        done = subprocess.run([pg_tool(settings, "pg_restore"), "--clean", "--if-exists", "--no-owner",
                               "--single-transaction", "--dbname", url, str(file)],
                              env=env, capture_output=True, text=True, timeout=3600)
    finally:
        if lock is not None:
            lock.close()
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return {"restored": "postgresql", "from": str(file), "forced": force and lock is None}


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
