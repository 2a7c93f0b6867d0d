"""One exception hierarchy for the app; library errors are converted at the adapter boundary."""

__all__ = [
    "ContentError",
    "EngineUnavailable",
    "InputRejected",
    "LotseError",
    "SettingsError",
    "StorageUnavailable",
    "TranslationUnavailable",
]


class LotseError(Exception):
    """Root of every error the app raises on purpose."""


class SettingsError(LotseError):
    """A setting has a wrong value; the message names the variable."""


class ContentError(LotseError):
    """The content tree is invalid; the message names the file and key."""


class EngineUnavailable(LotseError):
    """The Rasa engine cannot be reached or answered with an error."""


class StorageUnavailable(LotseError):
    """The database cannot be reached."""


class TranslationUnavailable(LotseError):
    """The translation provider failed or did not answer in time."""


class InputRejected(LotseError):
    """A request is malformed; ``reason`` is a short English explanation for API clients."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
