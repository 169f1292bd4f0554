"""Where notifications go: one module per channel kind, each with `check`, `mask` and `send`.

`send(target, message, settings)` makes one delivery try and returns a Delivery:
`sent`; `failed` (worth retrying: network, timeout, 5xx, 408, 429); or
`rejected` (the receiver refused it for good). A target is a secret: `mask`
gives what answers, pages and logs may show.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

KINDS = ("webhook", "email", "apprise")


@dataclass
class Delivery:
    outcome: str  # sent | failed | rejected
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait


def module(kind: str) -> ModuleType:
    from console.alerts.channels import apprise_url, email, webhook

    return {"webhook": webhook, "email": email, "apprise": apprise_url}[kind]


def scrub(text: str, target: str, masked: str) -> str:
    """Error text without the target (it may carry a token)."""
    return text.replace(target, masked) if target else text
