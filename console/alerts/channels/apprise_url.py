"""The `apprise` channel: any service the apprise package reaches, by its URL (slack://, json://, ...)."""

from __future__ import annotations

from console.alerts.channels import Delivery
from console.alerts.message import Message
from console.core.settings import Settings


def _instance(target: str):
    import apprise

    instance = apprise.Apprise()
    if not instance.add(target):
        return None
    return instance


def check(target: str) -> None:
    if "://" not in target or _instance(target) is None:
        raise ValueError("an apprise target is a URL apprise understands, e.g. slack://TokenA/TokenB/TokenC")


def mask(target: str) -> str:
    return f"{target.split('://', 1)[0]}://***"


def send(target: str, message: Message, settings: Settings) -> Delivery:
    instance = _instance(target)
    if instance is None:
        return Delivery("rejected", None, "apprise does not understand this URL")
    try:
        ok = instance.notify(title=message.title, body=message.text)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure is this delivery's failure
        return Delivery("failed", None, f"{type(exc).__name__}"[:500])
    # Apprise answers only yes or no; a no may pass, so it is retried.
    return Delivery("sent") if ok else Delivery("failed", None, "the service did not accept the notification")
