"""Resync: after a gap longer than Tuya keeps messages, the devices' current state from the
OpenAPI, as events through the same pipeline. ``record`` remembers when we last consumed."""
