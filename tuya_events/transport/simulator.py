"""Virtual Tuya devices: status reports and online/offline events, encrypted exactly as Tuya does.

Half the devices' messages go out as AES-ECB, half as AES-GCM (the ``em`` property), the way a
project looks while its owner switches modes in the console. Now and then a damaged message is
sent too, so the demo shows what happens to bad input: a dead letter, a log line, a metric.

Every device also has what the cloud knows of it -- a name, a product, a Tuya category and the
data-point specification Tuya's OpenAPI returns -- so the demo's fake cloud
(:mod:`tuya_events.cli.demo_cloud`) can serve them. The values sent follow that specification:
Integer data points are raw whole numbers with a ``scale`` (235 with scale 1 is 23.5 ℃).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from tuya_events.transport.memory import MemorySource
from tuya_events.tuya.codec import EM_ECB, EM_GCM, TuyaEncoder

PARTITIONS = 11
Publish = Callable[[bytes, dict[str, str], int, str], Any]
Report = Callable[[random.Random, "VirtualDevice"], dict[str, Any]]

# Battery-powered devices lose a percent every this many reports, and get a fresh battery at
# LOW_BATTERY: the level moves slowly, as a real one does, without drawing on the random stream
# (a seed gives the same run as before batteries existed).
REPORTS_PER_PERCENT = 5
LOW_BATTERY = 10


def _point(code: str, dp_id: int, type_: str, values: dict[str, Any]) -> dict[str, Any]:
    """One specification entry as Tuya sends it: ``values`` is a JSON document in a string."""
    return {
        "code": code,
        "dp_id": dp_id,
        "type": type_,
        "values": orjson.dumps(values).decode(),
    }


def _integer(
    code: str, dp_id: int, unit: str, low: int, high: int, scale: int = 0
) -> dict[str, Any]:
    values = {"unit": unit, "min": low, "max": high, "scale": scale, "step": 1}
    return _point(code, dp_id, "Integer", values)


def _boolean(code: str, dp_id: int) -> dict[str, Any]:
    return _point(code, dp_id, "Boolean", {})


def _enum(code: str, dp_id: int, *choices: str) -> dict[str, Any]:
    return _point(code, dp_id, "Enum", {"range": list(choices)})


@dataclass(frozen=True)
class Product:
    """A kind of device: what the cloud says about it, and how its reports are made."""

    kind: str
    product_id: str  # the ``productKey`` of its messages
    product_name: str
    category: str
    model: str
    noun: str  # the last word of its devices' names
    places: tuple[str, ...]  # the first words
    functions: tuple[dict[str, Any], ...]
    status: tuple[dict[str, Any], ...]
    initial: dict[str, Any]
    report: Report
    # The battery's status items for a level, for battery-powered products.
    battery_status: Callable[[int], dict[str, Any]] | None = None

    def specification(self) -> dict[str, Any]:
        """``GET .../devices/{id}/specification`` as Tuya answers it."""
        return {
            "category": self.category,
            "functions": [dict(entry) for entry in self.functions],
            "status": [dict(entry) for entry in self.status],
        }


def _battery_state(level: int) -> str:
    return "high" if level > 60 else "middle" if level > 25 else "low"


def _plug_report(rng: random.Random, device: VirtualDevice) -> dict[str, Any]:
    switched = device.state.get("switch_1", False)
    return {
        "switch_1": not switched if rng.random() < 0.3 else switched,
        "cur_power": rng.randint(0, 2300),  # 0.0 to 230.0 W
    }


def _sensor_report(rng: random.Random, device: VirtualDevice) -> dict[str, Any]:
    return {
        "va_temperature": rng.randint(180, 260),  # 18.0 to 26.0 ℃
        "va_humidity": rng.randint(30, 70),
        "battery_state": _battery_state(device.drain_battery()),
    }


def _door_report(rng: random.Random, device: VirtualDevice) -> dict[str, Any]:
    return {
        "doorcontact_state": rng.random() < 0.5,
        "battery_percentage": device.drain_battery(),
    }


_ROOMS = ("Kitchen", "Living room", "Bedroom", "Bathroom", "Office", "Nursery", "Cellar", "Attic")
_SWITCH = _boolean("switch_1", 1)
_RELAY_STATUS = _enum("relay_status", 38, "power_off", "power_on", "last")

PRODUCTS: dict[str, Product] = {
    product.kind: product
    for product in (
        Product(
            kind="plug",
            product_id="keyd3mopl8ugcz01",
            product_name="Smart plug 16A",
            category="cz",
            model="DP-16A",
            noun="plug",
            places=("Desk", "Kettle", "Lamp", "TV", "Heater", "Fan", "Router", "Printer"),
            functions=(_SWITCH, _RELAY_STATUS),
            status=(_SWITCH, _integer("cur_power", 19, "W", 0, 50000, scale=1), _RELAY_STATUS),
            initial={"switch_1": False, "cur_power": 0, "relay_status": "last"},
            report=_plug_report,
        ),
        Product(
            kind="sensor",
            product_id="keyd3mosn5wsdcg2",
            product_name="Temperature and humidity sensor",
            category="wsdcg",
            model="DT-TH1",
            noun="sensor",
            places=_ROOMS,
            functions=(),
            status=(
                _integer("va_temperature", 1, "℃", -200, 600, scale=1),
                _integer("va_humidity", 2, "%", 0, 100),
                _enum("battery_state", 3, "low", "middle", "high"),
            ),
            initial={"va_temperature": 215, "va_humidity": 45, "battery_state": "high"},
            report=_sensor_report,
            battery_status=lambda level: {"battery_state": _battery_state(level)},
        ),
        Product(
            kind="door",
            product_id="keyd3modr7mcs003",
            product_name="Door and window sensor",
            category="mcs",
            model="DT-DW2",
            noun="door",
            places=("Hall", "Back", "Garage", "Patio", "Front", "Shed", "Balcony", "Cellar"),
            functions=(),
            status=(
                _boolean("doorcontact_state", 1),
                _integer("battery_percentage", 2, "%", 0, 100),
            ),
            initial={"doorcontact_state": False, "battery_percentage": 100},
            report=_door_report,
            battery_status=lambda level: {"battery_percentage": level},
        ),
    )
}
KINDS = tuple(PRODUCTS)


@dataclass
class VirtualDevice:
    device_id: str
    kind: str
    em: str
    name: str = ""
    index: int = 0  # its place in the simulator's list (for stable made-up details)
    state: dict[str, Any] = field(default_factory=dict)  # what the cloud's status shows
    online: bool = True
    battery: int = 100
    reports: int = 0

    def __post_init__(self) -> None:
        product = self.product
        self.state = {**product.initial, **self.state}
        if product.battery_status is not None:
            self.battery = 100 - (self.index * 17) % 60
            self.state.update(product.battery_status(self.battery))

    @property
    def product(self) -> Product:
        return PRODUCTS[self.kind]

    @property
    def product_key(self) -> str:
        """Tuya's messages call the product id ``productKey``."""
        return self.product.product_id

    @property
    def partition(self) -> int:
        """Tuya hashes the device id to a partition, which keeps one device's order."""
        return zlib.crc32(self.device_id.encode()) % PARTITIONS

    def drain_battery(self) -> int:
        """The battery level for this report: a percent lower every few reports."""
        self.reports += 1
        if self.reports % REPORTS_PER_PERCENT == 0:
            self.battery = 100 if self.battery <= LOW_BATTERY else self.battery - 1
        return self.battery


