"""Channels: normalise inbound messages, send replies out (Telegram, web widget, REST)."""
