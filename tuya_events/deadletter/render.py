"""Records as a person reads them: aligned columns, local times, no terminal control characters.

Messages come from handlers (an HTTP error body, a database error), so they are escaped before
they reach a terminal.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import datetime

from tuya_events.deadletter.record import DeadLetterRecord

HEADERS = ("ID", "LAST FAILURE", "STAGE", "HANDLER", "REASON", "ATTEMPTS", "DEVICE", "MESSAGE")
_RIGHT_ALIGNED = frozenset({0, 5})
EXCERPT_WIDTH = 60
_MISSING = "-"


def local_time(epoch: float) -> str:
    """Epoch seconds -> local ISO 8601 with its offset, to the second."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def printable(text: str, keep_newlines: bool = False) -> str:
    """Escape control characters so stored text cannot move the cursor or recolour a terminal."""
    out = []
    for char in text:
        if char.isprintable() or (keep_newlines and char in "\n\t"):
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}")
    return "".join(out)


def excerpt(text: str, width: int = EXCERPT_WIDTH) -> str:
    """The message on one line, cut to ``width`` characters."""
    line = printable(" ".join(text.split()))
    return line if len(line) <= width else line[: width - 1] + "…"


def table_row(record: DeadLetterRecord) -> tuple[str, ...]:
    return (
        str(record.id),
        local_time(record.last_failure),
        printable(record.stage),
        printable(record.handler or _MISSING),
        printable(record.reason),
        str(record.attempts),
        printable(record.device_id or _MISSING),
        excerpt(record.message),
    )


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str] = HEADERS) -> list[str]:
    """Aligned lines, header first; numbers right-aligned; no trailing spaces."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [
            cell.rjust(width) if index in _RIGHT_ALIGNED else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _field_lines(record: DeadLetterRecord) -> Iterable[tuple[str, str]]:
    publish = str(record.publish_time_ms)
    if record.publish_time_ms > 0:
        publish += f" ({local_time(record.publish_time_ms / 1000)})"
    yield "id", str(record.id)
    yield "message id", printable(record.message_id)
    yield "topic", printable(record.topic or _MISSING)
    yield "partition", str(record.partition)
    yield "publish time (ms)", publish
    yield "redelivery count", str(record.redelivery_count)
    yield "key", printable(record.key or _MISSING)
    yield "stage", printable(record.stage)
    yield "handler", printable(record.handler or _MISSING)
    yield "reason", printable(record.reason)
    yield "attempts", str(record.attempts)
    yield "dead-lettered", "once" if record.seen == 1 else f"{record.seen} times (delivered again)"
    yield "first failure", local_time(record.first_failure)
    yield "last failure", local_time(record.last_failure)
    yield "device", printable(record.device_id or _MISSING)


def format_detail(record: DeadLetterRecord) -> list[str]:
    """Every field of one record: the body as base64, the plaintext only when it was stored."""
    pairs = list(_field_lines(record))
    width = max(len(label) for label, _ in pairs) + 1
    lines = [f"{(label + ':').ljust(width)}  {value}" for label, value in pairs]
    lines.append("message:")
    lines.extend("  " + line for line in printable(record.message, keep_newlines=True).split("\n"))
    lines.append("properties:" if record.properties else "properties: (none)")
    for name in sorted(record.properties):
        lines.append(f"  {printable(name)} = {printable(str(record.properties[name]))}")
    lines.append(f"body ({len(record.body)} bytes, base64, as received):")
    lines.append("  " + base64.b64encode(record.body).decode("ascii"))
    if record.plaintext is not None:
        text = record.plaintext.decode("utf-8", errors="replace")
        lines.append(f"plaintext ({len(record.plaintext)} bytes):")
        lines.extend("  " + line for line in printable(text, keep_newlines=True).split("\n"))
    return lines
