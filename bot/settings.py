"""Typed settings from environment variables, validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bot.errors import SettingsError

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: content/, config/ and var/ are found relative to it."""

TRANSLATOR_CHOICES = ("none", "google", "deepl", "microsoft", "libre")
PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "xxx", "todo", ""})
DEVELOPMENT_SECRET_KEY = "development-only-not-a-secret"
"""LOTSE_SECRET_KEY outside production when none is set; refused in production."""
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything configurable; see INTERFACES.md for the names and defaults."""

    database_url: str
    engine_url: str
    app_port: int = 8000
    app_host: str = "127.0.0.1"
    engine_port: int = 5005
    environment: str = "development"
    content_dir: Path = ROOT / "content"
    telegram_token: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_url: str | None = None
    translator: str = "none"
    translator_url: str | None = None
    translator_key: str | None = None
    translator_timeout: float = 4.0
    engine_timeout: float = 20.0
    max_message_chars: int = 4000
    default_language: str = "de"
    partner_origins: tuple[str, ...] = field(default_factory=tuple)
    public_url: str = "http://localhost:8000"
    scheduler: bool = True
    tracker_url: str | None = None
    redis_url: str | None = None
    """Redis for socket.io between app replicas (rooms and emits shared); None: one process."""
    secret_key: str = DEVELOPMENT_SECRET_KEY
    """Signs the console's calendar links (LOTSE_SECRET_KEY)."""
    console_idle_minutes: int = 30
    console_max_hours: int = 10
    console_telegram_chats: tuple[tuple[str, str], ...] = ()
    """(organisation, Telegram chat id) pairs told about new tickets (LOTSE_CONSOLE_TELEGRAM_CHATS)."""

    @property
    def console_secure_cookies(self) -> bool:
        """Console cookies are Secure, except when the public URL is plain http on localhost (dev, tests)."""
        parsed = urlparse(self.public_url)
        return not (parsed.scheme == "http" and parsed.hostname in LOCAL_HOSTS)

    @property
    def telegram_enabled(self) -> bool:
        """Telegram runs only when a token is configured."""
        return bool(self.telegram_token)


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise SettingsError(f"{name} must be on or off, got {raw!r}")


