"""``type: pulsar``: forward the decrypted event to a topic on your own Pulsar cluster.

Keyed by device id, so per-device order holds downstream (same key, same partition) and
Key_Shared consumers work. ``handle`` returns only when the broker confirmed the message: the
upstream Tuya message is acknowledged after that, never before.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit

import orjson
import pulsar
import pulsar.asyncio
from pydantic import BaseModel, ConfigDict, Field

from tuya_events.config.transport_security import TLS_SCHEMES
from tuya_events.config.types import Duration
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext, HandlerError
from tuya_events.handlers.payload import event_id, event_payload
from tuya_events.observability.logging import pulsar_client_logger
from tuya_events.tuya.events import Event

# Results that mean "the broker or the path to it is unavailable": retry, never dead-letter.
_UNAVAILABLE = frozenset(
    {
        "Timeout",
        "ConnectError",
        "NotConnected",
        "AlreadyClosed",
        "ServiceUnitNotReady",
        "ProducerQueueIsFull",
        "BrokerPersistenceError",
        "BrokerMetadataError",
        "LookupError",
        "TooManyLookupRequestException",
        "ProducerBlockedQuotaExceededError",
        "ProducerBlockedQuotaExceededException",
        "RetryableError",
        "ProducerNotInitialized",
        "Disconnected",
    }
)


def _result_name(exc: pulsar.asyncio.PulsarException) -> str:
    return getattr(exc.error(), "name", "") or "UnknownError"


def _unavailable(exc: pulsar.asyncio.PulsarException) -> bool:
    """Outages are retried for as long as the policy allows; anything else (TopicNotFound,
    AuthorizationError, ...) is retried a few times, then dead-lettered with its reason."""
    return _result_name(exc) in _UNAVAILABLE or _result_name(exc) == "???"


def _describe(exc: pulsar.asyncio.PulsarException) -> str:
    text = str(exc)
    detail = text.split(" ", 2)[-1] if text[:1].isdigit() else text
    return f"{_result_name(exc)} ({detail})"


class PulsarForwardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    service_url: str = Field(pattern=r"^pulsar(\+ssl)?://")
    topic: str = Field(min_length=1)
    # A JWT for AuthenticationToken (or token_file: PATH).
    token: str | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    send_timeout: Duration = 30.0
    compression: bool = True


class PulsarForwardHandler(BaseHandler):
    Options = PulsarForwardOptions

    def __init__(
        self, name: str, options: PulsarForwardOptions, context: HandlerContext | None = None
    ) -> None:
        super().__init__(name)
        self.options = options
        self._client: pulsar.asyncio.Client | None = None
        self._producer: pulsar.asyncio.Producer | None = None

    def _new_client(self) -> pulsar.asyncio.Client:
        options = self.options
        client_options: dict[str, Any] = {"logger": pulsar_client_logger()}
        if options.token:
            client_options["authentication"] = pulsar.AuthenticationToken(options.token)
        if urlsplit(options.service_url).scheme.lower() in TLS_SCHEMES:
            # tls_verify: false is said once at start (config.transport_security), not here.
            client_options["use_tls"] = True
            client_options["tls_allow_insecure_connection"] = not options.tls_verify
            client_options["tls_validate_hostname"] = options.tls_verify
            if options.ca_file:
                client_options["tls_trust_certs_file_path"] = options.ca_file
        return pulsar.asyncio.Client(options.service_url, **client_options)

    async def start(self) -> None:
        """One client for the handler's life; the producer is (re)created until it exists."""
        if self._client is None:
            self._client = self._new_client()
        if self._producer is not None:
            return
        options = self.options
        try:
            self._producer = await self._client.create_producer(
                options.topic,
                send_timeout_millis=int(options.send_timeout * 1000),
                compression_type=(
                    pulsar.CompressionType.LZ4
                    if options.compression
                    else pulsar.CompressionType.NONE
                ),
                block_if_queue_full=True,
            )
        except pulsar.asyncio.PulsarException as exc:
            raise HandlerError(
                "forward_unavailable" if _unavailable(exc) else "forward_refused",
                f"cannot create a producer on {options.topic} at {options.service_url}: "
                f"{_describe(exc)}",
                infrastructure=_unavailable(exc),
            ) from exc

    async def handle(self, event: Event, delivery: Delivery) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        payload = event_payload(event, delivery)
        try:
            await self._producer.send(
                orjson.dumps(payload),
                properties={"type": payload["type"], "id": event_id(event, delivery)},
                partition_key=event.device_id or delivery.key or None,
                event_timestamp=event.timestamp_ms,
            )
        except pulsar.asyncio.PulsarException as exc:
            raise HandlerError(
                "forward_failed",
                f"publishing to {self.options.topic} failed: {_describe(exc)}",
                infrastructure=_unavailable(exc),
            ) from exc

    async def stop(self) -> None:
        producer, client = self._producer, self._client
        self._producer = self._client = None
        if producer is not None:
            with contextlib.suppress(pulsar.asyncio.PulsarException):
                await producer.flush()
                await producer.close()
        if client is not None:
            with contextlib.suppress(pulsar.asyncio.PulsarException):
                await client.close()
