"""Pulsar's WebSocket consumer API on loopback, for the fast tests of the WebSocket source.

A real aiohttp WebSocket server in a thread of its own (tests/support/servers.py) that behaves as
Pulsar's proxy does where the source depends on it (pulsar-websocket ``ConsumerHandler``, 4.0):

- the handshake needs Tuya's ``username``/``password`` headers (401 otherwise) and answers 400
  for a subscription type other than Failover;
- frames are JSON with ``messageId`` (base64 of a protobuf ``MessageIdData``: ledger, entry,
  partition), ``payload`` (base64), ``properties``, ``publishTime`` (``...SSS+0200``, the
  proxy's format in a zone east of UTC), ``redeliveryCount`` and ``key``;
- ``receiverQueueSize`` (at most 1000) is a window: no more frames while that many are
  unacknowledged on the connection; every ack opens it by one, as the proxy counts (even an
  ack of a message another connection received);
- Failover: one active consumer per subscription (the first connected; no partition split);
  when it goes, the next gets every unacknowledged message again, its redelivery count raised.

What the tests need beyond that: ``drop()`` cuts every connection without a close frame (a
network loss), ``answer_pings = False`` leaves pings unanswered, ``refuse`` answers chosen
topics' handshakes with an HTTP status, ``stop()``/``start()`` take the whole service down and
up on the same port, keeping what it stores. A subscription starts at the topic's first message.

It is the contract the broker tests check on the real thing (tests/test_source_contract.py,
tests/test_daemon_broker.py), not a replacement for them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from aiohttp import WSMsgType, web

from tests.support.servers import ThreadedAiohttpServer
from tuya_events.config.loader import settings_from_mapping
from tuya_events.transport.websocket import WebSocketSource
from tuya_events.tuya.auth import pulsar_password

PROXY_ZONE = timezone(timedelta(hours=2))
LEDGER = 17


def message_id_bytes(ledger: int, entry: int, partition: int) -> bytes:
    """A ``MessageIdData`` as Pulsar's Java client serialises it (partition -1: left out)."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                return bytes(out)

    data = b"\x08" + varint(ledger) + b"\x10" + varint(entry)
    if partition >= 0:
        data += b"\x18" + varint(partition)
    return data


