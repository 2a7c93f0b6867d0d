"""Telegram through python-telegram-bot 22: webhook mode inside our ASGI app (``updater(None)``),
polling mode for a quick local start. Every update becomes one InboundMessage for the router."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.constants import ChatAction, MessageLimit
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import LANGUAGES
from bot.channels.base import InboundMessage, OutboundMessage
from bot.errors import StorageUnavailable
from bot.router import ConversationRouter
from bot.storage.database import Database
from bot.storage.models import TelegramUpdate
from bot.texts import TextService

log = logging.getLogger(__name__)

CHANNEL = "telegram"
COMMANDS = ("start", "language", "help", "adviser", "appointments", "privacy", "delete")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_CALLBACK_BYTES = 64


def split_text(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Split a reply into Telegram-sized parts at paragraph, then line, then word boundaries."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), 0) or max(window.rfind("\n"), 0) or max(window.rfind(" "), 0) or limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


class TelegramChannel:
    """Receives Telegram updates, hands them to the router, sends the replies back."""

    def __init__(
        self,
        router: ConversationRouter,
        texts: TextService,
        database: Database,
        *,
        token: str,
        webhook_secret: str | None,
        api_url: str | None = None,
    ) -> None:
        self.router = router
        self.texts = texts
        self.database = database
        self.webhook_secret = webhook_secret
        self.polling = webhook_secret is None
        builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any] = (
            Application.builder().token(token).rate_limiter(AIORateLimiter(max_retries=2))
        )
        if api_url:
            builder = builder.base_url(f"{api_url.rstrip('/')}/bot").base_file_url(
                f"{api_url.rstrip('/')}/file/bot"
            )
        if not self.polling:
            builder = builder.updater(None)
        self.application = builder.build()
        self._add_handlers()

    def _add_handlers(self) -> None:
        app = self.application
        app.add_handler(MessageHandler(filters.UpdateType.EDITED, self._on_media("edited")))
        app.add_handler(CommandHandler(list(COMMANDS), self._on_command))
        app.add_handler(CallbackQueryHandler(self._on_button))
        app.add_handler(MessageHandler(filters.TEXT, self._on_text))  # other "/..." texts too
        app.add_handler(MessageHandler(filters.PHOTO, self._on_media("photo")))
        app.add_handler(MessageHandler(filters.Sticker.ALL, self._on_media("sticker")))
        app.add_handler(
            MessageHandler(filters.VOICE | filters.AUDIO | filters.VIDEO_NOTE, self._on_media("voice"))
        )
        app.add_handler(MessageHandler(filters.Document.ALL | filters.VIDEO, self._on_media("document")))
        app.add_handler(MessageHandler(filters.LOCATION | filters.VENUE, self._on_media("location")))
        app.add_handler(MessageHandler(filters.ALL, self._on_media("unsupported")))
        app.add_error_handler(self._on_error)

    async def start(self) -> None:
        """Initialise the bot, register the localized commands, start polling if configured."""
        await self.application.initialize()
        await self.register_commands()
        await self.application.start()
        if self.polling and self.application.updater is not None:
            await self.application.bot.delete_webhook()
            await self.application.updater.start_polling(poll_interval=0.5, timeout=10)

    async def stop(self) -> None:
        """Stop polling and the application."""
        if self.polling and self.application.updater is not None and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def register_commands(self) -> None:
        """set_my_commands once per language, with descriptions from content/."""
        for lang in (None, *LANGUAGES):
            code = lang or "de"
            commands = [
                BotCommand(name, (await self.texts.text(f"command.{name}", code))[0]) for name in COMMANDS
            ]
            try:
                await self.application.bot.set_my_commands(commands, language_code=lang)
            except TelegramError as exc:
                log.warning("set_my_commands(%s) failed: %s", lang, exc)

    async def webhook(self, request: Request) -> Response:
        """POST /telegram/webhook: check the secret (constant time), ignore repeats, process."""
        given = request.headers.get(SECRET_HEADER, "")
        if not self.webhook_secret or not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        try:
            data = json.loads(await request.body())
            update = Update.de_json(data, self.application.bot)
        except (ValueError, TypeError, KeyError):
            return JSONResponse({"error": "not a Telegram update"}, status_code=400)
        if update is None:
            return JSONResponse({"error": "not a Telegram update"}, status_code=400)
        try:
            if not await self._first_time(update.update_id):
                return JSONResponse({"ok": True, "duplicate": True})
        except StorageUnavailable:
            return JSONResponse({"error": "storage unavailable"}, status_code=503)
        await self.application.process_update(update)
        return JSONResponse({"ok": True})

    async def _first_time(self, update_id: int) -> bool:
        async with self.database.unit_of_work() as session:
            session.add(TelegramUpdate(update_id=update_id))
            try:
                await session.commit()
            except IntegrityError:
                return False
        return True

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A text message."""
        if update.effective_message and update.effective_message.text is not None:
            await self._route(update, update.effective_message.text, "text")

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start, /language, /help, /adviser, /appointments, /privacy, /delete."""
        message = update.effective_message
        if message and message.text:
            await self._route(update, message.text.split()[0].split("@")[0], "text")

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A pressed inline button: answer the callback, continue the dialogue with its payload."""
        query = update.callback_query
        if query is None:
            return
        await query.answer()
        if query.message is not None and query.data:
            with contextlib.suppress(TelegramError):  # too old to edit: the dialogue goes on anyway
                await query.edit_message_reply_markup(reply_markup=None)
            await self._route(update, query.data, "text")

    def _on_media(self, kind: str) -> Any:
        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            await self._route(update, "", kind)

        return handle

    async def _route(self, update: Update, text: str, kind: str) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        user = update.effective_user
        hint = (user.language_code or "")[:2].lower() if user and user.language_code else None
        with contextlib.suppress(TelegramError):  # the typing indicator is a courtesy
            await self.application.bot.send_chat_action(chat.id, ChatAction.TYPING)
        inbound = InboundMessage(
            channel=CHANNEL, external_id=str(chat.id), text=text, kind=kind, language_hint=hint
        )
        for message in await self.router.replies_or_apology(inbound):
            await self.send(chat.id, message)

    async def send(self, chat_id: int, message: OutboundMessage) -> None:
        """Send one reply: text in parts, buttons as an inline keyboard, a file as a document."""
        markup = None
        buttons = [b for b in message.buttons if len(b.payload.encode()) <= MAX_CALLBACK_BYTES]
        if buttons:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(b.title, callback_data=b.payload)] for b in buttons]
            )
        parts = split_text(message.text)
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            await self.application.bot.send_message(
                chat_id, part, reply_markup=markup if last else None, disable_web_page_preview=True
            )
        if message.attachment:
            document = InputFile(
                message.attachment.content.encode("utf-8"), filename=message.attachment.filename
            )
            await self.application.bot.send_document(chat_id, document)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log first, then apologise in the client's language if we know the chat."""
        log.error("error while handling a Telegram update", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            user = update.effective_user
            hint = (user.language_code or "")[:2] if user and user.language_code else None
            try:
                await self.send(update.effective_chat.id, await self.router.apology(hint))
            except TelegramError:
                log.warning("could not send the apology to Telegram")
