"""The adviser console at ``/console``: sign-in, live queue, conversations, figures, appointments."""

from bot.console.web import build_console

__all__ = ["build_console"]
