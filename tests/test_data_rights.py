"""Consent and data rights: through the router with a real SQLite file, and end to end."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from bot import LANGUAGES
from bot.bootstrap import Services, bootstrap
from bot.channels.base import InboundMessage
from bot.consent import ConsentRequest
from bot.content import ConsentPolicy, ConsentVersion, Content
from bot.data_rights import Turn
from bot.jobs import purge
from bot.language import LanguageDetector
from bot.scheduler import RETENTION_JOB, build_scheduler, schedule_retention
from bot.storage.models import AuditEntry, ConsentEvent, Conversation
from tests.conftest import LiveStack, make_settings

YES = {"de": "ja", "en": "yes", "ar": "نعم", "uk": "так", "ru": "да", "tr": "evet", "fa": "بله", "fr": "oui"}
NO = {"de": "nein", "en": "no", "ar": "لا", "uk": "ні", "ru": "нет", "tr": "hayır", "fa": "نه", "fr": "non"}


@pytest.fixture
async def services(tmp_path: Path, detector: LanguageDetector) -> AsyncIterator[Services]:
    built = bootstrap(make_settings(tmp_path), detector=detector)
    yield built
    await built.close()


async def _start(services: Services, sender: str, lang: str) -> Turn:
    reply = await services.router.handle(
        InboundMessage(channel="rest", external_id=sender, text=f'/choose_language{{"language":"{lang}"}}')
    )
    async with services.database.unit_of_work() as session:
        conversation = await session.get_one(Conversation, reply.conversation_id)
        client_id = conversation.client_id
    return Turn(
        client_id=client_id, conversation_id=reply.conversation_id, channel="rest", language=lang, text=""
    )


async def _may(services: Services, client_id: str, request: ConsentRequest) -> bool:
    async with services.database.unit_of_work() as session:
        return await services.consent.may(session, client_id=client_id, request=request)


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_consent_is_asked_and_a_free_text_yes_recorded_in_every_language(
    services: Services, lang: str
) -> None:
    turn = await _start(services, f"c-{lang}", lang)
    request = ConsentRequest(scope="handoff", organisation="caritas-pb")
    asked = await services.rights.ask_consent(turn, request)
    assert asked.replies[0].content_key == "consent.handoff.v1"
    assert "Caritasverband Paderborn" in asked.replies[0].text
    assert [b.payload for b in asked.replies[0].buttons] == ["/consent_yes", "/consent_no"]
    assert not await _may(services, turn.client_id, request)
    answer = await services.router.handle(
        InboundMessage(channel="rest", external_id=f"c-{lang}", text=YES[lang])
    )
    assert answer.messages[0].content_key == "consent.granted"
    assert answer.messages[0].text == services.content.texts[lang]["consent.granted"]
    assert await _may(services, turn.client_id, request)
    assert not await _may(services, turn.client_id, ConsentRequest(scope="handoff", organisation="awo"))
    async with services.database.unit_of_work() as session:
        event = await session.scalar(select(ConsentEvent).where(ConsentEvent.client_id == turn.client_id))
    assert event is not None
    assert (event.scope, event.action, event.version, event.text_id, event.language, event.channel) == (
        "handoff", "granted", 1, "handoff-v1", lang, "rest",
    )  # fmt: skip
    assert len(event.text_hash) == 64


@pytest.mark.parametrize("lang", ["de", "ar", "uk"])
async def test_a_declined_consent_shares_nothing_and_gives_public_contacts(
    services: Services, lang: str
) -> None:
    turn = await _start(services, f"d-{lang}", lang)
    request = ConsentRequest(scope="booking", organisation="awo")
    await services.rights.ask_consent(turn, request)
    answer = await services.router.handle(
        InboundMessage(channel="rest", external_id=f"d-{lang}", text=NO[lang])
    )
    assert [m.content_key for m in answer.messages] == ["consent.declined", "handoff.contacts"]
    assert not await _may(services, turn.client_id, request)


async def test_a_material_new_version_asks_again(services: Services) -> None:
    turn = await _start(services, "v", "de")
    request = ConsentRequest(scope="handoff", organisation="diakonie")
    await services.rights.ask_consent(turn, request)
    await services.router.handle(InboundMessage(channel="rest", external_id="v", text="/consent_yes"))
    assert await _may(services, turn.client_id, request)
    services.consent.content = _with_handoff_v2(services, material=False)
    assert await _may(services, turn.client_id, request), "a wording change keeps the consent"
    services.consent.content = _with_handoff_v2(services, material=True)
    assert not await _may(services, turn.client_id, request), "a material change needs a new consent"


def _with_handoff_v2(services: Services, *, material: bool) -> Content:
    policy = services.content.consent
    version2 = ConsentVersion(scope="handoff", version=2, date=date(2027, 1, 1), material=material)
    versions = {**policy.versions, "handoff": (*policy.versions["handoff"], version2)}
    return dataclasses.replace(
        services.content, consent=ConsentPolicy(retention_days=policy.retention_days, versions=versions)
    )


async def test_withdrawal_adds_a_record_and_ends_the_permission(services: Services) -> None:
    turn = await _start(services, "w", "tr")
    request = ConsentRequest(scope="reminders", organisation="invia")
    await services.rights.ask_consent(turn, request)
    await services.router.handle(InboundMessage(channel="rest", external_id="w", text="evet"))
    overview = await services.router.handle(InboundMessage(channel="rest", external_id="w", text="/privacy"))
    assert [m.content_key for m in overview.messages] == ["privacy.info", "consent.active_list"]
    assert "IN VIA Paderborn" in overview.messages[1].text
    withdrawn = await services.rights.withdraw(dataclasses.replace(turn, language="tr"))
    assert withdrawn.replies[0].content_key == "consent.withdrawn"
    assert not await _may(services, turn.client_id, request)
    async with services.database.unit_of_work() as session:
        actions = list(await session.scalars(select(ConsentEvent.action).order_by(ConsentEvent.id)))
    assert actions == ["granted", "withdrawn"], "records are only added, never changed"
    again = await services.rights.withdraw(turn)
    assert again.replies[0].content_key == "consent.none_active"


async def test_under_16_gets_a_note_and_no_sharing_even_with_a_yes(services: Services) -> None:
    turn = await _start(services, "young", "de")
    note = await services.rights.note_age(turn, "15")
    assert note is not None and note.content_key == "age.under16"
    assert await services.rights.note_age(turn, "15") is None, "the note comes once"
    request = ConsentRequest(scope="handoff", organisation="awo")
    await services.rights.ask_consent(turn, request)
    await services.router.handle(InboundMessage(channel="rest", external_id="young", text="ja"))
    assert not await _may(services, turn.client_id, request)
    assert await services.rights.note_age(turn, "۲۰") is None


async def test_retention_purges_only_old_conversations_without_consent(services: Services) -> None:
    old = await _start(services, "old", "de")
    kept_with_consent = await _start(services, "consented", "de")
    recent = await _start(services, "recent", "de")
    await services.rights.ask_consent(kept_with_consent, ConsentRequest(scope="handoff", organisation="awo"))
    await services.router.handle(InboundMessage(channel="rest", external_id="consented", text="ja"))
    long_ago = datetime.now(UTC) - timedelta(days=45)
    async with services.database.unit_of_work() as session:
        for turn in (old, kept_with_consent):
            conversation = await session.get_one(Conversation, turn.conversation_id)
            conversation.updated_at = long_ago
        await session.commit()
    settings = services.settings
    purged = await purge(
        database_url=settings.database_url, tracker_url=settings.tracker_url, days=30
    )
    assert purged == 1
    async with services.database.unit_of_work() as session:
        remaining = set(await session.scalars(select(Conversation.id)))
        audit = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "purged")))
    assert old.conversation_id not in remaining
    assert {kept_with_consent.conversation_id, recent.conversation_id} <= remaining
    assert audit and audit[0].actor == "system:retention" and "1 clients" in audit[0].detail


async def test_the_retention_job_is_stored_and_survives_a_restart(services: Services) -> None:
    first = build_scheduler(services.settings)
    schedule_retention(first, services.settings, days=30)
    first.start(paused=True)
    first.shutdown(wait=False)
    second = build_scheduler(services.settings)
    second.start(paused=True)
    try:
        job = second.get_job(RETENTION_JOB)
        assert job is not None and job.kwargs["days"] == 30
        assert job.coalesce and job.misfire_grace_time == 6 * 3600
    finally:
        second.shutdown(wait=False)


@pytest.mark.engine
def test_export_sends_a_summary_and_a_json_file(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    live.rest("Hallo, ich heiße Marker-Export", sender=sender)
    replies = live.rest("Was speichern Sie über mich?", sender=sender)
    export = next(r for r in replies if r["custom"]["lotse"]["key"] == "data.export")  # type: ignore[index]
    attachment = export["custom"]["attachment"]  # type: ignore[index]
    assert attachment["filename"] == "lotse-data.json"
    data = json.loads(attachment["content"])
    texts = [m["text"] for c in data["conversations"] for m in c["messages"]]
    assert "Hallo, ich heiße Marker-Export" in texts
    assert "Nachrichten:" in str(export["text"])


@pytest.mark.engine
def test_delete_my_data_erases_the_client_everywhere(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    marker = f"MARKER{uuid.uuid4().hex[:12]}"
    live.rest(f"Hallo {marker}", sender=sender)
    live.rest(f"Was kostet der Integrationskurs {marker}?", sender=sender)
    asked = live.rest("Bitte löschen Sie alle meine Daten", sender=sender)
    assert asked[0]["custom"]["lotse"]["key"] == "delete.confirm"  # type: ignore[index]
    done = live.rest("/confirm_delete", sender=sender)
    assert done[0]["custom"]["lotse"]["key"] == "delete.done"  # type: ignore[index]
    for url in (live.settings.database_url, live.settings.tracker_url):
        assert url
        assert _tables_holding(url, marker) == [], url
        assert _tables_holding(url, sender) == [], url


@pytest.mark.engine
def test_a_cancelled_deletion_keeps_everything(live: LiveStack) -> None:
    sender = uuid.uuid4().hex
    live.rest("Hallo KeepMe", sender=sender)
    live.rest("/delete", sender=sender)
    kept = live.rest("nein", sender=sender)
    assert kept[0]["custom"]["lotse"]["key"] == "delete.cancelled"  # type: ignore[index]
    assert _tables_holding(live.settings.database_url, "Hallo KeepMe") == ["messages"]


def _tables_holding(url: str, needle: str) -> list[str]:
    """Every table with a text column containing the needle (a search over the whole database)."""
    engine = create_engine(url)
    found = []
    try:
        with engine.connect() as connection:
            for table in inspect(engine).get_table_names():
                columns = [c["name"] for c in inspect(engine).get_columns(table)]
                for column in columns:
                    hit = connection.execute(
                        text(f'SELECT 1 FROM "{table}" WHERE CAST("{column}" AS TEXT) LIKE :n LIMIT 1'),
                        {"n": f"%{needle}%"},
                    ).first()
                    if hit:
                        found.append(table)
                        break
    finally:
        engine.dispose()
    return found