def _chats(raw: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        organisation, _, chat = item.partition(":")
        if not organisation.strip() or not chat.strip().lstrip("-").isdigit():
            raise SettingsError(
                "LOTSE_CONSOLE_TELEGRAM_CHATS must be organisation:chat_id pairs separated by commas, "
                f"got {item!r}"
            )
        pairs.append((organisation.strip(), chat.strip()))
    return tuple(pairs)


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        raise SettingsError(f"{name} must be a URL starting with {' or '.join(schemes)}, got {value!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raise SettingsError naming the first wrong variable."""
    env = os.environ if env is None else env
    engine_port = _int(env, "ENGINE_PORT", 5005, low=1, high=65535)
    app_port = _int(env, "APP_PORT", 8000, low=1, high=65535)
    default_db = f"sqlite:///{ROOT / 'var' / 'lotse.db'}"
    database_url = env.get("LOTSE_DATABASE_URL") or default_db
    if not database_url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise SettingsError(
            "LOTSE_DATABASE_URL must be an SQLAlchemy URL for SQLite or PostgreSQL "
            f"(sqlite:///path or postgresql+psycopg://user@host/db), got {database_url!r}"
        )
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    engine_url = _url(
        "LOTSE_ENGINE_URL",
        env.get("LOTSE_ENGINE_URL") or f"http://localhost:{engine_port}",
        ("http", "https"),
    ).rstrip("/")
    environment = env.get("LOTSE_ENV", "development")
    if environment not in ("development", "test", "production"):
        raise SettingsError(f"LOTSE_ENV must be development, test or production, got {environment!r}")
    translator = (env.get("LOTSE_TRANSLATOR") or "none").lower()
    if translator not in TRANSLATOR_CHOICES:
        raise SettingsError(
            f"LOTSE_TRANSLATOR must be one of {', '.join(TRANSLATOR_CHOICES)}, got {translator!r}"
        )
    translator_url = env.get("LOTSE_TRANSLATOR_URL") or None
    if translator == "libre":
        if not translator_url:
            raise SettingsError("LOTSE_TRANSLATOR=libre needs LOTSE_TRANSLATOR_URL")
        _url("LOTSE_TRANSLATOR_URL", translator_url, ("http", "https"))
    translator_key = env.get("LOTSE_TRANSLATOR_KEY") or None
    if translator in ("deepl", "microsoft") and not translator_key:
        raise SettingsError(f"LOTSE_TRANSLATOR={translator} needs LOTSE_TRANSLATOR_KEY")
    token = env.get("TELEGRAM_TOKEN") or None
    secret = env.get("TELEGRAM_WEBHOOK_SECRET") or None
    if environment == "production" and token and (secret is None or secret.lower() in PLACEHOLDER_SECRETS):
        raise SettingsError("TELEGRAM_WEBHOOK_SECRET must be set to a real secret in production")
    default_language = env.get("LOTSE_DEFAULT_LANGUAGE", "de")
    from bot import LANGUAGES

    if default_language not in LANGUAGES:
        raise SettingsError(f"LOTSE_DEFAULT_LANGUAGE must be one of {', '.join(LANGUAGES)}")
    origins = tuple(
        o.strip().rstrip("/") for o in env.get("LOTSE_PARTNER_ORIGINS", "").split(",") if o.strip()
    )
    for origin in origins:
        _url("LOTSE_PARTNER_ORIGINS", origin, ("http", "https"))
    content_dir = Path(env.get("LOTSE_CONTENT_DIR") or ROOT / "content")
    public_url = _url(
        "LOTSE_PUBLIC_URL", env.get("LOTSE_PUBLIC_URL") or f"http://localhost:{app_port}", ("http", "https")
    ).rstrip("/")
    tracker_url = env.get("LOTSE_TRACKER_URL") or f"sqlite:///{ROOT / 'var' / 'engine-tracker.db'}"
    secret_key = env.get("LOTSE_SECRET_KEY") or ""
    if environment == "production" and (secret_key.lower() in PLACEHOLDER_SECRETS or len(secret_key) < 32):
        raise SettingsError("LOTSE_SECRET_KEY must be set to a random secret of at least 32 characters")
    redis_url = env.get("LOTSE_REDIS_URL") or None
    if redis_url:
        _url("LOTSE_REDIS_URL", redis_url, ("redis", "rediss", "unix"))
    return Settings(
        database_url=database_url,
        engine_url=engine_url,
        app_port=app_port,
        app_host=env.get("LOTSE_HOST") or "127.0.0.1",
        engine_port=engine_port,
        environment=environment,
        content_dir=content_dir,
        telegram_token=token,
        telegram_webhook_secret=secret,
        telegram_api_url=_url("LOTSE_TELEGRAM_API_URL", env["LOTSE_TELEGRAM_API_URL"], ("http", "https"))
        if env.get("LOTSE_TELEGRAM_API_URL")
        else None,
        translator=translator,
        translator_url=translator_url,
        translator_key=translator_key,
        translator_timeout=_float(env, "LOTSE_TRANSLATOR_TIMEOUT", 4.0),
        engine_timeout=_float(env, "LOTSE_ENGINE_TIMEOUT", 20.0),
        max_message_chars=_int(env, "LOTSE_MAX_MESSAGE_CHARS", 4000, low=100, high=100_000),
        default_language=default_language,
        partner_origins=origins,
        public_url=public_url,
        tracker_url=tracker_url,
        scheduler=_flag(env, "LOTSE_SCHEDULER", True),
        redis_url=redis_url,
        secret_key=secret_key or DEVELOPMENT_SECRET_KEY,
        console_idle_minutes=_int(env, "LOTSE_CONSOLE_IDLE_MINUTES", 30, low=1, high=24 * 60),
        console_max_hours=_int(env, "LOTSE_CONSOLE_MAX_HOURS", 10, low=1, high=24 * 7),
        console_telegram_chats=_chats(env.get("LOTSE_CONSOLE_TELEGRAM_CHATS", "")),
    )
