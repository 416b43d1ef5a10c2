"""A real Mosquitto broker (Debian's package, see scripts/ensure-mosquitto.sh) for the tests.

Each :class:`MosquittoBroker` is a process of its own on a free loopback port, with its own
configuration file, password file, certificates and log under the test's directory; it is
stopped by its pid, never as a system service. ``restart()`` keeps the port, so a client can
come back to the same address. With ``tls`` the listener speaks TLS with a certificate of
tests/support/pki.py (and, with ``client_ca``, asks clients for a certificate that CA signed).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmqtt

from tests.support.pki import Pki
from tests.support.ports import LOOPBACK, free_port

SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


def find_binary(name: str) -> str | None:
    """PATH first, then where Debian puts it (as scripts/ensure-mosquitto.sh looks)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SEARCH:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def mosquitto_available() -> bool:
    return find_binary("mosquitto") is not None and find_binary("mosquitto_passwd") is not None


@dataclass
class MosquittoBroker:
    directory: Path
    port: int = 0
    users: dict[str, str] | None = None  # name -> password; None: anonymous allowed
    tls: Pki | None = None
    client_ca: Path | None = None  # ask clients for a certificate signed by this CA
    persistence: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port()
        self.config = self.directory / "mosquitto.conf"
        self.log = self.directory / "mosquitto.log"

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def _write_config(self) -> None:
        lines = [
            f"user {getpass.getuser()}",  # as root, do not switch to the mosquitto user
            f"listener {self.port} {LOOPBACK}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
        ]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            password_file = self.directory / "passwords"
            password_file.write_text("")
            tool = find_binary("mosquitto_passwd")
            assert tool is not None, "mosquitto_passwd not found: run scripts/ensure-mosquitto.sh"
            for user, password in self.users.items():
                subprocess.run(
                    [tool, "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        if self.tls is not None:
            lines += [f"certfile {self.tls.cert}", f"keyfile {self.tls.key}"]
            if self.client_ca is not None:
                lines += [f"cafile {self.client_ca}", "require_certificate true"]
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoBroker:
        binary = find_binary("mosquitto")
        assert binary is not None, "mosquitto not found: run scripts/ensure-mosquitto.sh"
        self._write_config()
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {error}\n{self.log_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}\n{self.log_text()}")

    def stop(self) -> None:
        """SIGTERM to its pid (SIGKILL after 5 s); waits until it is gone."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@contextlib.contextmanager
def running_mosquitto(directory: Path, **options: object) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(directory, **options).start()  # type: ignore[arg-type]
    try:
        yield broker
    finally:
        broker.stop()


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool


BARRIER = "test-barrier"  # the watcher's own topic for caught_up(), never recorded


class Watcher:
    """A real MQTT client (zmqtt, another connection than the bridge's) that records every
    message on ``filters``, in arrival order, and can publish: Home Assistant's side, say."""

    def __init__(
        self,
        broker: MosquittoBroker,
        filters: tuple[str, ...] = ("#",),
        username: str | None = None,
        password: str | None = None,
        tls: Any = False,
        persistent: str | None = None,
    ) -> None:
        """``persistent``: a client id whose session (and the QoS 1 messages queued for it)
        the broker keeps while the connection is down; the watcher reconnects by itself."""
        self.persistent = persistent
        self.broker = broker
        self.filters = filters
        self.username = username
        self.password = password
        self.tls = tls
        self.seen: list[Seen] = []
        self._client: Any = None
        self._reader: asyncio.Future[None] | None = None
        self._barriers: set[bytes] = set()

    async def __aenter__(self) -> Watcher:
        persistent = self.persistent is not None
        reconnect = zmqtt.ReconnectConfig(
            enabled=persistent, initial_delay=0.1, max_delay=0.5, max_attempts=None
        )
        client = zmqtt.create_client(
            LOOPBACK,
            self.broker.port,
            client_id=self.persistent or f"watcher-{os.getpid()}-{id(self)}",
            clean_session=not persistent,
            session_expiry_interval=3600 if persistent else 0,
            username=self.username,
            password=self.password,
            tls=self.tls,
            reconnect=reconnect,
            version="5.0",
        )
        await client.connect()
        subscription = client.subscribe(
            *self.filters, f"{BARRIER}/{id(self)}", qos=zmqtt.QoS.AT_LEAST_ONCE
        )
        await subscription.start()
        self._client = client

        async def read() -> None:
            async for message in subscription:
                if message.topic.startswith(BARRIER + "/"):
                    self._barriers.add(bytes(message.payload))
                    continue
                self.seen.append(Seen(message.topic, bytes(message.payload), message.retain))

        self._reader = asyncio.ensure_future(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._client.disconnect()

    async def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        await self._client.publish(topic, payload, qos=zmqtt.QoS.AT_LEAST_ONCE, retain=retain)

    async def caught_up(self, timeout: float = 10.0) -> None:
        """Until this watcher has been delivered everything the broker took before now: the
        bridge's PUBACK says the broker has a message, not that a subscriber got it yet. A
        message of the watcher's own, sent now, is queued behind them (Mosquitto keeps each
        subscriber's queue in order)."""
        token = os.urandom(8).hex().encode()
        await self.publish(f"{BARRIER}/{id(self)}", token)
        deadline = asyncio.get_running_loop().time() + timeout
        while token not in self._barriers:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the watcher's own barrier message never came back")
            await asyncio.sleep(0.01)

    def on(self, topic: str) -> list[bytes]:
        return [seen.payload for seen in self.seen if seen.topic == topic]

    def last(self, topic: str) -> bytes | None:
        payloads = self.on(topic)
        return payloads[-1] if payloads else None

    def topics(self, prefix: str = "") -> list[str]:
        return list(dict.fromkeys(s.topic for s in self.seen if s.topic.startswith(prefix)))


# -- the bridge under test: the daemon on a memory source, one mqtt handler, the fake cloud ----

SENSOR = "bfsensor0000000000001"
SOCKET = "bfsocket0000000000002"
LIGHT = "bflight00000000000003"
DOOR = "bfdoor000000000000004"
MOTION = "bfmotion0000000000005"
CURTAIN = "bfcurtain000000000006"
THERMOSTAT = "bfthermo0000000000007"


def add_devices(cloud: Any) -> None:
    """The common categories, with the specifications Tuya gives them (``data_point`` entries:
    ``values`` as JSON in a string)."""
    from tests.fake_tuya_openapi import data_point as dp

    temperature = dp("va_temperature", "Integer", 1, unit="℃", min=-200, max=600, scale=1, step=1)
    humidity = dp("va_humidity", "Integer", 2, unit="%", min=0, max=100, scale=0, step=1)
    battery = dp("battery_state", "Enum", 3, range=["low", "middle", "high"])
    cloud.add_device(
        SENSOR, product_id="pk_sensor", name="Cellar", category="wsdcg",
        product_name="T&H Sensor",
        status_spec=[temperature, humidity, battery],
    )  # fmt: skip
    switch = dp("switch_1", "Boolean", 1)
    cloud.add_device(
        SOCKET, product_id="pk_socket", name="Kettle plug", category="cz",
        product_name="Smart plug",
        status_spec=[
            switch,
            dp("cur_power", "Integer", 19, unit="W", min=0, max=50000, scale=1, step=1),
            dp("cur_voltage", "Integer", 20, unit="V", min=0, max=5000, scale=1, step=1),
            dp("cur_current", "Integer", 18, unit="mA", min=0, max=30000, scale=0, step=1),
        ],
        functions=[switch],
    )  # fmt: skip
    light = [
        dp("switch_led", "Boolean", 20),
        dp("bright_value_v2", "Integer", 22, min=10, max=1000, scale=0, step=1),
        dp("temp_value_v2", "Integer", 23, min=0, max=1000, scale=0, step=1),
        dp("colour_data_v2", "Json", 24),
    ]
    cloud.add_device(
        LIGHT, product_id="pk_light", name="Desk lamp", category="dj",
        product_name="Bulb",
        status_spec=light, functions=light,
    )  # fmt: skip
    cloud.add_device(
        DOOR, product_id="pk_door", name="Front door", category="mcs",
        product_name="Contact sensor",
        status_spec=[
            dp("doorcontact_state", "Boolean", 1),
            dp("battery_percentage", "Integer", 2, unit="%", min=0, max=100, scale=0, step=1),
        ],
    )  # fmt: skip
    cloud.add_device(
        MOTION, product_id="pk_motion", name="Hall PIR", category="pir",
        product_name="Motion sensor",
        status_spec=[dp("pir", "Enum", 1, range=["pir", "none"])],
    )  # fmt: skip
    curtain = [
        dp("control", "Enum", 1, range=["open", "stop", "close"]),
        dp("percent_control", "Integer", 2, unit="%", min=0, max=100, scale=0, step=1),
    ]
    cloud.add_device(
        CURTAIN, product_id="pk_curtain", name="Bedroom curtain", category="cl",
        product_name="Curtain motor",
        status_spec=[*curtain, dp("percent_state", "Integer", 3, min=0, max=100, scale=0, step=1)],
        functions=curtain,
    )  # fmt: skip
    thermostat = [
        dp("switch", "Boolean", 1),
        dp("temp_set", "Integer", 2, unit="℃", min=50, max=350, scale=1, step=5),
    ]
    cloud.add_device(
        THERMOSTAT, product_id="pk_thermostat", name="Living room", category="wk",
        product_name="Thermostat",
        status_spec=[
            *thermostat,
            dp("temp_current", "Integer", 3, unit="℃", min=-100, max=500, scale=1, step=1),
        ],
        functions=thermostat,
    )  # fmt: skip


def bridge_settings(
    tmp_path: Path, broker: MosquittoBroker, cloud: Any, state_dir: Path | None = None,
    **options: Any,
) -> Any:  # fmt: skip
    """One mqtt handler on ``broker``; enrichment on against ``cloud`` (the fake OpenAPI)."""
    from tests.support.settings import make_settings

    handler = {"type": "mqtt", "url": broker.url, "connect_timeout": "5s", **options}
    return make_settings(
        tmp_path,
        [handler],
        tuya={"openapi_url": cloud.url},
        enrichment={"enabled": True, "max_wait": "5s"},
        catalogue={"sync_on_start": False},
        openapi={"initial_backoff": "10ms", "max_backoff": "20ms", "max_attempts": 2},
        resync={"enabled": False},
        state={"directory": str(state_dir or tmp_path / "state")},
        retry={"initial_backoff": "20ms", "max_backoff": "200ms", "max_attempts": 3},
        # A test that stops during an outage leaves its messages unacknowledged, at once.
        consumer={"shutdown_timeout": "1s"},
    )


class Bridge:
    """The daemon as ``tuya-events run`` builds it (handlers from the configuration, one
    context for them and the catalogue), on a memory source instead of Pulsar."""

    def __init__(self, settings: Any) -> None:
        from tuya_events.daemon import Daemon
        from tuya_events.deadletter.store import DeadLetterStore
        from tuya_events.handlers.base import HandlerContext
        from tuya_events.observability.metrics import Metrics
        from tuya_events.pipeline.routes import build_routes
        from tuya_events.transport.memory import MemorySource

        self.settings = settings
        metrics = Metrics()
        context = HandlerContext(settings, metrics)
        self.routes = build_routes(settings, context)
        self.handler: Any = self.routes[0].handler
        self.source = MemorySource(poll_interval=0.02)
        self.store = DeadLetterStore(settings.dead_letter.path, False).open()
        self.daemon = Daemon(
            settings, self.source, self.routes, self.store, metrics, context=context
        )
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Bridge:
        from tests.support.waiting import wait_until

        self.task = asyncio.get_running_loop().create_task(self.daemon.run())
        await wait_until(lambda: self.daemon.health.started or self.task.done())  # type: ignore[union-attr]
        if self.task.done():
            self.task.result()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.daemon.request_stop()
            await self.task
        self.store.close()

    def report(self, device: str, t_ms: int, data_id: str | None = None, **values: Any) -> None:
        """A status report (protocol 4), encrypted as Tuya sends it."""
        from tests.pipeline_support import ENCODER

        document = {
            "dataId": data_id or f"{device}-{t_ms}",
            "devId": device,
            "status": [{"code": code, "value": value, "t": t_ms} for code, value in values.items()],
        }
        body, properties = ENCODER.encode(document, em="aes_ecb", protocol=4)
        self.source.publish(body, properties, partition=0, key=device)

    def device_event(self, device: str, biz_code: str, t_ms: int, **biz_data: Any) -> None:
        from tests.pipeline_support import ENCODER

        document = {
            "devId": device,
            "bizCode": biz_code,
            "ts": t_ms,
            "bizData": {"devId": device, **biz_data},
        }
        body, properties = ENCODER.encode(document, em="aes_ecb", protocol=20)
        self.source.publish(body, properties, partition=0, key=device)

    def settled(self) -> bool:
        """Every published message acknowledged (or dead-lettered)."""
        return not self.source.unacknowledged and self.source.queued == 0