def device_name(kind: str, ordinal: int) -> str:
    """``Kitchen sensor``, ``Hall door``, ...: unique per kind and ordinal (a number is added
    once the places run out)."""
    product = PRODUCTS[kind]
    place = product.places[ordinal % len(product.places)]
    round_ = ordinal // len(product.places)
    return f"{place} {product.noun}" + (f" {round_ + 1}" if round_ else "")


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
        self.devices = [
            VirtualDevice(
                device_id=_device_id(self.rng),
                kind=KINDS[i % len(KINDS)],
                em=EM_ECB if i % 2 == 0 else EM_GCM,
                name=device_name(KINDS[i % len(KINDS)], i // len(KINDS)),
                index=i,
            )
            for i in range(devices)
        ]
        self._by_id = {device.device_id: device for device in self.devices}

    def device(self, device_id: str) -> VirtualDevice | None:
        return self._by_id.get(device_id)

    def _status_report(
        self, device: VirtualDevice, now_ms: int, values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if values is None:
            values = device.product.report(self.rng, device)
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

    def _send(
        self, device: VirtualDevice, document: dict[str, Any], protocol: int, now_ms: int
    ) -> None:
        body, properties = self.encoder.encode(
            document, em=device.em, protocol=protocol, t_ms=now_ms
        )
        self.publish(body, properties, device.partition, device.device_id)

    def step(self) -> None:
        """Send one message from a random device (sometimes a damaged one)."""
        device = self.rng.choice(self.devices)
        now_ms = int(time.time() * 1000)
        self.sent += 1
        if self.poison_every and self.sent % self.poison_every == 0:
            self.publish(*self._damaged(device), device.partition, device.device_id)
            return
        if self.rng.random() < 0.1:
            self._send(device, self._online_event(device, now_ms), 20, now_ms)
        else:
            self._send(device, self._status_report(device, now_ms), 4, now_ms)

    def apply(self, device: VirtualDevice, values: dict[str, Any]) -> None:
        """A command reached ``device``: it takes the values and reports them, as a real one
        does (so a command sent through the cloud comes back as an event)."""
        now_ms = int(time.time() * 1000)
        self.sent += 1
        self._send(device, self._status_report(device, now_ms, dict(values)), 4, now_ms)

    async def run(self, rate: float, stop: asyncio.Event) -> None:
        """Send about ``rate`` messages per second until ``stop`` is set."""
        interval = 1.0 / rate
        while not stop.is_set():
            self.step()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval * self.rng.uniform(0.5, 1.5))


class Service(Protocol):
    """Something that lives as long as the source, in its event loop (the demo's cloud)."""

    async def start(self) -> object: ...

    async def close(self) -> None: ...


class SimulatedSource(MemorySource):
    """An in-memory source fed by a :class:`TuyaSimulator` while the daemon consumes.

    ``services`` are started (in order) before the simulator sends anything and closed (in
    reverse) after it stopped: they run in the daemon's loop, next to the devices they serve.
    """

    def __init__(
        self,
        encoder: TuyaEncoder,
        rate: float,
        devices: int = 6,
        seed: int | None = None,
        services: Sequence[Service] = (),
    ) -> None:
        super().__init__()
        self.rate = rate
        self.simulator = TuyaSimulator(encoder, self._publish, devices=devices, seed=seed)
        self.services = list(services)
        self._started: list[Service] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _publish(self, body: bytes, properties: dict[str, str], partition: int, key: str) -> None:
        self.publish(body, properties, partition=partition, key=key)

    async def start(self) -> None:
        for service in self.services:
            await service.start()
            self._started.append(service)
        self._task = asyncio.get_running_loop().create_task(
            self.simulator.run(self.rate, self._stop)
        )

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        while self._started:
            await self._started.pop().close()
        await super().close()
