"""Tuya's high-priority notices: one warning each, and what they report as metrics.

They come on a channel of their own (:func:`tuya_events.tuya.regions.notice_topic`), protocol
10000, bizCode ``HighPriorityNotice``. The one documented ``eventType``, ``pulsar_backlog_notice``,
says the subscription's backlog passed the threshold set in Tuya's console; it repeats every 15
minutes while the backlog stays above, and nothing is sent when it falls back. ``eventData`` is a
JSON document in a string: ``dataCenter``, ``topic``, ``subscription``, ``backLogNum`` (a number
on Tuya's English page, a string on the Chinese one). Read tolerantly: other types and keys may
come, and are logged as they are.

The watcher is called before routing, for every message, so it returns at once for other kinds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.notices")

NOTICE_KIND = "notice"
BACKLOG_NOTICE = "pulsar_backlog_notice"
BACKLOG_MESSAGE = "Tuya reports the subscription's backlog is above the console's threshold"
OTHER_MESSAGE = "Tuya sent a high-priority notice"
# eventData keys Tuya documents, and the log fields they become.
DOCUMENTED_FIELDS = {
    "dataCenter": "data_center",
    "topic": "topic",
    "subscription": "subscription",
    "backLogNum": "backlog",
}
MAX_EVENT_TYPES = 16  # eventType labels; any further one is counted as "other"
MAX_TEXT = 200  # characters of one logged value: the notice is Tuya's input, not ours
REMEMBERED = 64  # notices kept in mind, so one delivered again is not reported twice


@dataclass(frozen=True, slots=True)
class Notice:
    """What a notice says; ``unparsed`` holds an ``eventData`` that was not a JSON object."""

    event_type: str | None
    event_data: dict[str, Any]
    sent_ms: int | None
    unparsed: str | None = None

    @property
    def backlog(self) -> int | None:
        """``backLogNum`` as a count, when it is one (number or digits)."""
        return _count(self.event_data.get("backLogNum"))


def read_notice(event: Event) -> Notice:
    """The notice in ``event`` (a :class:`~tuya_events.tuya.events.NoticeEvent`, read by name:
    any event of kind ``notice`` will do). An ``eventData`` the event could not parse is kept,
    shortened, as ``unparsed``."""
    event_type = getattr(event, "event_type", None)
    data = getattr(event, "event_data", None)
    unparsed = None
    if not isinstance(data, dict):
        raw = _raw_event_data(event.document)
        unparsed = None if raw is None else _text(raw)
        data = {}
    kind = event_type if isinstance(event_type, str) and event_type else None
    return Notice(kind, data, event.timestamp_ms, unparsed)


def _raw_event_data(document: dict[str, Any]) -> Any:
    biz_data = document.get("bizData")
    if isinstance(biz_data, dict) and "eventData" in biz_data:
        return biz_data["eventData"]
    return document.get("eventData")


class NoticeWatcher:
    """Logs each notice at warning and sets ``tuya_events_notice*`` (metrics.py)."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._clock = clock
        self._labels = {BACKLOG_NOTICE}
        self._remembered: deque[tuple[Any, ...]] = deque(maxlen=REMEMBERED)
        self._newest_sent = 0.0
        self._newest_backlog_sent = 0.0

    def observe(self, event: Event) -> None:
        """For events of kind ``notice``; any other event returns at once."""
        if event.kind != NOTICE_KIND:
            return
        notice = read_notice(event)
        identity = _identity(event, notice)
        if identity is not None:
            if identity in self._remembered:
                return
            self._remembered.append(identity)
        metrics = self._metrics
        metrics.notices.labels(self._label(notice.event_type)).inc()
        sent = notice.sent_ms / 1000 if notice.sent_ms else self._clock()
        if sent >= self._newest_sent:
            self._newest_sent = sent
            metrics.notice_last_timestamp.set(sent)
        backlog = notice.backlog
        is_backlog = notice.event_type == BACKLOG_NOTICE
        if is_backlog and backlog is not None and sent >= self._newest_backlog_sent:
            self._newest_backlog_sent = sent
            metrics.notice_backlog.set(backlog)
        log.warning(
            BACKLOG_MESSAGE if is_backlog else OTHER_MESSAGE,
            event_type=None if notice.event_type is None else _text(notice.event_type),
            sent_at_ms=notice.sent_ms,
            **_fields(notice),
        )

    def _label(self, event_type: str | None) -> str:
        """Bounded: a label per eventType up to :data:`MAX_EVENT_TYPES`, then ``other``."""
        if event_type is None:
            return "unknown"
        label = event_type[:64]
        if label in self._labels:
            return label
        if len(self._labels) >= MAX_EVENT_TYPES:
            return "other"
        self._labels.add(label)
        return label


def _identity(event: Event, notice: Notice) -> tuple[Any, ...] | None:
    """Names one notice across deliveries; None when nothing does (no dataId, no ts)."""
    if event.data_id:
        return ("data", event.data_id)
    if notice.sent_ms is None:
        return None
    # The same delivery decodes to the same dict, keys in the same order: its repr names it.
    return (notice.sent_ms, notice.event_type, repr(notice.event_data), notice.unparsed)


def _fields(notice: Notice) -> dict[str, Any]:
    """The log fields: the documented keys by name, any others under ``event_data``."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in notice.event_data.items():
        name = DOCUMENTED_FIELDS.get(key)
        if name is None:
            if len(extra) < 20:
                extra[_text(key)] = _loggable(value)
        else:
            fields[name] = _loggable(value)
    if extra:
        fields["event_data"] = extra
    if notice.unparsed is not None:
        fields["event_data_unparsed"] = notice.unparsed
    return fields


def _loggable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode(errors="replace")
    else:
        try:
            text = orjson.dumps(value, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):  # an integer past 64 bits, say
            text = repr(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 18:
        return int(value.strip())
    return None
