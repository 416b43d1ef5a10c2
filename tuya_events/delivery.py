"""What the pipeline knows about a message, independent of the transport that brought it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Delivery:
    """One received message as it came off the wire: still encrypted, with its metadata.

    ``handle`` is the transport's own object, needed to acknowledge (a ``pulsar.Message``);
    ``dead_letter_id`` is set when the message is being replayed from the dead-letter store;
    ``finished`` is set by a transport that acknowledges finished messages later, in order.
    """

    body: bytes
    properties: dict[str, str]
    message_id: str
    topic: str = ""
    partition: int = -1
    publish_time_ms: int = 0
    redelivery_count: int = 0
    key: str | None = None
    handle: Any = field(default=None, repr=False)
    dead_letter_id: int | None = None
    finished: bool = False


@dataclass(slots=True)
class Failure:
    """Why a message could not be handled: recorded with it in the dead-letter store.

    ``stage`` is ``decode``, ``handler`` or ``pipeline`` (an internal error); ``reason`` is a
    stable code (a codec reason such as ``bad_padding``, a handler's such as ``http_400``,
    ``timeout``, ``handler_error``, or ``internal_error``);
    ``detail`` says what happened, for a person (the record's ``message``); it never contains a
    secret.
    """

    stage: str
    reason: str
    detail: str
    handler: str | None = None
    attempts: int = 1
    first_failure: float = field(default_factory=time.time)
    last_failure: float = field(default_factory=time.time)
