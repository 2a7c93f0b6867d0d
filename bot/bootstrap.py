"""The composition root: builds every service from the settings; nothing is built at import time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from actions.actions import build_actions
from actions.booking import BookingContext
from bot.actions_webhook import ActionWebhook
from bot.appointments import AppointmentsDialogue
from bot.booking import BookingService
from bot.channels.base import OutboundMessage
from bot.channels.telegram import TelegramChannel
from bot.consent import ConsentService
from bot.content import Content, load_content
from bot.data_rights import DataRightsDialogue
from bot.directory import Directory, load_directory
from bot.engine import EngineClient
from bot.handoff import HandoffService, OrganisationChooser
from bot.hub import EventHub
from bot.language import LanguageDetector
from bot.lexicon import LexiconMatcher
from bot.outbox import Outbox
from bot.privacy import TrackerEraser
from bot.proposals import ProposalService
from bot.router import ConversationRouter
from bot.routing import RoutingRules, Situation, load_routing, route
from bot.settings import Settings
from bot.storage.database import Database
from bot.texts import TextService
from bot.translation import TranslationService, Translator, build_translator


@dataclass(kw_only=True)
class Services:
    """Everything the entry points need."""

    settings: Settings
    content: Content
    database: Database
    engine: EngineClient
    translation: TranslationService
    texts: TextService
    consent: ConsentService
    rights: DataRightsDialogue
    router: ConversationRouter
    actions: ActionWebhook
    hub: EventHub
    outbox: Outbox
    handoff: HandoffService
    directory: Directory
    booking: BookingService
    appointments: AppointmentsDialogue
    proposals: ProposalService
    telegram: TelegramChannel | None = None

    async def close(self) -> None:
        """Release connections and threads."""
        await self.hub.close()
        await self.engine.close()
        self.translation.close()
        await self.database.dispose()


def bootstrap(
    settings: Settings,
    *,
    translator: Translator | None = None,
    detector: LanguageDetector | None = None,
) -> Services:
    """Build the services; raise ContentError or SettingsError with a clear message."""
    content = load_content(settings.content_dir)
    database = Database(settings.database_url)
    engine = EngineClient(settings.engine_url, timeout=settings.engine_timeout)
    translation = TranslationService(
        translator
        or build_translator(settings.translator, url=settings.translator_url, key=settings.translator_key),
        database,
        timeout=settings.translator_timeout,
        glossary={lang: lex.glossary for lang, lex in content.lexicons.items()},
    )
    texts = TextService(content, translation)
    lexicon = LexiconMatcher(content)
    consent = ConsentService(content, privacy_url=f"{settings.public_url}/privacy")
    rights = DataRightsDialogue(
        database=database,
        texts=texts,
        consent=consent,
        lexicon=lexicon,
        trackers=TrackerEraser(settings.tracker_url),
    )
    hub = EventHub(settings.redis_url)
    outbox = Outbox()
    directory = load_directory(settings.content_dir, content.organisations)
    rules = load_routing(settings.content_dir, directory, content.texts["de"])
    chooser: OrganisationChooser = DirectoryChooser(directory, rules)
    booking = BookingService(
        database=database,
        directory=directory,
        texts=texts,
        consent=consent,
        outbox=outbox,
        secret=settings.secret_key,
        public_url=settings.public_url,
    )
    appointments = AppointmentsDialogue(booking, texts)
    handoff = HandoffService(
        database=database,
        texts=texts,
        translation=translation,
        consent=consent,
        rights=rights,
        hub=hub,
        outbox=outbox,
        chooser=chooser,
    )
    rights.on_revoked = handoff.revoked
    proposals = ProposalService(
        database=database,
        booking=booking,
        appointments=appointments,
        handoff=handoff,
        rights=rights,
        consent=consent,
        texts=texts,
        hub=hub,
    )
    router = ConversationRouter(
        database=database,
        engine=engine,
        texts=texts,
        detector=detector
        or LanguageDetector(
            content.lexicons["de"].embedded_terms if "de" in content.lexicons else frozenset()
        ),
        lexicon=lexicon,
        rights=rights,
        handoff=handoff,
        outbox=outbox,
        appointments=appointments,
        proposals=proposals,
        default_language=settings.default_language,
        max_chars=settings.max_message_chars,
    )
    telegram = (
        TelegramChannel(
            router,
            texts,
            database,
            token=settings.telegram_token,
            webhook_secret=settings.telegram_webhook_secret,
            api_url=settings.telegram_api_url,
        )
        if settings.telegram_token
        else None
    )
    if telegram is not None:
        outbox.register("telegram", _TelegramPush(telegram))
    return Services(
        hub=hub,
        outbox=outbox,
        handoff=handoff,
        telegram=telegram,
        settings=settings,
        content=content,
        database=database,
        engine=engine,
        translation=translation,
        texts=texts,
        consent=consent,
        rights=rights,
        router=router,
        actions=ActionWebhook(build_actions(content, lexicon, BookingContext(booking, rules, lexicon))),
        directory=directory,
        booking=booking,
        appointments=appointments,
        proposals=proposals,
    )


class _TelegramPush:
    """The outbox's view of Telegram: chat ids are stored as text."""

    def __init__(self, telegram: TelegramChannel) -> None:
        self.telegram = telegram

    async def send(self, external_id: str, message: OutboundMessage) -> None:
        """Send to a chat."""
        await self.telegram.send(int(external_id), message)


class DirectoryChooser:
    """Hands a conversation to the organisation the routing rules choose; office hours from the directory."""

    def __init__(self, directory: Directory, rules: RoutingRules) -> None:
        self.directory = directory
        self.rules = rules

    def for_handoff(self, *, topic: str | None, town: str | None, age: str | None, language: str) -> str:
        """The organisation of the service the routing rules pick (the default rule when little is known)."""
        years = int(age) if age is not None and age.isdigit() else None
        situation = Situation(
            topic=topic if topic in ("language_course", "recognition", "qualification") else "counselling",
            age=years,
            town=town if town in self.directory.towns else None,
            language=language,
        )
        decision = route(self.directory, self.rules, situation)
        service = getattr(decision, "service", None)
        if service is not None:
            return str(service.organisation)
        return next(iter(self.directory.organisations))

    def next_opening(self, organisation: str, after: datetime) -> datetime | None:
        """None while one of the organisation's services is open, else its next opening."""
        from bot.directory import opening_slots

        soonest: datetime | None = None
        for service in self.directory.services_of(organisation):
            for start, _location in opening_slots(
                service,
                self.directory,
                after=after - timedelta(minutes=service.slot_minutes),
                until=after + timedelta(days=14),
            ):
                if start <= after:
                    return None
                soonest = start if soonest is None else min(soonest, start)
                break
        return soonest
