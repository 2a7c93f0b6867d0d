"""Lotse: the app half of the multilingual counselling assistant (channels, router, storage)."""

LANGUAGES: tuple[str, ...] = ("de", "en", "ar", "uk", "ru", "tr", "fa", "fr")
"""The supported client languages (ISO 639-1); German is the reference language."""

RTL_LANGUAGES: frozenset[str] = frozenset({"ar", "fa"})
"""Languages shown right-to-left."""
