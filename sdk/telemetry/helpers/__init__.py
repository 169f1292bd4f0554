"""Helpers kept from the older package: cancel stale runs of an agent at start-up."""

from .cleanup_stale_runs import cleanup_on_startup, cleanup_stale_runs

__all__ = ["cleanup_stale_runs", "cleanup_on_startup"]
