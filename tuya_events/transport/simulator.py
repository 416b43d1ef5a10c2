"""Virtual Tuya devices: status reports and online/offline events, encrypted exactly as Tuya does.

Half the devices' messages go out as AES-ECB, half as AES-GCM (the ``em`` property), the way a
project looks while its owner switches modes in the console. Now and then a damaged message is
sent too, so the demo shows what happens to bad input: a dead letter, a log line, a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tuya_events.transport.memory import MemorySource
from tuya_events.tuya.codec import EM_ECB, EM_GCM, TuyaEncoder

PARTITIONS = 11
Publish = Callable[[bytes, dict[str, str], int, str], Any]


@dataclass
class VirtualDevice:
    device_id: str
    product_key: str
    kind: str
    em: str
    state: dict[str, Any] = field(default_factory=dict)
    online: bool = True

    @property
    def partition(self) -> int:
        """Tuya hashes the device id to a partition, which keeps one device's order."""
        return zlib.crc32(self.device_id.encode()) % PARTITIONS


KINDS = {
    "plug": lambda rng, state: {
        "switch_1": not state.get("switch_1", False)
        if rng.random() < 0.3
        else state.get("switch_1", False),
        "cur_power": rng.randint(0, 2300),
    },
    "sensor": lambda rng, state: {
        "va_temperature": rng.randint(180, 260),
        "va_humidity": rng.randint(30, 70),
    },
    "door": lambda rng, state: {"doorcontact_state": rng.random() < 0.5},
}


def _device_id(rng: random.Random) -> str:
    return "bf" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(20))


class TuyaSimulator:
    def __init__(
        self,
        encoder: TuyaEncoder,
        publish: Publish,
        devices: int = 6,
        seed: int | None = None,
        poison_every: int = 40,
    ) -> None:
        self.encoder = encoder
        self.publish = publish
        self.rng = random.Random(seed)
        self.poison_every = poison_every
        self.sent = 0
        kinds = list(KINDS)
        self.devices = [
            VirtualDevice(
                device_id=_device_id(self.rng),
                product_key=f"pk{kinds[i % len(kinds)]}{i:02d}",
                kind=kinds[i % len(kinds)],
                em=EM_ECB if i % 2 == 0 else EM_GCM,
            )
            for i in range(devices)
        ]

    def _status_report(self, device: VirtualDevice, now_ms: int) -> dict[str, Any]:
        values = KINDS[device.kind](self.rng, device.state)
        device.state.update(values)
        return {
            "dataId": "".join(self.rng.choice(string.hexdigits.lower()) for _ in range(32)),
            "devId": device.device_id,
            "productKey": device.product_key,
            "status": [
                {"code": code, "value": value, "t": now_ms} for code, value in values.items()
            ],
        }

    def _online_event(self, device: VirtualDevice, now_ms: int) -> dict[str, Any]:
        device.online = not device.online
        return {
            "devId": device.device_id,
            "productKey": device.product_key,
            "bizCode": "online" if device.online else "offline",
            "bizData": {"time": now_ms},
            "ts": now_ms,
        }

    def _damaged(self, device: VirtualDevice) -> tuple[bytes, dict[str, str]]:
        """A correctly signed envelope whose ciphertext does not decrypt (as on a wrong secret)."""
        body, properties = self.encoder.encode({"devId": device.device_id}, em=device.em)
        envelope = orjson.loads(body)
        envelope["data"] = "AAAA" + envelope["data"]
        envelope["sign"] = self.encoder.sign(envelope)
        return orjson.dumps(envelope), properties

    def step(self) -> None:
        """Send one message from a random device (sometimes a damaged one)."""
        device = self.rng.choice(self.devices)
        now_ms = int(time.time() * 1000)
        self.sent += 1
        if self.poison_every and self.sent % self.poison_every == 0:
            self.publish(*self._damaged(device), device.partition, device.device_id)
            return
        if self.rng.random() < 0.1:
            document, protocol = self._online_event(device, now_ms), 20
        else:
            document, protocol = self._status_report(device, now_ms), 4
        body, properties = self.encoder.encode(
            document, em=device.em, protocol=protocol, t_ms=now_ms
        )
        self.publish(body, properties, device.partition, device.device_id)

    async def run(self, rate: float, stop: asyncio.Event) -> None:
        """Send about ``rate`` messages per second until ``stop`` is set."""
        interval = 1.0 / rate
        while not stop.is_set():
            self.step()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * self.rng.uniform(0.5, 1.5))


class SimulatedSource(MemorySource):
    """An in-memory source fed by a :class:`TuyaSimulator` while the daemon consumes."""

    def __init__(
        self, encoder: TuyaEncoder, rate: float, devices: int = 6, seed: int | None = None
    ) -> None:
        super().__init__()
        self.rate = rate
        self.simulator = TuyaSimulator(encoder, self._publish, devices=devices, seed=seed)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _publish(self, body: bytes, properties: dict[str, str], partition: int, key: str) -> None:
        self.publish(body, properties, partition=partition, key=key)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self.simulator.run(self.rate, self._stop)
        )

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await super().close()
