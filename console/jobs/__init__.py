"""Scheduled jobs: retention, backup, export, stale sweep, and the scheduler that runs them.

Each job is a plain function `(db, settings) -> counts` that the scheduler (leader
only), the CLI and the scripts call alike; see docs/jobs.md.
"""
