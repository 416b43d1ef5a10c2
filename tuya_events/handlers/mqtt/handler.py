"""``type: mqtt``: device state to an MQTT broker, Home Assistant discovery, commands back.

``handle`` returns once the broker acknowledged (PUBACK, at QoS 1) everything the event
produced and the merged state is committed to the state file, so the Tuya message is
acknowledged only then. While the broker is down every event fails as an outage (retried for
``retry.infrastructure_max_time``, never dead-lettered quickly); one device's events are
handled in order by the pipeline, and its topics are written under one lock, so a republish
after a reconnection cannot land after a newer value. Topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
from collections.abc import Awaitable
from typing import Any

import orjson

from tuya_events.config.errors import ConfigError
from tuya_events.config.settings import state_directory
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext, HandlerError
from tuya_events.handlers.mqtt.commands import (
    CommandRefused,
    WritableCodes,
    build_commands,
    outcome_of_error,
    parse_request,
)
from tuya_events.handlers.mqtt.connection import (
    Connection,
    ConnectionSettings,
    Incoming,
    Refused,
    Unavailable,
)
from tuya_events.handlers.mqtt.discovery import Config, DiscoveryBuilder
from tuya_events.handlers.mqtt.options import MqttOptions
from tuya_events.handlers.mqtt.state import DeviceState, plain_payload
from tuya_events.handlers.mqtt.store import STATE_UNAVAILABLE, StateStore
from tuya_events.handlers.mqtt.topics import (
    OFFLINE,
    ONLINE,
    Topics,
    is_level,
    publishable_code,
    publishable_device,
)
from tuya_events.handlers.payload import event_payload
from tuya_events.handlers.shared_client import SharedClient, project_client
from tuya_events.observability.logging import get_logger
from tuya_events.observability.redact import REDACTOR
from tuya_events.openapi.errors import OpenApiError
from tuya_events.tuya.devices import Device
from tuya_events.tuya.events import DeviceEvent, Event, StatusReport

log = get_logger("tuya_events.handlers.mqtt")

UNAVAILABLE = "mqtt_unavailable"
REFUSED = "mqtt_refused"
AVAILABILITY_EVENTS = {"online": ONLINE, "offline": OFFLINE}
DELETED = "deleted"
_FILE_NAME = re.compile(r"[^A-Za-z0-9_.-]")

# (topic, payload, retain)
Message = tuple[str, bytes, bool]


def _discovery_key(device: Device) -> tuple[Any, ...]:
    """What the discovery configs are made of (``online`` is not: it flips often)."""
    return (
        device.name, device.model, device.product_name, device.product_id, device.category,
        device.points,
    )  # fmt: skip


class MqttHandler(BaseHandler):
    """See the module docstring and docs/mqtt.md."""

    Options = MqttOptions
    # Waiting for the broker is the outage path, bounded by ``publish_timeout`` inside.
    timeout: float | None = None

    def __init__(self, name: str, options: MqttOptions, context: HandlerContext) -> None:
        super().__init__(name)
        self.options = options
        self._context = context
        self.topics = Topics(options.prefix, options.homeassistant.prefix)
        home = options.homeassistant
        self.discovery = (
            DiscoveryBuilder(self.topics, options.commands, home.unknown_codes)
            if home.discovery
            else None
        )
        if options.password is not None:
            REDACTOR.add([options.password.get_secret_value()])
        file_name = f"mqtt-{_FILE_NAME.sub('_', name)}.state"
        self.store = StateStore(state_directory(context.settings) / file_name)
        self.states: dict[str, DeviceState] = {}
        self._shared: SharedClient | None = project_client(context) if options.commands else None
        self._acquired = False
        self.writable = WritableCodes(options.command_family, options.specification_ttl)
        self._command_slots = asyncio.Semaphore(options.max_concurrent_commands)
        self._command_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.connection: Connection | None = None
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------

    def _connection_settings(self) -> ConnectionSettings:
        options = self.options
        tls = None
        if options.scheme == "mqtts":
            try:
                tls = options.tls.context()
            except ValueError as exc:
                raise ConfigError([(self._context.key("tls"), str(exc))]) from None
        subscriptions = [self.topics.bridge_availability]
        if self.discovery is not None:
            subscriptions.append(options.homeassistant.birth_topic)
        if options.commands:
            subscriptions += self.topics.command_filters()
        password = options.password.get_secret_value() if options.password else None
        return ConnectionSettings(
            host=options.host,
            port=options.port,
            client_id=options.client_id or _client_id(self.name),
            protocol=options.protocol,
            keepalive=int(options.keepalive),
            username=options.username,
            password=password,
            tls=tls,
            qos=options.qos,
            will_topic=self.topics.bridge_availability,
            will_payload=OFFLINE.encode(),
            connect_timeout=options.connect_timeout,
            publish_timeout=options.publish_timeout,
            reconnect_max_wait=options.reconnect_max_wait,
            subscriptions=tuple(subscriptions),
        )

    async def start(self) -> None:
        """Read the state file, then connect; a broker that is down is no reason not to start
        (events then wait as in any outage). A state file that cannot be opened, or TLS files
        that cannot be used, are setup errors naming the key to fix."""
        settings = self._connection_settings()
        self._warn_if_weak()
        try:
            self.states = self.store.open()
        except Exception as exc:
            raise ConfigError(
                [("state.directory", f"cannot use {self.store.path} for the bridge's state: {exc}")]
            ) from None
        if self._shared is not None:
            await self._shared.acquire(self._context.settings, self._context.metrics)
            self._acquired = True
        self.connection = Connection(settings, self._announce, self._incoming, self.name)
        self.connection.start()
        if not await self.connection.wait_connected(self.options.connect_timeout):
            log.warning(
                "mqtt broker unavailable at start; events wait unacknowledged until it is back",
                handler=self.name,
                broker=f"{settings.host}:{settings.port}",
                error=self.connection.last_error,
            )
        log.info(
            "mqtt handler ready",
            handler=self.name,
            prefix=self.options.prefix,
            devices=len(self.states),
            discovery=self.discovery is not None,
            commands=self.options.commands,
            state=str(self.store.path),
        )

    def _warn_if_weak(self) -> None:
        """Said once at start, never silently: plaintext off this machine, TLS unverified."""
        options = self.options
        if options.scheme == "mqtt" and not _is_loopback(options.host):
            log.warning(
                "mqtt broker reached in plaintext: the password and device states cross the "
                "network unencrypted; use mqtts://",
                handler=self.name,
                key=self._context.key("url"),
            )
        if options.scheme == "mqtts" and not options.tls.verify:
            log.warning(
                "mqtt broker's certificate is not verified (tls.verify: false)",
                handler=self.name,
                key=self._context.key("tls", "verify"),
            )

    async def stop(self) -> None:
        """Say ``offline``, disconnect, finish the state file's last commits."""
        self._stopping = True
        if self.connection is not None:
            await self.connection.close((self.topics.bridge_availability, OFFLINE.encode()))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()
        if self._shared is not None and self._acquired:
            self._acquired = False
            await self._shared.release()

    # -- per event ----------------------------------------------------------------------------

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None] | None:
        device_id = event.device_id
        if not publishable_device(device_id):
            return None
        assert device_id is not None  # publishable_device says so
        if isinstance(event, StatusReport):
            return self._report(device_id, event, delivery)
        if isinstance(event, DeviceEvent):
            return self._device_event(device_id, event, delivery)
        return None

    def _state(self, device_id: str) -> DeviceState:
        state = self.states.get(device_id)
        if state is None:
            state = self.states[device_id] = DeviceState(device_id)
        return state

    def _ready(self) -> Connection:
        connection = self.connection
        if connection is None or not connection.connected:
            why = connection.last_error if connection is not None else None
            message = "not connected to the MQTT broker" + (f" ({why})" if why else "")
            raise HandlerError(UNAVAILABLE, message, infrastructure=True)
        return connection

    async def _report(self, device_id: str, event: StatusReport, delivery: Delivery) -> None:
        connection = self._ready()
        state = self._state(device_id)
        async with state.lock:
            new_device = self._new_device(state, event)
            messages = self._device_messages(state, event)
            fallback = event.timestamp_ms or delivery.publish_time_ms
            won = state.merge(event.statuses, fallback)
            if won:
                for code in won:
                    if publishable_code(code):
                        payload = plain_payload(state.codes[code].scaled)
                        messages.append((self.topics.code(device_id, code), payload, True))
                document = orjson.dumps(state.document())
                messages.append((self.topics.state(device_id), document, True))
            if not messages:
                return  # an older report redelivered: nothing of it is newer than what is kept
            saved = self.store.save(state, new_device)
            await self._send(connection, messages)
            _raise_if(await saved)

    async def _device_event(self, device_id: str, event: DeviceEvent, delivery: Delivery) -> None:
        connection = self._ready()
        if event.event_name == DELETED:
            await self._forget(connection, device_id, event, delivery)
            return
        state = self._state(device_id)
        async with state.lock:
            new_device = self._new_device(state, event)
            messages = self._device_messages(state, event)
            availability = AVAILABILITY_EVENTS.get(event.event_name or "")
            t_ms = event.timestamp_ms or delivery.publish_time_ms
            if availability is not None and state.set_availability(availability, t_ms):
                messages.append((self.topics.availability(device_id), availability.encode(), True))
            saved = self.store.save(state, new_device) if messages else None
            messages += self._event_message(device_id, event, delivery)
            await self._send(connection, messages)
            if saved is not None:
                _raise_if(await saved)

    def _event_message(
        self, device_id: str, event: DeviceEvent, delivery: Delivery
    ) -> list[Message]:
        name = event.biz_code or event.event_name
        if not self.options.events or not is_level(name):
            return []
        assert name is not None
        body = orjson.dumps(event_payload(event, delivery))
        return [(self.topics.event(device_id, name), body, False)]

    @staticmethod
    def _new_device(state: DeviceState, event: Event) -> bool:
        return isinstance(event.device, Device) and event.device is not state.device

    def _device_messages(self, state: DeviceState, event: Event) -> list[Message]:
        """A new catalogue snapshot of the device: its discovery configs (when they changed),
        and its first availability (the catalogue's ``online``; a device event corrects it)."""
        device = event.device
        if not isinstance(device, Device) or device is state.device:
            return []
        previous = state.device
        state.set_device(device)
        messages: list[Message] = []
        if self.discovery is not None and (
            previous is None or _discovery_key(previous) != _discovery_key(device)
        ):
            messages += self._discovery_messages(state, device)
        if state.availability is None:
            state.set_availability(OFFLINE if device.online is False else ONLINE, 0)
            availability = (state.availability or ONLINE).encode()
            messages.append((self.topics.availability(state.device_id), availability, True))
        return messages

    def _discovery_messages(self, state: DeviceState, device: Device) -> list[Message]:
        assert self.discovery is not None
        configs: list[Config] = self.discovery.configs(device)
        topics = [config.topic for config in configs]
        messages: list[Message] = [
            (config.topic, orjson.dumps(config.payload), True) for config in configs
        ]
        # Entities the new specification no longer has are removed from Home Assistant.
        messages += [(topic, b"", True) for topic in state.discovered if topic not in topics]
        state.discovered = tuple(topics)
        return messages

    async def _forget(
        self, connection: Connection, device_id: str, event: DeviceEvent, delivery: Delivery
    ) -> None:
        """A device deleted from the project: its discovery configs and retained topics are
        cleared (an empty retained payload), its state forgotten."""
        state = self.states.get(device_id)
        messages: list[Message] = []
        if state is not None:
            async with state.lock:
                messages += [(topic, b"", True) for topic in state.discovered]
                messages += [
                    (self.topics.code(device_id, code), b"", True)
                    for code in state.codes
                    if publishable_code(code)
                ]
                messages.append((self.topics.state(device_id), b"", True))
                messages.append((self.topics.availability(device_id), b"", True))
        messages += self._event_message(device_id, event, delivery)
        await self._send(connection, messages)
        if state is not None:
            if self.states.get(device_id) is state:
                del self.states[device_id]
            _raise_if(await self.store.forget(device_id))

    async def _send(self, connection: Connection, messages: list[Message]) -> None:
        try:
            for topic, payload, retain in messages:
                await connection.publish(topic, payload, retain)
        except Unavailable as exc:
            raise HandlerError(UNAVAILABLE, str(exc), infrastructure=True) from None
        except Refused as exc:
            raise HandlerError(REFUSED, str(exc), retryable=False) from None

    # -- after every (re)connection -------------------------------------------------------------

    async def _announce(self) -> None:
        """``online``, then (``republish_on_connect``) every device's retained topics again: a
        broker without persistence lost them when it restarted."""
        connection = self.connection
        if connection is None:
            return
        await connection.publish(self.topics.bridge_availability, ONLINE.encode(), True)
        if self.options.republish_on_connect:
            await self._republish(connection, everything=True)

    async def _republish(self, connection: Connection, everything: bool) -> None:
        """Each device under its lock, so a newer event's publish is never overtaken."""
        count = 0
        for device_id, state in list(self.states.items()):
            async with state.lock:
                if self.states.get(device_id) is not state:
                    continue  # deleted meanwhile
                messages = self._retained(state, everything)
                for topic, payload, retain in messages:
                    await connection.publish(topic, payload, retain)
            count += 1
        if count:
            log.info(
                "mqtt retained topics published again",
                handler=self.name,
                devices=count,
                what="everything" if everything else "discovery",
            )

    def _retained(self, state: DeviceState, everything: bool) -> list[Message]:
        device_id = state.device_id
        messages: list[Message] = []
        if self.discovery is not None and state.device is not None:
            configs = self.discovery.configs(state.device)
            state.discovered = tuple(config.topic for config in configs)
            messages += [(c.topic, orjson.dumps(c.payload), True) for c in configs]
        if not everything:
            return messages
        if state.availability is not None:
            messages.append(
                (self.topics.availability(device_id), state.availability.encode(), True)
            )
        for code, value in state.codes.items():
            if publishable_code(code):
                messages.append(
                    (self.topics.code(device_id, code), plain_payload(value.scaled), True)
                )
        if state.codes:
            messages.append((self.topics.state(device_id), orjson.dumps(state.document()), True))
        return messages

    # -- what the bridge hears --------------------------------------------------------------------

    def _incoming(self, message: Incoming) -> None:
        topics = self.topics
        if message.topic == topics.bridge_availability:
            # A last will of an earlier connection of ours, published late: we are here.
            if message.payload == OFFLINE.encode() and not self._stopping:
                self._spawn(self._say_online())
            return
        if self.discovery is not None and message.topic == self.options.homeassistant.birth_topic:
            if message.payload.strip().lower() == ONLINE.encode() and not message.retain:
                log.info(
                    "home assistant came online: publishing discovery again", handler=self.name
                )
                self._spawn(self._rediscover())
            return
        command = topics.parse_command(message.topic) if self.options.commands else None
        if command is None:
            return
        device_id, code = command
        if message.retain:
            # A retained command would run again at every reconnection: refused once, here.
            log.warning(
                "mqtt command ignored: it was retained",
                handler=self.name,
                topic=message.topic,
            )
            return
        self._spawn(self._command(device_id, code, message.payload))

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _say_online(self) -> None:
        connection = self.connection
        if connection is not None and connection.connected:
            try:
                await connection.publish(self.topics.bridge_availability, ONLINE.encode(), True)
            except (Unavailable, Refused) as exc:
                log.warning("mqtt availability not published", handler=self.name, error=str(exc))

    async def _rediscover(self) -> None:
        connection = self.connection
        if connection is None or not connection.connected:
            return
        try:
            await self._republish(connection, everything=False)
        except (Unavailable, Refused) as exc:
            log.warning("mqtt discovery not published again", handler=self.name, error=str(exc))

    # -- commands ---------------------------------------------------------------------------------

    async def _command(self, device_id: str, code: str | None, payload: bytes) -> None:
        """One command request: checked, sent, answered on its result topic. Requests of one
        device are sent in the order they came."""
        if device_id not in self.states:  # no lock kept for ids that anyone may make up
            outcome: dict[str, Any] = {
                "ok": False,
                "reason": "unknown_device",
                "message": f"the bridge knows no device {device_id} (no event of it)",
            }
        else:
            lock = self._command_locks.get(device_id)
            if lock is None:
                lock = self._command_locks[device_id] = asyncio.Lock()
            async with self._command_slots, lock:
                outcome = await self._execute(device_id, code, payload)
        outcome = {"device_id": device_id, "code": code, **outcome}
        if outcome["ok"]:
            log.info("mqtt command sent", handler=self.name, device_id=device_id, code=code,
                     commands=outcome.get("commands"))  # fmt: skip
        else:
            log.warning("mqtt command refused", handler=self.name, device_id=device_id, code=code,
                        reason=outcome.get("reason"), error=outcome.get("message"))  # fmt: skip
        connection = self.connection
        if connection is None or not connection.connected:
            return
        try:
            await connection.publish(
                self.topics.result(device_id, code), orjson.dumps(outcome), False
            )
        except (Unavailable, Refused) as exc:
            log.warning("mqtt command result not published", handler=self.name, error=str(exc))

    async def _execute(self, device_id: str, code: str | None, payload: bytes) -> dict[str, Any]:
        shared = self._shared
        client = shared.client if shared is not None else None
        try:
            if device_id not in self.states:
                raise CommandRefused(
                    "unknown_device", f"the bridge knows no device {device_id} (no event of it)"
                )
            request = parse_request(payload, code)
            if client is None:
                raise CommandRefused("not_started", "the OpenAPI client is not started")
            functions = await self.writable.functions(client, device_id)
            commands = build_commands(functions, request)
            await client.send_commands(device_id, commands, self.options.command_family)
        except CommandRefused as exc:
            return {"ok": False, "reason": exc.reason, "message": exc.message}
        except OpenApiError as exc:
            return outcome_of_error(exc)
        return {"ok": True, "commands": commands}


def _is_loopback(host: str) -> bool:
    """As written (a name that resolves to 127.0.0.1 today may not tomorrow)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _raise_if(problem: str | None) -> None:
    """The state file could not be written: an outage (a full disk, say), retried."""
    if problem is not None:
        raise HandlerError(STATE_UNAVAILABLE, problem, infrastructure=True)


def _client_id(name: str) -> str:
    """``tuya-events-<handler>-<random>``: distinct for every handler instance, so a reloaded
    handler and the one it replaces, or two daemons, never take each other's session over."""
    return f"tuya-events-{_FILE_NAME.sub('_', name)[:80]}-{secrets.token_hex(4)}"
