"""Test helpers: servers on loopback, free ports, the engine process."""