def proxy_time(moment: datetime) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSSZ`` in the proxy's zone, as Pulsar's DateFormatter writes."""
    local = moment.astimezone(PROXY_ZONE)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}+0200"


@dataclass
class Stored:
    message_id: str
    body: bytes
    properties: dict[str, str]
    key: str | None
    partition: int
    publish_time: str


@dataclass
class Topic:
    partitions: int  # 0: not partitioned
    messages: list[Stored] = field(default_factory=list)
    entries: int = 0


@dataclass
class Consumer:
    """One connection: its window, how many of its frames are unacknowledged, and how far
    through the topic it has read."""

    ws: web.WebSocketResponse
    request: web.Request
    window: int
    name: str | None
    pending: int = 0
    cursor: int = 0
    max_pending: int = 0
    sending: bool = False


@dataclass
class Subscription:
    acked: set[str] = field(default_factory=set)
    delivered: dict[str, int] = field(default_factory=dict)
    consumers: list[Consumer] = field(default_factory=list)


class LoopbackWebSocketApi(ThreadedAiohttpServer):
    """See the module docstring. ``topics``: ``event`` (11 partitions), ``event-test`` (1)
    and ``notice`` (not partitioned) of ``access_id``, as the test broker's tenants have."""

    thread_name = "test-websocket-api"

    def __init__(
        self,
        access_id: str,
        access_secret: str,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.access_id = access_id
        self.password = pulsar_password(access_id, access_secret)
        self.port = port
        self.ssl_context = ssl_context
        self.topics = {
            f"persistent://{access_id}/out/event": Topic(11),
            f"persistent://{access_id}/out/event-test": Topic(1),
            f"persistent://{access_id}/out/notice": Topic(0),
        }
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.handshakes: list[dict[str, Any]] = []  # accepted: path, query, header names
        self.refused: list[int] = []  # statuses answered instead of an upgrade
        self.refuse: dict[str, int] = {}  # topic name ending -> status to answer
        self.acks: list[str] = []
        self.commands: list[dict[str, Any]] = []  # frames that are not acks
        self.pings = 0
        self.answer_pings = True
        self.max_pending = 0

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- the test's side (any thread) -----------------------------------------------------

    def publish(
        self,
        body: bytes,
        properties: dict[str, str],
        key: str | None = None,
        topic: str = "event",
    ) -> str:
        """Store a message and hand it to the active consumers; returns its message id."""
        name = f"persistent://{self.access_id}/out/{topic}"
        stored = self._store(self.topics[name], body, properties, key)
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._dispatch_topic(name), self._loop).result(10)
        return stored.message_id

    def drop(self) -> None:
        """Cut every connection at once, as a network loss does (no close frame)."""
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result(10)

    def acked(self, topic: str = "event", subscription: str | None = None) -> set[str]:
        name = f"persistent://{self.access_id}/out/{topic}"
        state = self.subscriptions.get((name, subscription or f"{self.access_id}-sub"))
        return set(state.acked) if state is not None else set()

    def consumers(self) -> int:
        return sum(len(state.consumers) for state in self.subscriptions.values())

    # -- the server's side ----------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(
            "/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}",
            self._consume,
        )
        return app

    async def _close(self) -> None:
        for state in self.subscriptions.values():
            state.consumers.clear()
        await super()._close()

    def _store(
        self, topic: Topic, body: bytes, properties: dict[str, str], key: str | None
    ) -> Stored:
        partition = zlib.crc32((key or "").encode()) % topic.partitions if topic.partitions else -1
        topic.entries += 1
        raw = message_id_bytes(LEDGER, topic.entries, partition)
        stored = Stored(
            base64.b64encode(raw).decode(),
            body,
            dict(properties),
            key,
            partition,
            proxy_time(datetime.now(timezone.utc)),
        )
        topic.messages.append(stored)
        return stored

    async def _consume(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        name = f"persistent://{info['tenant']}/{info['namespace']}/{info['topic']}"
        subscription = unquote(info["subscription"])
        if (
            request.headers.get("username") != self.access_id
            or request.headers.get("password") != self.password
        ):
            self.refused.append(401)
            return web.Response(status=401, text="Authentication required")
        for ending, status in self.refuse.items():
            if name.endswith(ending):
                self.refused.append(status)
                return web.Response(status=status, text="Failed to subscribe: refused by the test")
        if request.query.get("subscriptionType") != "Failover" or name not in self.topics:
            self.refused.append(400)
            return web.Response(status=400, text="Invalid query params")
        window = min(int(request.query.get("receiverQueueSize", "1000")), 1000) or 1
        ws = web.WebSocketResponse(autoping=False, max_msg_size=0)
        await ws.prepare(request)
        self.handshakes.append(
            {
                "topic": name,
                "subscription": subscription,
                "query": dict(request.query),
                "headers": sorted(key.lower() for key in request.headers),
            }
        )
        state = self.subscriptions.setdefault((name, subscription), Subscription())
        consumer = Consumer(ws, request, window, request.query.get("consumerName"))
        state.consumers.append(consumer)
        try:
            await self._dispatch(name, state, consumer)
            async for message in ws:
                if message.type is WSMsgType.PING:
                    self.pings += 1
                    if self.answer_pings:
                        await ws.pong(message.data)
                elif message.type is WSMsgType.TEXT:
                    await self._command(name, state, consumer, json.loads(message.data))
        finally:
            if consumer in state.consumers:
                state.consumers.remove(consumer)
                if state.consumers:  # a standby takes over from the first unacknowledged
                    await self._dispatch(name, state, state.consumers[0])
        return ws

    async def _command(
        self, name: str, state: Subscription, consumer: Consumer, command: dict[str, Any]
    ) -> None:
        if command.get("type") not in (None, "ack"):
            self.commands.append(command)
            return
        message_id = command["messageId"]
        self.acks.append(message_id)
        state.acked.add(message_id)
        consumer.pending -= 1  # whichever connection received it, as the proxy counts
        await self._dispatch(name, state, consumer)

    async def _dispatch_topic(self, name: str) -> None:
        for (topic, _), state in list(self.subscriptions.items()):
            if topic == name and state.consumers:
                await self._dispatch(name, state, state.consumers[0])

    async def _dispatch(self, name: str, state: Subscription, consumer: Consumer) -> None:
        """Send what the window allows, in publish order, to the active consumer only."""
        if not state.consumers or consumer is not state.consumers[0] or consumer.sending:
            return
        consumer.sending = True
        try:
            messages = self.topics[name].messages
            while consumer.pending < consumer.window and consumer.cursor < len(messages):
                stored = messages[consumer.cursor]
                consumer.cursor += 1
                if stored.message_id in state.acked:
                    continue
                count = state.delivered.get(stored.message_id, 0)
                state.delivered[stored.message_id] = count + 1
                frame: dict[str, Any] = {
                    "messageId": stored.message_id,
                    "payload": base64.b64encode(stored.body).decode(),
                    "properties": stored.properties,
                    "publishTime": stored.publish_time,
                    "redeliveryCount": count,
                }
                if stored.key is not None:
                    frame["key"] = stored.key
                consumer.pending += 1
                consumer.max_pending = max(consumer.max_pending, consumer.pending)
                self.max_pending = max(self.max_pending, consumer.pending)
                if consumer.ws.closed:
                    return
                await consumer.ws.send_str(json.dumps(frame))
        finally:
            consumer.sending = False

    async def _drop(self) -> None:
        for state in self.subscriptions.values():
            for consumer in list(state.consumers):
                transport = consumer.request.transport
                if transport is not None:
                    transport.abort()


def websocket_source_for(
    url: str,
    access_id: str,
    access_secret: str,
    consumer_name: str | None = "source-test",
    heartbeat: float = 20.0,
    consumer: dict[str, Any] | None = None,
    tuya: dict[str, Any] | None = None,
    tls: dict[str, Any] | None = None,
) -> WebSocketSource:
    """A WebSocketSource (not started) as the daemon configured for that service builds it."""
    settings = settings_from_mapping(
        {
            "tuya": {
                "access_id": access_id,
                "access_secret": access_secret,
                "region": "eu",  # the loader asks for one; websocket_url overrides it
                "transport": "websocket",
                "websocket_url": url,
                **(tuya or {}),
            },
            "tls": tls or {},
            "consumer": consumer or {},
            "handlers": [{"type": "log"}],
        }
    )
    return WebSocketSource(settings, consumer_name=consumer_name, heartbeat=heartbeat)
