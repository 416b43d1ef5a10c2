"""structlog, configured once: JSON lines off a terminal, readable console lines on one.

Every rendered line passes through the redactor, so what the renderer adds (a traceback in
console format above all) is masked like the fields; the redactor knows each secret's escaped
forms (JSON, repr). Structured values (dicts, lists, exceptions) are masked before rendering too,
since a renderer may escape them twice (JSON of a repr). The standard library's logging
(pulsar-client, aiohttp) is routed through the same processors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict

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


def redact_secrets(logger: Any, method: str, event_dict: EventDict) -> EventDict:
    """structlog processor before the renderer: mask registered secrets in structured fields.

    Plain strings are left to :func:`redact_rendered` (one pass over the line is cheaper than
    one per field, and this runs for every event the ``log`` handler writes); ``exc_info``
    stays as it is for the renderer, its traceback is masked once rendered."""
    if not REDACTOR:
        return event_dict
    for key, value in event_dict.items():
        if key != "exc_info" and isinstance(value, (dict, list, tuple, BaseException)):
            event_dict[key] = _redact_value(value, REDACTOR)
    return event_dict


def redact_rendered(logger: Any, method: str, line: str) -> str:
    """structlog processor after the renderer: mask registered secrets in the finished line."""
    return REDACTOR(line) if REDACTOR else line


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
        # Plain tracebacks whatever is installed: rich's would show locals, cut to a length.
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        # Redaction happens in the formatter, for structlog's and the standard library's lines.
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
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
            # After the renderer a processor is given the line, not an event dict.
            redact_rendered,  # type: ignore[list-item]  # structlog types only dict processors
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_log_level(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def set_log_level(level: str) -> None:
    """The level alone (a reload): every line goes through the standard library's root
    logger, so this is all it takes, and structlog's loggers stay as they were bound."""
    logging.getLogger().setLevel(LEVELS[level])
    # pulsar-client logs every reconnect attempt at INFO; keep its warnings and errors.
    logging.getLogger("pulsar").setLevel(max(LEVELS[level], logging.WARNING))


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
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)  # as configured above
    return logger
