"""The daemon's real logging, captured: what an operator would read, as JSON lines."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import structlog

from tuya_events.observability.logging import configure_logging


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The daemon's real logging (JSON lines, redaction) into a buffer; restored afterwards.

    The ``captured_logs`` fixture (tests/support/fixtures.py) is this for one test.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("debug", "json")
    structlog.configure(cache_logger_on_first_use=False)  # nothing bound past this test
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    try:
        yield buffer
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Run a command in this process that configures logging itself (``main([...])``), and
    leave logging as it was: its level and structlog's loggers would otherwise stay bound to
    that command's configuration for the rest of the session."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
