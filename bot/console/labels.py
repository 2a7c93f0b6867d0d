"""German labels of the console (advisers work in German; clients never see these)."""

from __future__ import annotations

LANGUAGE_NAMES = {
    "de": "Deutsch",
    "en": "Englisch",
    "ar": "Arabisch",
    "uk": "Ukrainisch",
    "ru": "Russisch",
    "tr": "Türkisch",
    "fa": "Persisch",
    "fr": "Französisch",
}
TOPICS = {
    "language_course": "Sprachkurs",
    "recognition": "Anerkennung",
    "qualification": "Berufliche Qualifizierung",
    "counselling": "Beratung",
}
CHANNELS = {"telegram": "Telegram", "widget": "Web-Chat", "rest": "REST"}
STATUS = {
    "waiting": "wartet",
    "claimed": "in Bearbeitung",
    "closed": "geschlossen",
    "returned": "an den Bot zurückgegeben",
    "cancelled": "von Klient*in beendet",
}
OUTCOMES = {
    "answered": "Frage beantwortet",
    "booked": "Termin gebucht",
    "referred": "weitervermittelt",
    "no_reply": "keine Antwort",
    "deleted": "Daten auf Wunsch gelöscht",
    "withdrawn": "Zustimmung widerrufen",
}
CONSENT_SCOPES = {
    "handoff": "Weitergabe an die Beratungsstelle",
    "booking": "Terminbuchung",
    "reminders": "Erinnerungen",
    "referral": "Weitervermittlung an eine andere Stelle",
}
AGE_GROUPS = {"under27": "unter 27", "27plus": "27 und älter"}
REASONS = {
    "requested": "auf Wunsch",
    "failed": "Bot kam nicht weiter",
    "topic": "Thema braucht Beratung",
    "referred": "weitervermittelt",
}
TRANSLATION_MARKS = {
    "authored": "",
    "machine": "maschinell übersetzt",
    "unavailable": "Übersetzung nicht verfügbar",
}
AUTHORS = {"client": "Klient*in", "bot": "Lotse", "adviser": "Beratung", "system": "System"}


def label(table: dict[str, str], key: str | None) -> str:
    """The German label of a code, the code itself when unknown, a dash for nothing."""
    if not key:
        return "–"
    return table.get(key, key)
