"""One connection to the broker, kept up by a supervisor; the only module that knows the MQTT
client library (zmqtt: why, in docs/mqtt.md).

The library's own reconnection is off: after a connection is lost the supervisor makes a new
client, so every (re)connection runs :attr:`Connection.on_connect` (``online``, subscriptions,
retained state again). A publish waits for its PUBACK (QoS 1); while there is no connection,
or when one is lost under it, it raises :class:`Unavailable`, which the handler reports as an
outage. A PUBACK that does not come within ``publish_timeout`` counts as a lost connection
(checked by the supervisor, not by a timer per publish, which would cost a task each).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import zmqtt

from tuya_events.observability.logging import get_logger

log = get_logger("tuya_events.handlers.mqtt")

HEALTH_CHECK_SECONDS = 0.25
FIRST_RETRY_SECONDS = 0.2
# MQTT 5 PUBACK reason codes that say the broker is overloaded, not that the message is bad.
_TRANSIENT_REASONS = frozenset({0x97})  # quota exceeded


class CoalescingTransport:
    """The byte stream under the client, writing what one turn of the event loop produced in
    one ``send``: with hundreds of events in flight, a publish each, the library's own
    transport made one system call (and woke the broker) per packet, which was most of the
    cost (docs/mqtt.md). ``write`` returns before the bytes left, as the library's did before
    its drain; a QoS 1 publish waits for its PUBACK anyway, and the buffer is bounded: past
    ``HIGH_WATER`` bytes queued in the socket's transport, a writer waits for it to drain."""

    HIGH_WATER = 1 << 20

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending = bytearray()
        self._scheduled = False
        self._closed = False

    async def read(self, n: int) -> bytes:
        try:
            data = await self._reader.read(n)
        except OSError as exc:
            self._closed = True
            raise zmqtt.MQTTDisconnectedError("connection lost") from exc
        if not data:
            self._closed = True
            raise zmqtt.MQTTDisconnectedError("connection closed by the broker")
        return data

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise zmqtt.MQTTDisconnectedError("connection closed")
        self._pending += data
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self._writer.transport.get_write_buffer_size() > self.HIGH_WATER:
            try:
                await self._writer.drain()
            except OSError as exc:
                self._closed = True
                raise zmqtt.MQTTDisconnectedError("connection lost") from exc

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending or self._closed:
            return
        data, self._pending = bytes(self._pending), bytearray()
        try:
            self._writer.write(data)
        except (OSError, RuntimeError):
            self._closed = True

    async def close(self) -> None:
        self._flush()
        self._closed = True
        try:
            self._writer.close()
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except Exception:  # a close that hangs or fails must not block the reconnection
            with contextlib.suppress(Exception):
                self._writer.transport.abort()

    @property
    def is_connected(self) -> bool:
        return not self._closed


async def open_transport(
    host: str, port: int, tls: ssl.SSLContext | bool | None
) -> CoalescingTransport:
    context = (
        tls if isinstance(tls, ssl.SSLContext) else (ssl.create_default_context() if tls else None)
    )
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    return CoalescingTransport(reader, writer)


class Unavailable(Exception):
    """No connection, or the one there was got lost: an outage."""


class Refused(Exception):
    """The broker answered a publish with an MQTT 5 error reason (not authorized, topic name
    invalid, packet too large, ...): sending it again will not help."""

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int
    client_id: str
    protocol: str  # "3.1.1" or "5"
    keepalive: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    qos: int
    will_topic: str
    will_payload: bytes
    connect_timeout: float
    publish_timeout: float
    reconnect_max_wait: float
    subscriptions: tuple[str, ...] = ()


