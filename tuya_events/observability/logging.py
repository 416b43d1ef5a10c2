"""structlog, configured once: JSON lines off a terminal, readable console lines on one.

Every event passes through the redactor, so a secret that slips into an exception message or a
URL is masked before it is written. The standard library's logging (pulsar-client, aiohttp) is
routed through the same processors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from tuya_events.observability.redact import REDACTOR, Redactor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _redact_value(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: _redact_value(v, redactor) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v, redactor) for v in value]
    if isinstance(value, BaseException):
        return redactor(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask registered secrets in every field."""
    if not REDACTOR:
        return event_dict
    return {key: _redact_value(value, REDACTOR) for key, value in event_dict.items()}


def use_json(log_format: str, stream: Any = None) -> bool:
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure_logging(level: str = "info", log_format: str = "auto") -> None:
    """Configure structlog and the standard library's root logger to write to stderr."""
    json_lines = use_json(log_format)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info
        if json_lines
        else structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            *shared,
            redact_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # pulsar-client logs every reconnect attempt at INFO; keep its warnings and errors.
    logging.getLogger("pulsar").setLevel(max(LEVELS[level], logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def pulsar_client_logger() -> Any:
    """The logger to give ``pulsar.Client``.

    With a Python logger the binding reports every level as enabled and takes the GIL for every
    log statement of the C++ client, debug ones included: measured, that alone cut throughput by
    2.6x (benchmarks/README.md). So the client logs through its own console logger at WARN (its
    own format, on stdout), and through ``logging``/structlog only when ``logging.level: debug``.
    """
    import pulsar

    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return logging.getLogger("pulsar")
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
