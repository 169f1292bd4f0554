"""The `email` channel: SMTP through TELEMETRY_SMTP_URL; the target is the recipients' addresses.

TELEMETRY_SMTP_URL: `smtp://[user:password@]host[:port][?from=alerts@example.com&starttls=true]`,
or `smtps://` for TLS from the start.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from console.alerts.channels import Delivery
from console.alerts.message import Message
from console.core.settings import Settings


def recipients(target: str) -> list[str]:
    return [part.strip() for part in target.split(",") if part.strip()]


def check(target: str) -> None:
    found = recipients(target)
    if not found or any(address.count("@") != 1 or " " in address or len(address) > 320 for address in found):
        raise ValueError("an email target is one or more addresses, comma-separated")


def mask(target: str) -> str:
    return ", ".join(f"{a[:1]}***@{a.split('@', 1)[1]}" if "@" in a else "***" for a in recipients(target))


def send(target: str, message: Message, settings: Settings) -> Delivery:
    if not settings.smtp_url:
        return Delivery("failed", None, "TELEMETRY_SMTP_URL is not set")
    url = urlsplit(settings.smtp_url)
    query = {key: values[-1] for key, values in parse_qs(url.query).items()}
    sender = query.get("from") or f"telemetry@{url.hostname or 'localhost'}"
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(recipients(target))
    # One Message-ID per notification: a retried delivery is recognisably the same mail.
    mail["Message-ID"] = make_msgid(idstring=message.notification_id, domain="local-telemetry")
    mail["X-Telemetry-Notification"] = message.notification_id
    mail.set_content(message.text)
    timeout = settings.alert_timeout_ms / 1000
    try:
        if url.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(url.hostname or "localhost", url.port or 465, timeout=timeout,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(url.hostname or "localhost", url.port or 25, timeout=timeout)
        with smtp:
            if url.scheme == "smtp" and query.get("starttls", "").lower() in ("1", "true", "yes"):
                smtp.starttls(context=ssl.create_default_context())
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
            smtp.send_message(mail)
    except smtplib.SMTPResponseException as exc:
        outcome = "failed" if exc.smtp_code >= 400 and exc.smtp_code < 500 else "rejected"
        return Delivery(outcome, exc.smtp_code, str(exc.smtp_error)[:500])
    except (OSError, smtplib.SMTPException) as exc:
        return Delivery("failed", None, f"{type(exc).__name__}: {exc}"[:500])
    return Delivery("sent", 250)
