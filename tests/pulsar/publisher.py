"""Publish as Tuya's message service does: encrypted envelope, ``em`` property, device-keyed.

The partition key is the device id, so each device's messages stay in one partition, in order,
as on Tuya's side. The publisher logs in with the broker's service credentials, not the
tenant's: the tenant's pair is the daemon's alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import pulsar

from tuya_events.tuya.auth import pulsar_authentication
from tuya_events.tuya.codec import EM_ECB, TuyaEncoder

from .credentials import TuyaCredentials
from .tenant import TuyaTenant
from .traffic import Outgoing

SEND_TIMEOUT_MS = 60_000  # long enough to ride out a broker restart


def client_logger() -> logging.Logger:
    """The C++ client logs every connection at INFO; route it through logging at WARNING."""
    logger = logging.getLogger("tests.pulsar.client")
    logger.setLevel(logging.WARNING)
    return logger


class TuyaPublisher:
    """A producer on one tenant topic that encrypts with that tenant's secret."""

    def __init__(
        self,
        broker_url: str,
        service_credentials: TuyaCredentials,
        tenant: TuyaTenant,
        topic_name: str = "event",
    ) -> None:
        self.topic = tenant.topic(topic_name)
        self.encoder = TuyaEncoder(tenant.access_id, tenant.access_secret)
        self._client = pulsar.Client(
            broker_url,
            authentication=pulsar_authentication(
                service_credentials.access_id, service_credentials.access_secret
            ),
            logger=client_logger(),
        )
        self._producer = self._client.create_producer(
            self.topic,
            block_if_queue_full=True,
            send_timeout_millis=SEND_TIMEOUT_MS,
        )

    def publish(
        self,
        document: dict[str, Any],
        em: str = EM_ECB,
        device_id: str | None = None,
        protocol: int | None = None,
    ) -> pulsar.MessageId:
        """Encrypt and send one document (protocol 4 or 20 unless given); waits for the
        broker's receipt."""
        body, properties = self.encoder.encode(document, em, protocol)
        return self._producer.send(
            body, properties=properties, partition_key=device_id or _device_of(document)
        )

    def publish_all(self, messages: Iterable[Outgoing]) -> int:
        """Send many, pipelined, in order; raises if any send failed. Returns the count."""
        failures: list[str] = []
        count = 0
        done = threading.Semaphore(0)

        def on_sent(result: pulsar.Result, _message_id: pulsar.MessageId) -> None:
            if result != pulsar.Result.Ok:
                failures.append(str(result))
            done.release()

        for message in messages:
            body, properties = self.encoder.encode(message.document, message.em)
            self._producer.send_async(
                body, on_sent, properties=properties, partition_key=message.device_id
            )
            count += 1
        self._producer.flush()
        for _ in range(count):
            if not done.acquire(timeout=SEND_TIMEOUT_MS / 1000 + 30):
                raise TimeoutError(f"no receipt for some of {count} messages on {self.topic}")
        if failures:
            raise RuntimeError(f"{len(failures)} of {count} sends failed: {failures[:5]}")
        return count

    def close(self) -> None:
        self._producer.close()
        self._client.close()

    def __enter__(self) -> TuyaPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _device_of(document: dict[str, Any]) -> str | None:
    device = document.get("devId")
    if device is None and isinstance(document.get("bizData"), dict):
        device = document["bizData"].get("devId")
    return device
