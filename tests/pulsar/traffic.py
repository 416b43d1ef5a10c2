"""Tuya-shaped test traffic with per-device sequence numbers, and the ledger that checks delivery.

Every status report carries its device's sequence number as the value of data point ``seq``, so a
consumer can prove, message by message, that nothing was lost, duplicated or reordered per device.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuya_events.tuya.codec import EM_ECB, EM_GCM

SEQ_CODE = "seq"
PRODUCT_KEY = "testproductkey01"


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: the plaintext document, its encryption mode and its place."""

    document: dict[str, Any]
    em: str
    device_id: str
    seq: int


def device_ids(count: int) -> list[str]:
    """Stable, Tuya-like 20-character device ids (stable, so partition spread is reproducible)."""
    return [f"vdev{index:016d}" for index in range(count)]


def status_report(device_id: str, seq: int) -> dict[str, Any]:
    """A protocol-4 status report whose single data point is the sequence number."""
    now_ms = int(time.time() * 1000)
    return {
        "dataId": uuid.uuid4().hex,
        "devId": device_id,
        "productKey": PRODUCT_KEY,
        "status": [{"code": SEQ_CODE, "value": seq, "t": now_ms, "1": str(seq)}],
    }


def interleaved_stream(
    messages: int = 1000,
    devices: int = 50,
    modes: Sequence[str] = (EM_ECB, EM_GCM),
    seed: int = 3,
) -> list[Outgoing]:
    """``messages`` reports from ``devices`` devices in random order, modes alternating."""
    rng = random.Random(seed)
    ids = device_ids(devices)
    next_seq: Counter[str] = Counter()
    stream = []
    for index in range(messages):
        device = rng.choice(ids)
        seq = next_seq[device]
        next_seq[device] += 1
        stream.append(Outgoing(status_report(device, seq), modes[index % len(modes)], device, seq))
    return stream


def sequence_of(document: dict[str, Any]) -> tuple[str, int]:
    """(device id, sequence number) of a report built by :func:`status_report`."""
    (item,) = (item for item in document["status"] if item.get("code") == SEQ_CODE)
    return document["devId"], int(item["value"])


@dataclass
class DeliveryReport:
    expected: int
    received: int
    lost: int
    duplicated: int
    out_of_order: int
    partitions: set[str] = field(default_factory=set)

    @property
    def perfect(self) -> bool:
        return (self.received, self.lost, self.duplicated, self.out_of_order) == (
            self.expected,
            0,
            0,
            0,
        )


class DeliveryLedger:
    """Records what a consumer received and compares it with what was published."""

    def __init__(self, published: Iterable[Outgoing]) -> None:
        self._expected = {(item.device_id, item.seq) for item in published}
        self._seen: Counter[tuple[str, int]] = Counter()
        self._last_seq: dict[str, int] = defaultdict(lambda: -1)
        self._out_of_order = 0
        self._partitions: set[str] = set()

    def record(self, device_id: str, seq: int, partition: str | None = None) -> None:
        key = (device_id, seq)
        self._seen[key] += 1
        if self._seen[key] == 1:
            if seq < self._last_seq[device_id]:
                self._out_of_order += 1
            self._last_seq[device_id] = max(seq, self._last_seq[device_id])
        if partition is not None:
            self._partitions.add(partition)

    @property
    def complete(self) -> bool:
        """Every published message has arrived at least once."""
        return self._expected <= self._seen.keys()

    def report(self) -> DeliveryReport:
        return DeliveryReport(
            expected=len(self._expected),
            received=sum(self._seen.values()),
            lost=len(self._expected - self._seen.keys()),
            duplicated=sum(count - 1 for count in self._seen.values()),
            out_of_order=self._out_of_order,
            partitions=set(self._partitions),
        )
