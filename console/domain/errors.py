"""The domain's own failures; the API maps each to its status (see console/api/runs.py)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the domain refuses; `status` is what the API answers."""

    status = 400

    def __init__(self, detail: Any):
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The run (or other thing) does not exist (any more)."""

    status = 404


class Conflict(DomainError):
    """The request contradicts what is stored."""

    status = 409


class Invalid(DomainError):
    """A query or body the models accepted but the domain cannot use (a bad filter)."""

    status = 400
