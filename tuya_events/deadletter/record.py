"""One stored dead letter, as read back: everything needed to inspect it or to replay it."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from tuya_events.delivery import Delivery


@dataclass(frozen=True)
class DeadLetterRecord:
    """A row of the store. ``body`` is the message exactly as received (still encrypted);
    ``plaintext`` is only set when the store keeps decrypted payloads; ``seen`` counts how often
    the message was dead-lettered (above 1: the broker delivered it again, its acknowledgement
    lost, and the same record was updated)."""

    id: int
    message_id: str
    topic: str
    partition: int
    publish_time_ms: int
    redelivery_count: int
    key: str | None
    properties: dict[str, str]
    body: bytes
    stage: str
    handler: str | None
    reason: str
    message: str
    attempts: int
    first_failure: float
    last_failure: float
    device_id: str | None
    plaintext: bytes | None
    seen: int = 1

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeadLetterRecord:
        """Build from a row selected with :data:`COLUMNS`, in that order."""
        values = dict(zip(COLUMNS, row, strict=True))
        values["properties"] = json.loads(values["properties"])
        values["body"] = bytes(values["body"])
        if values["plaintext"] is not None:
            values["plaintext"] = bytes(values["plaintext"])
        return cls(**values)

    def to_delivery(self) -> Delivery:
        """The message as the pipeline first saw it, marked so that a new failure updates this
        record instead of adding a second one."""
        return Delivery(
            body=self.body,
            properties=dict(self.properties),
            message_id=self.message_id,
            topic=self.topic,
            partition=self.partition,
            publish_time_ms=self.publish_time_ms,
            redelivery_count=self.redelivery_count,
            key=self.key,
            handle=None,
            dead_letter_id=self.id,
        )

    def as_dict(self, include_body: bool = False) -> dict[str, Any]:
        """JSON-ready fields. Without ``include_body`` the body and plaintext are left out (their
        size and presence are given instead); with it both are base64."""
        result: dict[str, Any] = {}
        for item in fields(self):
            if item.name not in ("body", "plaintext"):
                result[item.name] = getattr(self, item.name)
        if include_body:
            result["body"] = base64.b64encode(self.body).decode("ascii")
            result["plaintext"] = (
                None if self.plaintext is None else base64.b64encode(self.plaintext).decode("ascii")
            )
        else:
            result["body_size"] = len(self.body)
            result["has_plaintext"] = self.plaintext is not None
        return result


COLUMNS: tuple[str, ...] = tuple(item.name for item in fields(DeadLetterRecord))
