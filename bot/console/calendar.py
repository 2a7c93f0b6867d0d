"""The organisation's appointments as an iCalendar feed behind a secret link (HMAC of the organisation id).

Calendar programs fetch the feed without a console session, and such links end up in many places, so
the feed carries no client name or contact: only time, service, place, language and a console link.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from icalendar import Calendar, Event

from bot.console.labels import LANGUAGE_NAMES, TOPICS, label
from bot.storage.models import Appointment, as_utc, utcnow


def calendar_token(organisation: str, secret_key: str) -> str:
    """The secret URL token of an organisation's feed."""
    return hmac.new(
        secret_key.encode("utf-8"), f"calendar:{organisation}".encode(), hashlib.sha256
    ).hexdigest()


def token_ok(organisation: str, given: str | None, secret_key: str) -> bool:
    """Constant-time check of a feed token."""
    return bool(given) and hmac.compare_digest(
        calendar_token(organisation, secret_key).encode(), str(given).encode()
    )


def feed(
    appointments: Iterable[Appointment],
    *,
    organisation: str,
    organisation_name: str,
    console_url: str,
    now: datetime | None = None,
) -> bytes:
    """An RFC 5545 calendar (escaped and folded by icalendar); cancelled appointments say so."""
    stamp = now or utcnow()
    calendar = Calendar()
    calendar.add("prodid", "-//Lotse//Beratungstermine//DE")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", f"Lotse-Termine {organisation_name}")
    calendar.add("x-wr-timezone", "Europe/Berlin")
    for appointment in appointments:
        event = Event()
        event.add("uid", f"{appointment.id}@lotse.{organisation}")
        event.add("dtstamp", stamp)
        event.add("dtstart", as_utc(appointment.starts_at))
        event.add("dtend", as_utc(appointment.ends_at))
        language = label(LANGUAGE_NAMES, appointment.language)
        event.add("summary", f"Beratungstermin ({language})")
        event.add("location", appointment.location_id)
        event.add(
            "description",
            f"Angebot: {appointment.service_id}\nThema: {label(TOPICS, appointment.topic)}\n"
            f"Sprache: {language}\nDetails in der Konsole: {console_url}",
        )
        cancelled = appointment.status == "cancelled"
        event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        calendar.add_component(event)
    return bytes(calendar.to_ical())
