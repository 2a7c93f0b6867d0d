"""The composition root: builds every service from the settings; nothing is built at import time."""

from __future__ import annotations

from dataclasses import dataclass

from actions.actions import build_actions
from bot.actions_webhook import ActionWebhook
from bot.channels.telegram import TelegramChannel
from bot.consent import ConsentService
from bot.content import Content, load_content
from bot.data_rights import DataRightsDialogue
from bot.engine import EngineClient
from bot.language import LanguageDetector
from bot.lexicon import LexiconMatcher
from bot.privacy import TrackerEraser
from bot.router import ConversationRouter
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
    telegram: TelegramChannel | None = None

    async def close(self) -> None:
        """Release connections and threads."""
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
    return Services(
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
        actions=ActionWebhook(build_actions(content, lexicon)),
    )
