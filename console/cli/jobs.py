"""CLI commands of the scheduled jobs: retention, backup, restore, export, jobs.

Each runs the same function as the scheduler, in this process, and records it in
the job history (trigger "manual"); a failure exits with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from console.cli.registry import arg, command, print_json
from console.core.progress import terminal_progress
from console.core.settings import Settings
from console.jobs.scheduler import ALL_JOBS
from console.store.db import Database, make_engine


def _db(settings: Settings) -> Database:
    return Database(settings, engine=make_engine(settings, pool_size=2))


def _run(settings: Settings, name: str, work) -> int:
    """Run `work(db)` (default: the job's own function) as a recorded manual run."""
    from console.jobs.scheduler import run_job

    db = _db(settings)
    try:
        result = run_job(db, settings, name, trigger="manual", work=(lambda: work(db)) if work else None)
    finally:
        db.dispose()
    if result is None:
        print(f"error: {name} is already being run for this moment; try again", file=sys.stderr)
        return 1
    if result["outcome"] == "failure":
        print(f"error: {name} failed: {result['error']}", file=sys.stderr)
        return 1
    print_json(result["counts"])
    return 0


@command(
    "retention",
    "Delete runs (and their events) older than N days, in batches.",
    arg("--days", type=int, help="keep this many days (default TELEMETRY_RETENTION_DAYS; 0 keeps everything)"),
    arg("--dry-run", action="store_true", help="only count what would be deleted"),
    arg("--batch-size", type=int, help="runs per transaction (default TELEMETRY_RETENTION_BATCH_SIZE)"),
)
def retention_command(settings: Settings, options) -> int:
    from console.jobs.retention import apply_retention

    days = settings.retention_days if options.days is None else options.days
    if days < 0:
        print("error: --days must be 0 or more", file=sys.stderr)
        return 2
    batch = options.batch_size or settings.retention_batch_size
    if options.dry_run:
        db = _db(settings)
        try:
            print_json(apply_retention(db, days, batch_size=batch, dry_run=True))
        finally:
            db.dispose()
        return 0
    return _run(settings, "retention", lambda db: apply_retention(
        db, days, batch_size=batch, vacuum=settings.retention_vacuum, progress=terminal_progress()))


@command(
    "backup",
    "Take a checked backup now (SQLite: online backup API; PostgreSQL: pg_dump).",
    arg("--dir", help="write into this directory (default: the backups directory)"),
)
def backup_command(settings: Settings, options) -> int:
    from console.jobs.backup import take_backup

    dest = Path(options.dir) if options.dir else None
    return _run(settings, "backup", lambda db: take_backup(settings, dest_dir=dest, progress=terminal_progress()))


@command(
    "restore",
    "Restore a backup file (checked first); refuses while a console serves the target.",
    arg("file", help="a telemetry-*.sqlite[.gz] or telemetry-*.dump backup"),
    arg("--to", help="SQLite: restore to this path instead of the configured database"),
    arg("--force", action="store_true", help="restore even though a console is serving the target"),
)
def restore_command(settings: Settings, options) -> int:
    from console.jobs.backup import BackupError, RestoreRefused, restore

    try:
        result = restore(settings, Path(options.file), to=Path(options.to) if options.to else None,
                         force=options.force, progress=terminal_progress())
    except RestoreRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_json(result)
    return 0


@command(
    "export",
    "Post ended runs to the configured webhooks / OTLP / Google Sheets now (one attempt each).",
    arg("--backfill", action="store_true", help="also post runs that ended before a destination was configured"),
)
def export_command(settings: Settings, options) -> int:
    from console.jobs.export import destinations, export_pending

    if not destinations(settings):
        print("error: no export destination is configured "
              "(TELEMETRY_EXPORT_WEBHOOK_URLS, TELEMETRY_EXPORT_OTLP_ENDPOINT, GOOGLE_SHEETS_API_*)",
              file=sys.stderr)
        return 2
    return _run(settings, "export", lambda db: export_pending(db, settings, backfill=options.backfill))


@command(
    "jobs",
    "Scheduled jobs: list them (next run, last outcome), or run one now.",
    arg("action", choices=["list", "run"]),
    arg("name", nargs="?", help=f"the job to run: {', '.join(ALL_JOBS)}"),
    arg("--request", action="store_true", help="ask the serving console's leader to run it instead"),
)
def jobs_command(settings: Settings, options) -> int:
    from console.jobs import history
    from console.jobs.scheduler import configured_jobs

    if options.action == "list":
        db = _db(settings)
        try:
            with db.read() as session:
                print_json(history.list_jobs(session, list(configured_jobs(settings))))
        finally:
            db.dispose()
        return 0
    if options.name not in ALL_JOBS:
        print(f"error: name one of {', '.join(ALL_JOBS)}", file=sys.stderr)
        return 2
    if options.request:
        db = _db(settings)
        try:
            db.write(lambda s: history.request_run(s, options.name, "cli"))
            with db.read() as session:
                leader = history.live_leader(session, settings.scheduler_lease_seconds)
        finally:
            db.dispose()
        if leader is None:
            print(f"requested, but {history.unattended(options.name, settings.scheduler_lease_seconds)}",
                  file=sys.stderr)
            return 1
        print(f"requested: the leader ({leader}) runs {options.name} within a few seconds")
        return 0
    return _run(settings, options.name, None)
