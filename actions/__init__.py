"""The engine's custom actions. Thin: they decide which content key answers, the app renders it."""
