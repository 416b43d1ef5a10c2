"""Handlers: what happens to an event. Built-ins by ``type:`` name, others by entry point."""
