"""Tuya's message service over Pulsar's WebSocket API (``tuya.transport: websocket``).

For where the native client cannot go: networks that let only HTTPS-like traffic out (it
honours ``HTTPS_PROXY``), and machines without a ``pulsar-client`` wheel (32-bit ARM). It needs
nothing beyond aiohttp, which the daemon has anyway (docs/transports.md: why aiohttp, figures).

One WebSocket consumer per topic, as Tuya's own WebSocket SDKs subscribe:
``ws/v2/consumer/persistent/{access_id}/out/event/{subscription}?subscriptionType=Failover``
with the ``username``/``password`` headers. What the Source contract asks, and how:

- **acknowledged after settling, by message id**: ``{"messageId": ...}`` per finished message,
  written by one task per connection at the end of the loop's turn. The API has no cumulative
  acknowledgement, so ``consumer.acknowledgement: cumulative`` does not apply here. No
  ``ackTimeoutMillis`` (Tuya's samples set 3 s, which redelivers every slower message): the
  daemon's own retries decide.
- **bounded memory**: ``receiverQueueSize`` is the API's receive window: the proxy stops sending
  while that many of its messages are unacknowledged (Pulsar's ``ConsumerHandler``), and we
  acknowledge only settled messages, so what we hold is bounded by the window (the pull mode's
  permits would do the same, but only from Pulsar 2.3 on, and an older proxy closes the
  connection on a permit frame; Tuya does not say which release it runs). After a reconnect,
  the acknowledgements of messages received before it also open the new window, so for a while
  up to twice the window may be held.
- **per-device order**: Failover, so each partition has one active consumer and comes in order;
  the partition is read from the message id (the frame does not carry it).
- **reconnect with backoff**, ping/pong keepalive (aiohttp's heartbeat closes a connection whose
  pong does not come), and ``connected()`` reflecting the connection for the metric and
  ``/readyz``. What was received and not acknowledged before a drop is redelivered by the broker
  on the next connection (the dedupe cache skips finished handlers); acknowledgements made while
  disconnected are sent once connected again.

Notices (``tuya.notices``) come on a connection of their own, as with the native source, and are
acknowledged on it; they are returned ahead of the events in each batch. A refused notice
subscription costs the notices only, until the next start.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import random
import re
import ssl
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson

from tuya_events.backoff import equal_jitter
from tuya_events.config.settings import Settings
from tuya_events.delivery import Delivery
from tuya_events.observability.logging import get_logger
from tuya_events.tuya.auth import auth_failure_hint, websocket_headers

log = get_logger("tuya_events.transport.websocket")

BATCH_MAX_MESSAGES = 500
POLL_SECONDS = 0.1
MAX_WINDOW = 1000  # the proxy caps receiverQueueSize there
NOTICE_WINDOW = 10
HEARTBEAT_SECONDS = 20.0  # a ping this often; no pong within half of it closes the connection
CLOSE_TIMEOUT_SECONDS = 2.0
RECONNECT_INITIAL_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a connection that lasted this long starts the backoff afresh
MAX_FRAME_BYTES = 8 * 1024 * 1024  # a 5 MB Pulsar message, base64 in JSON
ACK_FLUSH_TIMEOUT_SECONDS = 5.0

if TYPE_CHECKING:  # generic only in the aiohttp releases that have decode_text
    WebSocket = aiohttp.ClientWebSocketResponse[bool]
else:
    WebSocket = aiohttp.ClientWebSocketResponse


class SourceUnavailable(Exception):
    """The WebSocket API refused us or cannot be reached; the text says what to check.

    The same meaning as :class:`tuya_events.transport.pulsar.SourceUnavailable`, defined here so
    that this transport imports nothing of ``pulsar-client``.
    """


# -- frames -----------------------------------------------------------------------------------


# Ledger, entry and a partition below 128, as the Java client writes them: one regex match
# (0.35 us) instead of the loop below (0.85 us); any other layout takes the loop.
_COMMON_ID = re.compile(rb"\x08[\x80-\xff]*[\x00-\x7f]\x10[\x80-\xff]*[\x00-\x7f]\x18([\x00-\x7f])")


def partition_of(message_id: bytes) -> int:
    """The partition in a Pulsar ``MessageIdData`` (protobuf: 1 ledger, 2 entry, 3 partition,
    all varints), or -1 when it has none (a topic without partitions)."""
    common = _COMMON_ID.match(message_id)
    if common is not None:
        return common.group(1)[0]
    index, end = 0, len(message_id)
    while index < end:
        tag = message_id[index]
        index += 1
        if tag & 7:  # not a varint: past the fields that come first
            return -1
        value = shift = 0
        while index < end:
            byte = message_id[index]
            index += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        if tag == 0x18:
            return value - (1 << 64) if value >= 1 << 63 else value  # int32, sign-extended
    return -1


class PublishTimes:
    """``publishTime`` (``2024-05-01T12:20:30.123+0200``, the proxy's format) as epoch ms.

    Converting an aware datetime costs about 3 us; messages of one second share everything but
    the milliseconds, so the seconds are converted once and remembered (a few hundred entries).
    """

    __slots__ = ("_seconds",)
    LIMIT = 512

    def __init__(self) -> None:
        self._seconds: dict[str, int] = {}

    def __call__(self, text: Any) -> int:
        if not isinstance(text, str):
            return 0
        if len(text) > 23 and text[19] == "." and text[20:23].isdigit():
            whole, millis = text[:19] + text[23:], int(text[20:23])
        else:
            whole, millis = text, 0
        seconds = self._seconds.get(whole)
        if seconds is None:
            try:
                seconds = int(datetime.fromisoformat(_iso_zone(whole)).timestamp()) * 1000
            except ValueError:
                return 0
            if len(self._seconds) >= self.LIMIT:
                self._seconds.clear()
            self._seconds[whole] = seconds
        return seconds + millis


def _iso_zone(text: str) -> str:
    """``Z`` and ``+0200`` as ``+00:00`` and ``+02:00``: Python 3.10 reads only those."""
    date, zone = text[:19], text[19:]
    if zone == "Z":
        return date + "+00:00"
    if len(zone) == 5 and zone[0] in "+-" and zone[1:].isdigit():
        return f"{date}{zone[:3]}:{zone[3:]}"
    return text


# -- one consumer connection --------------------------------------------------------------------


class Subscription:
    """One WebSocket consumer of one topic: connects, reads frames, writes acknowledgements,
    and reconnects (with backoff) whenever the connection drops, until closed."""

    def __init__(
        self,
        source: WebSocketSource,
        topic: str,
        window: int,
        received: deque[Delivery],
        what: str,
    ) -> None:
        self.source = source
        self.topic = topic
        self.window = window
        self.what = what  # "events" or "notices", for the logs
        self.url = source.consumer_url(topic, window)
        self._received = received
        self._partition_topics: dict[int, str] = {}
        self._ws: WebSocket | None = None
        self._acks: list[str] = []
        self._ack_ready = asyncio.Event()
        self._closing = False
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.connections = 0

    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and not ws.closed and not self._closing

    async def connect(self) -> None:
        """One attempt; raises what aiohttp raises (refusals, network and TLS errors)."""
        self._ws = await asyncio.wait_for(self._open(), self.source.connect_timeout)
        self.connections += 1

    async def _open(self) -> WebSocket:
        source = self.source
        # Only what aiohttp 3.9 (the project's minimum) has: no ClientWSTimeout, no decode_text.
        return await source.session.ws_connect(
            self.url,
            headers=source.headers,
            ssl=source.ssl,
            heartbeat=source.heartbeat,
            max_msg_size=MAX_FRAME_BYTES,
        )

    def run(self) -> None:
        """Read and acknowledge in the background, from the connection :meth:`connect` made."""
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._consume())
        self._writer = loop.create_task(self._send_acks())

    def acknowledge(self, message_id: str) -> None:
        self._acks.append(message_id)
        self._ack_ready.set()

    # -- reading ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        attempt = 0
        while not self._closing:
            if self._ws is None:
                try:
                    await self.connect()
                except Exception as exc:  # refusals, network and TLS errors: all retried
                    attempt += 1
                    delay = _backoff(attempt)
                    self._log_failed_attempt(exc, attempt, delay)
                    await asyncio.sleep(delay)
                    continue
                log.info("reconnected to the WebSocket API", subscription=self.what)
                self._ack_ready.set()  # what was acknowledged meanwhile goes out now
            ws = self._ws
            assert ws is not None
            opened = time.monotonic()
            try:
                await self._read(ws)
            finally:
                if not self._closing:
                    self._ws = None
            if self._closing:
                return
            log.warning(
                "the WebSocket API connection closed; reconnecting",
                subscription=self.what,
                close_code=ws.close_code,
                error=_describe(ws.exception()),
            )
            if time.monotonic() - opened >= STABLE_SECONDS:
                attempt = 0
            attempt += 1
            await asyncio.sleep(_backoff(attempt))

    async def _read(self, ws: WebSocket) -> None:
        received, wake = self._received, self.source.wake
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT or message.type is aiohttp.WSMsgType.BINARY:
                delivery = self._delivery(message.data)
                if delivery is not None:
                    received.append(delivery)
                    wake.set()
            elif message.type is aiohttp.WSMsgType.ERROR:
                return

    def _delivery(self, data: str | bytes) -> Delivery | None:
        try:
            frame = orjson.loads(data)
            message_id = frame["messageId"]
            payload = frame["payload"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.info("ignored a frame that is not a message", subscription=self.what)
            return None
        try:
            body = binascii.a2b_base64(payload)
            partition = partition_of(binascii.a2b_base64(message_id))
        except (binascii.Error, TypeError, ValueError):
            # Delivered all the same: the pipeline dead-letters what it cannot decode and
            # acknowledges it, where skipping it would hold a place in the window for ever.
            body, partition = str(payload).encode(), -1
        properties = frame.get("properties")
        redelivery = frame.get("redeliveryCount")
        return Delivery(  # positional: half the cost of keywords (body, properties, id, ...)
            body,
            properties if type(properties) is dict else {},
            message_id,
            self._topic_of(partition),
            partition,
            self.source.publish_times(frame.get("publishTime")),
            redelivery if type(redelivery) is int else 0,
            frame.get("key") or None,
            self,
        )

    def _topic_of(self, partition: int) -> str:
        topic = self._partition_topics.get(partition)
        if topic is None:
            topic = self.topic if partition < 0 else f"{self.topic}-partition-{partition}"
            self._partition_topics[partition] = topic
        return topic

    def _log_failed_attempt(self, exc: BaseException, attempt: int, delay: float) -> None:
        fields = {
            "subscription": self.what,
            "attempt": attempt,
            "retry_in": round(delay, 2),
            "error": _describe(exc),
        }
        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status == 401:
            log.error("the WebSocket API refused the login; retrying", **fields)
        elif attempt == 1 or attempt % 10 == 0:
            log.warning("cannot reconnect to the WebSocket API yet; retrying", **fields)
        else:
            log.info("cannot reconnect to the WebSocket API yet; retrying", **fields)

    # -- acknowledging ----------------------------------------------------------------------

    async def _send_acks(self) -> None:
        while True:
            await self._ack_ready.wait()
            self._ack_ready.clear()
            await self._flush_acks()
            if self._closing:
                return

    async def _flush_acks(self) -> None:
        ws = self._ws
        if ws is None or ws.closed or not self._acks:
            return  # kept for the next connection
        acks, self._acks = self._acks, []
        for index, message_id in enumerate(acks):
            try:
                await ws.send_str(orjson.dumps({"messageId": message_id}).decode())
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                # Not lost: sent on the next connection (or the message is redelivered).
                self._acks[:0] = acks[index:]
                return

    # -- closing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading, send the acknowledgements still waiting, close the connection."""
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._writer is not None:
            self._ack_ready.set()
            try:
                await asyncio.wait_for(self._writer, ACK_FLUSH_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                log.warning(
                    "acknowledgements not sent before closing; the broker will redeliver those",
                    subscription=self.what,
                    unsent=len(self._acks),
                )
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_SECONDS)


def _backoff(attempt: int) -> float:
    return equal_jitter(attempt, RECONNECT_INITIAL_SECONDS, RECONNECT_MAX_SECONDS, random.random)


def _describe(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"HTTP {exc.status} {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- the source ---------------------------------------------------------------------------------


def ssl_setting(settings: Settings) -> ssl.SSLContext | bool:
    """``tls:`` as for the native transport: the system's CAs or ``ca_file``; no check only
    with ``tls.insecure`` (reported at start by config.transport_security)."""
    tls = settings.tls
    if not tls.verify_certificates:
        return False
    return ssl.create_default_context(cafile=tls.ca_file)


class WebSocketSource:
    def __init__(
        self,
        settings: Settings,
        consumer_name: str | None = None,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.settings = settings
        self.consumer_name = consumer_name
        self.heartbeat = heartbeat
        tuya = settings.tuya
        self.base_url = tuya.resolved_websocket_url.rstrip("/")
        self.headers = websocket_headers(tuya.access_id, tuya.access_secret.get_secret_value())
        self.connect_timeout = max(1.0, settings.consumer.operation_timeout)
        self.window = min(settings.consumer.max_in_flight, MAX_WINDOW)
        self.publish_times = PublishTimes()
        self.wake = asyncio.Event()
        self._events: deque[Delivery] = deque()
        self._notices: deque[Delivery] = deque()
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool | None = None
        self.events: Subscription | None = None
        self.notices: Subscription | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "start() first"
        return self._session

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        if self._ssl is None:
            self._ssl = ssl_setting(self.settings) if self._secure else False
        return self._ssl

    @property
    def _secure(self) -> bool:
        return urlsplit(self.base_url).scheme.lower() == "wss"

    def consumer_url(self, topic: str, window: int) -> str:
        """``{base}/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}``."""
        query: dict[str, str | int] = {"subscriptionType": "Failover", "receiverQueueSize": window}
        if self.consumer_name:
            query["consumerName"] = self.consumer_name
        path = topic.replace("://", "/", 1)
        subscription = quote(self.settings.tuya.subscription, safe="")
        return f"{self.base_url}/ws/v2/consumer/{path}/{subscription}?{urlencode(query)}"

    @property
    def notices_subscribed(self) -> bool:
        return self.notices is not None

    async def start(self) -> None:
        """Subscribe to the events (a refusal raises :class:`SourceUnavailable`), then to the
        notices (a refusal costs only them)."""
        tuya = self.settings.tuya
        # trust_env: HTTPS_PROXY / NO_PROXY, for the networks this transport is for.
        self._session = aiohttp.ClientSession(trust_env=True)
        self.events = Subscription(self, tuya.topic, self.window, self._events, "events")
        try:
            await self.events.connect()
        except Exception as exc:
            explanation = self._explain(exc)
            await self.close()
            raise SourceUnavailable(explanation) from exc
        log.info(
            "subscribed",
            url=self.base_url,
            topic=tuya.topic,
            subscription=tuya.subscription,
            type="Failover",
            transport="websocket",
            window=self.window,
        )
        if self.settings.consumer.acknowledgement == "cumulative":
            log.info(
                "the WebSocket API acknowledges each message on its own: "
                "consumer.acknowledgement: cumulative applies to the native transport only"
            )
        self.events.run()
        if tuya.notices:
            await self._subscribe_notices()

    async def _subscribe_notices(self) -> None:
        tuya = self.settings.tuya
        topic = tuya.resolved_notice_topic
        notices = Subscription(self, topic, NOTICE_WINDOW, self._notices, "notices")
        try:
            await notices.connect()
        except Exception as exc:
            log.warning(
                "cannot subscribe to Tuya's notice topic; consuming events without notices",
                topic=topic,
                subscription=tuya.subscription,
                error=_describe(exc),
                hint=(
                    "Tuya documents {access_id}/out/notice (enable 'Subscribe to Pulsar Alert' "
                    "in the console's message service); tuya.notice_topic names another, "
                    "tuya.notices: false stops trying"
                ),
            )
            return
        self.notices = notices
        notices.run()
        log.info("subscribed to notices", topic=topic, subscription=tuya.subscription)

    def _explain(self, exc: BaseException) -> str:
        """Why subscribing failed, in terms of what the user can check."""
        tuya = self.settings.tuya
        url = self.base_url
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            hint = auth_failure_hint(tuya.access_id, url, tuya.topic)
            if exc.status == 401:
                return (
                    f"{hint} (With tuya.transport: websocket the address is tuya.websocket_url "
                    "or the region's, port 8285.)"
                )
            return (
                f"the WebSocket API at {url} did not accept the subscription to {tuya.topic} as "
                f"{tuya.subscription} (HTTP {exc.status} {exc.message}). {hint}"
            )
        if isinstance(exc, aiohttp.ClientConnectorCertificateError) or isinstance(
            getattr(exc, "os_error", None), ssl.SSLCertVerificationError
        ):
            return (
                f"the TLS certificate of {url} could not be verified ({exc}). If the service "
                "uses a private CA, set tls.ca_file to its PEM bundle; tls.insecure: true turns "
                "verification off (never in production)."
            )
        return (
            f"cannot reach the Tuya message service's WebSocket API at {url} ({_describe(exc)}). "
            "Check tuya.region / tuya.websocket_url, DNS and the network path (outbound TCP to "
            "that port, or HTTPS_PROXY), and the TLS settings (tls.ca_file)."
        )

    async def receive_batch(self) -> list[Delivery]:
        events, notices = self._events, self._notices
        if not events and not notices:
            if self._closed:
                return []
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)
            except asyncio.TimeoutError:
                return []
        batch: list[Delivery] = []
        if notices:
            batch.extend(notices)
            notices.clear()
        if len(events) <= BATCH_MAX_MESSAGES:
            batch.extend(events)
            events.clear()
        else:
            popleft = events.popleft
            batch.extend(popleft() for _ in range(BATCH_MAX_MESSAGES))
        return batch

    def acknowledge(self, delivery: Delivery) -> None:
        """Called once per finished message; sent by the subscription's writer task."""
        subscription = delivery.handle
        if type(subscription) is Subscription:
            subscription.acknowledge(delivery.message_id)

    def connected(self) -> bool:
        return self.events is not None and self.events.connected

    async def close(self) -> None:
        """Idempotent: a failed start closes, and the daemon closes again on its way out."""
        if self._closed:
            return
        self._closed = True
        for subscription in (self.events, self.notices):
            if subscription is not None:
                await subscription.close()
        self.events = self.notices = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._events.clear()
        self._notices.clear()