class Connection:
    def __init__(
        self,
        settings: ConnectionSettings,
        on_connect: Callable[[], Awaitable[None]],
        on_message: Callable[[Incoming], None],
        name: str,
    ) -> None:
        self.settings = settings
        self.on_connect = on_connect
        self.on_message = on_message
        self.name = name
        self._qos = zmqtt.QoS.AT_LEAST_ONCE if settings.qos == 1 else zmqtt.QoS.AT_MOST_ONCE
        self._client: Any = None  # the library's client while connected
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._closing = False
        self._stop = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._readers: set[asyncio.Task[None]] = set()
        # Publishes waiting for their PUBACK: start time by number, oldest first.
        self._waiting: dict[int, float] = {}
        self._numbers = 0
        self.connections = 0  # successful connections so far (tests, logs)
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self.connected

    async def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """Send and, at QoS 1, wait for the PUBACK."""
        client = self._client
        if client is None:
            raise Unavailable(self._why_unavailable())
        number = self._numbers = self._numbers + 1
        self._waiting[number] = asyncio.get_running_loop().time()
        try:
            await client.publish(topic, payload, qos=self._qos, retain=retain)
        except zmqtt.MQTTPublishError as exc:
            if exc.reason_code in _TRANSIENT_REASONS:
                raise Unavailable(f"the broker is over its quota ({exc})") from None
            raise Refused(str(exc), exc.reason_code) from None
        except (zmqtt.MQTTError, OSError, RuntimeError) as exc:
            self._connection_lost(client, f"{type(exc).__name__}: {exc}")
            raise Unavailable(f"the connection to the broker was lost ({exc})") from None
        finally:
            del self._waiting[number]

    async def close(self, farewell: tuple[str, bytes] | None = None) -> None:
        """Stop reconnecting; publish ``farewell`` (a clean disconnect sends no last will, so
        the bridge says ``offline`` itself), then disconnect."""
        self._closing = True
        client = self._client
        if client is not None and farewell is not None:
            with contextlib.suppress(Unavailable, Refused, asyncio.TimeoutError):
                await asyncio.wait_for(self.publish(*farewell, retain=True), 2.0)
        self._stop.set()
        self._lost.set()
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None

    # -- the supervisor -----------------------------------------------------------------------

    def _why_unavailable(self) -> str:
        where = f"{self.settings.host}:{self.settings.port}"
        if self.last_error:
            return f"not connected to the MQTT broker at {where} ({self.last_error})"
        return f"not connected to the MQTT broker at {where}"

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                client = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                self._failed_attempt(attempt, exc)
                await self._pause(self._backoff(attempt))
                continue
            attempt = 0
            await self._run(client)

    async def _connect(self) -> Any:
        settings = self.settings
        self._lost = asyncio.Event()
        lost = self._lost

        async def recovery_failed() -> None:
            lost.set()

        client = zmqtt.create_client(
            settings.host,
            settings.port,
            client_id=settings.client_id,
            keepalive=settings.keepalive,
            clean_session=True,
            username=settings.username,
            password=settings.password,
            will=zmqtt.Will(
                topic=settings.will_topic,
                payload=settings.will_payload,
                qos=self._qos,
                retain=True,
            ),
            tls=settings.tls if settings.tls is not None else False,
            reconnect=zmqtt.ReconnectConfig(enabled=False),
            on_connection_recovery_failed=recovery_failed,
            mqtt_connect_timeout=settings.connect_timeout,
            transport_factory=open_transport,
            version="5.0" if settings.protocol == "5" else "3.1.1",
        )
        try:
            await asyncio.wait_for(client.connect(), settings.connect_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.disconnect()
            raise
        return client

    async def _run(self, client: Any) -> None:
        """One connection's life: subscribe, announce, serve until it is lost."""
        settings = self.settings
        try:
            if settings.subscriptions:
                subscription = client.subscribe(*settings.subscriptions, qos=self._qos)
                await asyncio.wait_for(subscription.start(), settings.connect_timeout)
                self._spawn(self._read(subscription))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"subscribing failed: {type(exc).__name__}: {exc}"
            log.warning("mqtt subscription failed", handler=self.name, error=self.last_error)
            await self._drop(client)
            await self._pause(self._backoff(1))
            return
        self._client = client
        self.connections += 1
        self.last_error = None
        log.info(
            "mqtt connected",
            handler=self.name,
            broker=f"{settings.host}:{settings.port}",
            protocol=settings.protocol,
            client_id=settings.client_id,
            tls=settings.tls is not None,
        )
        self._spawn(self._announce())
        self._ready.set()
        try:
            await self._watch(client)
        finally:
            self._ready.clear()
            self._client = None
            await self._drop(client)

    async def _announce(self) -> None:
        try:
            await self.on_connect()
        except (Unavailable, Refused) as exc:
            log.warning("mqtt announcement failed", handler=self.name, error=str(exc))
        except Exception as exc:  # a bug of ours: logged, the connection goes on
            log.error("mqtt announcement failed", handler=self.name, error=repr(exc))

    async def _watch(self, client: Any) -> None:
        """Return when the connection is lost (or the bridge stops)."""
        loop = asyncio.get_running_loop()
        timeout = self.settings.publish_timeout
        while not (self._lost.is_set() or self._closing):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), HEALTH_CHECK_SECONDS)
            if self._lost.is_set() or self._closing:
                break
            try:
                client.connection_info  # noqa: B018 - raises once the connection is gone
            except zmqtt.MQTTError:
                self._connection_lost(client, "the connection was closed")
                break
            oldest = next(iter(self._waiting.values()), None)
            if oldest is not None and loop.time() - oldest > timeout:
                self._connection_lost(client, f"no PUBACK within {timeout:g}s")
                break
        if not self._closing:
            log.warning(
                "mqtt connection lost; events wait unacknowledged until it is back",
                handler=self.name,
                error=self.last_error,
            )

    def _connection_lost(self, client: Any, why: str) -> None:
        if client is self._client or self._client is None:
            self.last_error = why
            self._client = None
            self._lost.set()

    async def _drop(self, client: Any) -> None:
        for task in list(self._readers):
            task.cancel()
        if self._readers:
            await asyncio.gather(*self._readers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 2.0)

    async def _read(self, subscription: Any) -> None:
        try:
            async for message in subscription:
                try:
                    self.on_message(Incoming(message.topic, bytes(message.payload), message.retain))
                except Exception as exc:  # a bug of ours must not stop the reader
                    log.error("mqtt message handling failed", handler=self.name, error=repr(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost.set()
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    def _failed_attempt(self, attempt: int, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, zmqtt.MQTTConnectError):
            self.last_error = f"the broker refused the connection (return code {exc.return_code})"
        if attempt == 1 or attempt % 20 == 0:
            log.warning(
                "mqtt broker unreachable; retrying",
                handler=self.name,
                broker=f"{self.settings.host}:{self.settings.port}",
                attempt=attempt,
                error=self.last_error,
            )

    def _backoff(self, attempt: int) -> float:
        growth = FIRST_RETRY_SECONDS * 2.0 ** min(attempt - 1, 30)
        ceiling = min(self.settings.reconnect_max_wait, growth)
        return ceiling / 2 + random.random() * ceiling / 2

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the bridge stops meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
