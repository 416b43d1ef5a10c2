"""Tuya's message service over the native Pulsar protocol (Apache's ``pulsar-client``).

The C++ client does the I/O on its own threads; ``batch_receive`` runs on one worker thread of
ours, so the event loop gets messages a batch at a time (one thread hop per batch, not per
message). Failover subscription: per partition one active consumer, others hot standbys.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import pulsar

from tuya_events.config.settings import Settings
from tuya_events.observability.logging import get_logger
from tuya_events.pipeline.delivery import Delivery
from tuya_events.tuya.auth import auth_failure_hint, pulsar_authentication

log = get_logger("tuya_events.transport.pulsar")

BATCH_MAX_MESSAGES = 500
BATCH_MAX_BYTES = 8 * 1024 * 1024
POLL_MILLIS = 100


class SourceUnavailable(Exception):
    """The message service refused us or cannot be reached; the text says what to check."""


def _to_delivery(message: pulsar.Message) -> Delivery:
    message_id = message.message_id()
    return Delivery(
        body=message.data(),
        properties=message.properties(),
        message_id=str(message_id),
        topic=message.topic_name(),
        partition=message_id.partition(),
        publish_time_ms=message.publish_timestamp(),
        redelivery_count=message.redelivery_count(),
        key=message.partition_key() or None,
        handle=message,
    )


def _to_deliveries(messages: list[pulsar.Message]) -> list[Delivery]:
    return [_to_delivery(message) for message in messages]


class PulsarSource:
    def __init__(
        self,
        settings: Settings,
        consumer_name: str | None = None,
        operation_timeout_seconds: int = 30,
    ) -> None:
        self.settings = settings
        self.consumer_name = consumer_name
        self.operation_timeout_seconds = operation_timeout_seconds
        self._client: pulsar.Client | None = None
        self._consumer: pulsar.Consumer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pulsar-receive")
        self._closed = False

    def _client_options(self) -> dict:
        tuya, tls = self.settings.tuya, self.settings.tls
        url = tuya.resolved_pulsar_url
        options: dict = {
            "authentication": pulsar_authentication(
                tuya.access_id, tuya.access_secret.get_secret_value()
            ),
            "operation_timeout_seconds": self.operation_timeout_seconds,
            "logger": logging.getLogger("pulsar"),
        }
        if url.startswith(("pulsar+ssl://", "https://")):
            options["use_tls"] = True
            options["tls_allow_insecure_connection"] = not tls.verify_certificates
            options["tls_validate_hostname"] = tls.verify_certificates
            if tls.ca_file:
                options["tls_trust_certs_file_path"] = tls.ca_file
        return options

    def _connect(self) -> None:
        tuya, consumer = self.settings.tuya, self.settings.consumer
        self._client = pulsar.Client(tuya.resolved_pulsar_url, **self._client_options())
        self._consumer = self._client.subscribe(
            tuya.topic,
            tuya.subscription,
            consumer_type=pulsar.ConsumerType.Failover,
            receiver_queue_size=consumer.receiver_queue_size,
            consumer_name=self.consumer_name,
            batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(
                min(BATCH_MAX_MESSAGES, consumer.max_in_flight), BATCH_MAX_BYTES, POLL_MILLIS
            ),
        )

    async def start(self) -> None:
        tuya = self.settings.tuya
        if not self.settings.tls.verify_certificates and tuya.resolved_pulsar_url.startswith(
            "pulsar+ssl"
        ):
            log.warning(
                "TLS certificate verification is OFF (tls.insecure): do not use in production"
            )
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except pulsar.AuthenticationError as exc:
            await self.close()
            raise SourceUnavailable(
                auth_failure_hint(tuya.access_id, tuya.resolved_pulsar_url, tuya.topic)
            ) from exc
        except pulsar.PulsarException as exc:
            await self.close()
            raise SourceUnavailable(
                f"cannot subscribe to {tuya.topic} at {tuya.resolved_pulsar_url}: {exc}. Check "
                "tuya.region / tuya.pulsar_url, the network path to the broker, TLS settings, and "
                "that the message service is enabled for this environment "
                f"({tuya.environment})."
            ) from exc
        log.info(
            "subscribed",
            url=tuya.resolved_pulsar_url,
            topic=tuya.topic,
            subscription=tuya.subscription,
            type="Failover",
        )

    async def receive_batch(self) -> list[Delivery]:
        consumer = self._consumer
        if consumer is None:
            return []
        loop = asyncio.get_running_loop()
        messages = await loop.run_in_executor(self._executor, consumer.batch_receive)
        return _to_deliveries(messages) if messages else []

    def acknowledge(self, delivery: Delivery) -> None:
        if self._consumer is None:
            return
        try:
            self._consumer.acknowledge(delivery.handle)
        except pulsar.PulsarException as exc:
            # Not lost: the broker redelivers it, and the dedupe cache skips finished handlers.
            log.warning("acknowledgement failed", message_id=delivery.message_id, error=str(exc))

    def connected(self) -> bool:
        return self._consumer is not None and self._consumer.is_connected()

    async def close(self) -> None:
        """Idempotent: a failed start closes, and the daemon closes again on its way out."""
        consumer, client = self._consumer, self._client
        self._consumer = self._client = None
        if self._closed:
            return
        self._closed = True

        def close_all() -> None:
            for closable in (consumer, client):
                if closable is None:
                    continue
                try:
                    closable.close()
                except pulsar.PulsarException as exc:
                    log.info("close failed", error=str(exc))

        await asyncio.get_running_loop().run_in_executor(self._executor, close_all)
        self._executor.shutdown(wait=False)
