"""Tuya's message service over the native Pulsar protocol (Apache's ``pulsar-client``).

The C++ client does the I/O on its own threads; ``batch_receive`` runs on one worker thread of
ours, so the event loop gets messages a batch at a time (one thread hop per batch, not per
message). Failover subscription: per partition one active consumer, others hot standbys, and
partitions arrive in order, so finished prefixes can be acknowledged cumulatively (``acks``).

When another instance joins, the broker moves partitions to it (consumers sorted by name,
partition ``p`` to the ``p % n``-th) and, after its ``activeConsumerFailoverDelayTimeMillis``,
redelivers each moved partition from its first unacknowledged message. We are not told (the
binding has no consumer event listener), so what we still hold for a moved partition is handled
here too; it is at most ``receiver_queue_size`` per partition (the multi-topics consumer gives
each partition consumer that many permits) plus what is in flight. A small queue keeps the
window short (benchmarks/handover.py, README "Several instances").

On the per-message path we use the binding's own objects (``_pulsar.Consumer`` and
``_pulsar.Message``) rather than the ``pulsar`` wrappers: the wrappers add a Python object per
message and a Python call per accessor, 2.5-3 us of CPU per message in all (benchmarks/README.md).
The accessors have the same names on both, so everything else works with either.

Tuya's notices (``tuya.notices``) come on a topic of their own, read by a second consumer on the
same subscription name rather than by one multi-topics consumer, so that:

- the event consumer, its acknowledgements and its memory bound stay exactly as they are.
  Notices are acknowledged one by one on their own consumer and never enter :class:`PrefixAcks`,
  which tells partitions apart by number only (a notice topic's partition 0 would be mixed
  with the events' partition 0);
- a project without the notice topic (or without the right to read it) loses the notices only:
  a multi-topics subscribe fails as a whole;
- a notice does not queue behind the event backlog it reports: the receive thread takes the
  notices every :data:`NOTICE_POLL_SECONDS` whatever the events do, at most
  :data:`NOTICE_BATCH` at a time, from a receiver queue of that size. So a batch holds at most
  that many messages more than before, and per-device order is untouched (notices carry no
  device id, so they never wait in a device's queue, nor a device in theirs).

A refused or timed-out notice subscription is logged at warning and not tried again until the
next start; a broker that neither accepts nor refuses it delays the start by the operation
timeout once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import _pulsar
import pulsar

from tuya_events.config.settings import Settings
from tuya_events.config.transport_security import TLS_SCHEMES
from tuya_events.delivery import Delivery
from tuya_events.observability.logging import get_logger, pulsar_client_logger
from tuya_events.transport.acks import PrefixAcks
from tuya_events.tuya.auth import auth_failure_hint, pulsar_authentication

log = get_logger("tuya_events.transport.pulsar")

BATCH_MAX_MESSAGES = 500
BATCH_MAX_BYTES = 8 * 1024 * 1024
POLL_MILLIS = 100
NOTICE_BATCH = 10  # notices per poll, and the notice consumer's receiver queue
NOTICE_POLL_SECONDS = 0.5
NOTICE_WAIT_MILLIS = 1  # a notice poll waits this long at most: the receive thread is shared


class SourceUnavailable(Exception):
    """The message service refused us or cannot be reached; the text says what to check."""


def _reachable(url: str, timeout: float = 3.0) -> bool:
    parsed = urlsplit(url)
    if not parsed.hostname:
        return False
    port = parsed.port or (6651 if parsed.scheme == "pulsar+ssl" else 6650)
    try:
        with socket.create_connection((parsed.hostname, port), timeout):
            return True
    except OSError:
        return False


def binding_consumer(consumer: pulsar.Consumer) -> Any:
    """The ``_pulsar.Consumer`` behind the wrapper, or the wrapper if a release renames it.

    ``pulsar.Consumer._consumer`` is private, but has not changed since the Python client moved
    to its own repository (2022); its public ``acknowledge`` takes ``_pulsar.Message``. A test
    pins that the installed release still has it, so a rename shows up as a failure, not as a
    slowdown.
    """
    inner = getattr(consumer, "_consumer", None)
    return inner if isinstance(inner, _pulsar.Consumer) else consumer


class PulsarDelivery(Delivery):
    """A :class:`Delivery` that reads its rarely needed fields from the message when first asked.

    Every message needs its body, properties, partition and publish time; the message id as
    text, the topic, the redelivery count and the partition key are read only for dead letters,
    logs and some handlers. Each accessor of pulsar-client costs 0.3-1 us, so building all of
    them eagerly cost 6 us per message, as much as decrypting it.
    """

    __slots__ = ("_message_id",)

    def __init__(self, message: _pulsar.Message | pulsar.Message) -> None:  # not the dataclass's
        self.handle = message
        self.body = message.data()
        self.properties = message.properties()
        self.partition = message.message_id().partition()
        self.publish_time_ms = message.publish_timestamp()
        self.dead_letter_id = None
        self.finished = False
        self._message_id: str | None = None

    @property
    def message_id(self) -> str:  # type: ignore[override]  # read-only, read lazily
        if self._message_id is None:
            self._message_id = str(self.handle.message_id())
        return self._message_id

    @property
    def topic(self) -> str:  # type: ignore[override]  # read-only, read lazily
        topic: str = self.handle.topic_name()
        return topic

    @property
    def redelivery_count(self) -> int:  # type: ignore[override]  # read-only, read lazily
        count: int = self.handle.redelivery_count()
        return count

    @property
    def key(self) -> str | None:  # type: ignore[override]  # read-only, read lazily
        return self.handle.partition_key() or None


class NoticeDelivery(PulsarDelivery):
    """A message of the notice topic: acknowledged on the notice consumer, one by one."""

    __slots__ = ()


class PulsarSource:
    def __init__(self, settings: Settings, consumer_name: str | None = None) -> None:
        self.settings = settings
        self.consumer_name = consumer_name
        self.operation_timeout_seconds = max(1, round(settings.consumer.operation_timeout))
        self._client: pulsar.Client | None = None
        self._consumer: pulsar.Consumer | None = None
        self._binding: Any = None  # _pulsar.Consumer: receives and acknowledges
        self._notice_consumer: pulsar.Consumer | None = None
        self._notice_binding: Any = None
        self._next_notice_poll = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pulsar-receive")
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prefix_acks: PrefixAcks | None = None
        self._releaser: asyncio.Task[None] | None = None
        if settings.consumer.acknowledgement == "cumulative":
            self._prefix_acks = PrefixAcks(
                self._acknowledge_cumulative,
                self._acknowledge_one,
                max_waiting=settings.consumer.max_in_flight,
            )

    def _client_options(self) -> dict[str, Any]:
        tuya, tls = self.settings.tuya, self.settings.tls
        url = tuya.resolved_pulsar_url
        options: dict[str, Any] = {
            "authentication": pulsar_authentication(
                tuya.access_id, tuya.access_secret.get_secret_value()
            ),
            "operation_timeout_seconds": self.operation_timeout_seconds,
            "logger": pulsar_client_logger(),
        }
        if urlsplit(url).scheme.lower() in TLS_SCHEMES:
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
        self._binding = binding_consumer(self._consumer)
        if tuya.notices:
            self._subscribe_notices()

    def _subscribe_notices(self) -> None:
        """After the events: a refusal here costs the notices, never the events."""
        tuya, client = self.settings.tuya, self._client
        assert client is not None
        topic = tuya.resolved_notice_topic
        try:
            self._notice_consumer = client.subscribe(
                topic,
                tuya.subscription,
                consumer_type=pulsar.ConsumerType.Failover,
                receiver_queue_size=NOTICE_BATCH,
                consumer_name=self.consumer_name,
                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(
                    NOTICE_BATCH, BATCH_MAX_BYTES, NOTICE_WAIT_MILLIS
                ),
            )
        except pulsar.PulsarException as exc:
            log.warning(
                "cannot subscribe to Tuya's notice topic; consuming events without notices",
                topic=topic,
                subscription=tuya.subscription,
                error=f"{type(exc).__name__}: {exc}",
                hint=(
                    "Tuya documents {access_id}/out/notice (enable 'Subscribe to Pulsar Alert' "
                    "in the console's message service); tuya.notice_topic names another, "
                    "tuya.notices: false stops trying"
                ),
            )
            return
        self._notice_binding = binding_consumer(self._notice_consumer)
        log.info("subscribed to notices", topic=topic, subscription=tuya.subscription)

    @property
    def notices_subscribed(self) -> bool:
        return self._notice_binding is not None

    async def start(self) -> None:
        """Subscribe. Verification being off, or plaintext, is said once at start by the
        daemon (:mod:`tuya_events.config.transport_security`), not here."""
        tuya = self.settings.tuya
        url = tuya.resolved_pulsar_url
        self._loop = asyncio.get_running_loop()
        try:
            await self._loop.run_in_executor(self._executor, self._connect)
        except pulsar.PulsarException as exc:
            await self.close()
            raise SourceUnavailable(self._explain(exc)) from exc
        log.info(
            "subscribed", url=url, topic=tuya.topic, subscription=tuya.subscription, type="Failover"
        )
        if self._prefix_acks is not None:
            self._releaser = self._loop.create_task(self._release_held_back())

    async def _release_held_back(self) -> None:
        """Finished messages behind a slow one are acknowledged within about a second."""
        prefix_acks = self._prefix_acks
        assert prefix_acks is not None
        while True:
            await asyncio.sleep(prefix_acks.max_wait / 2)
            prefix_acks.release_held_back()

    def _explain(self, exc: Exception) -> str:
        """Why subscribing failed, in terms of what the user can check.

        A refused login does not surface as an authentication error: pulsar-client retries until
        its operation timeout. A timeout from a broker whose port answers therefore most likely
        means the credentials (or topic) were refused.
        """
        tuya = self.settings.tuya
        url = tuya.resolved_pulsar_url
        hint = auth_failure_hint(tuya.access_id, url, tuya.topic)
        if isinstance(exc, pulsar.AuthenticationError):
            return hint
        tls_problem = self._tls_problem(url)
        if tls_problem:
            return tls_problem
        if _reachable(url):
            return (
                f"the broker at {url} is reachable but did not accept the subscription "
                f"({type(exc).__name__}: {exc}). This usually means the login was refused. {hint}"
            )
        return (
            f"cannot reach the Tuya message service at {url} ({type(exc).__name__}: {exc}). "
            "Check tuya.region / tuya.pulsar_url, DNS and the network path (outbound TCP to that "
            "port), and the TLS settings (tls.ca_file)."
        )

    def _tls_problem(self, url: str) -> str | None:
        """A certificate the client would refuse looks like a timeout too: check it ourselves."""
        tls = self.settings.tls
        parsed = urlsplit(url)
        if parsed.scheme != "pulsar+ssl" or not parsed.hostname or not tls.verify_certificates:
            return None
        context = ssl.create_default_context(cafile=tls.ca_file)
        try:
            with (
                socket.create_connection((parsed.hostname, parsed.port or 6651), 3.0) as raw,
                context.wrap_socket(raw, server_hostname=parsed.hostname),
            ):
                return None
        except ssl.SSLCertVerificationError as exc:
            return (
                f"the TLS certificate of {url} could not be verified ({exc.verify_message}). "
                "If the broker uses a private CA, set tls.ca_file to its PEM bundle; "
                "tls.insecure: true turns verification off (never in production)."
            )
        except (OSError, ssl.SSLError):
            return None

    async def receive_batch(self) -> list[Delivery]:
        binding = self._binding
        if binding is None:
            return []
        loop = asyncio.get_running_loop()
        notice_binding = self._notice_binding
        notices: list[Any] = []
        if notice_binding is None:
            messages = await loop.run_in_executor(self._executor, binding.batch_receive)
        else:
            messages, notices = await loop.run_in_executor(
                self._executor, self._receive_with_notices, binding, notice_binding
            )
        if not messages:
            return [NoticeDelivery(message) for message in notices]
        deliveries: list[Delivery] = [PulsarDelivery(message) for message in messages]
        prefix_acks = self._prefix_acks
        if prefix_acks is not None:
            for delivery in deliveries:
                prefix_acks.received(delivery)
        if notices:
            deliveries.extend(NoticeDelivery(message) for message in notices)
        return deliveries

    def _receive_with_notices(self, binding: Any, notice_binding: Any) -> tuple[Any, Any]:
        """On the receive thread: a batch of events, and every so often the waiting notices."""
        messages = binding.batch_receive()
        now = time.monotonic()
        if now < self._next_notice_poll:
            return messages, ()
        self._next_notice_poll = now + NOTICE_POLL_SECONDS
        try:
            return messages, notice_binding.batch_receive()
        except pulsar.PulsarException as exc:
            log.info("receiving notices failed", error=f"{type(exc).__name__}: {exc}")
            return messages, ()

    def acknowledge(self, delivery: Delivery) -> None:
        """Called once per finished message; with cumulative acks, sent at the end of the turn."""
        if delivery.__class__ is NoticeDelivery:
            self._acknowledge_notice(delivery.handle)
            return
        prefix_acks = self._prefix_acks
        if prefix_acks is None:
            self._acknowledge_one(delivery.handle)
        elif prefix_acks.finished(delivery) and self._loop is not None:
            self._loop.call_soon(prefix_acks.flush)

    def _acknowledge_one(self, message: _pulsar.Message) -> None:
        """Asynchronously: the blocking ``acknowledge`` waits for its result, releasing the GIL
        twice a message, which cost 9 us of the event loop's time and a third of the throughput
        (benchmarks/README.md, "async-acks"). The result is the same: pulsar-client groups
        acknowledgements either way and reports a failure to the callback."""
        if self._binding is None:
            return
        try:
            self._binding.acknowledge_async(message, self._acknowledged)
        except pulsar.PulsarException as exc:
            # Not lost: the broker redelivers it, and the dedupe cache skips finished handlers.
            log.warning(
                "acknowledgement failed", message_id=str(message.message_id()), error=str(exc)
            )

    def _acknowledged(self, result: _pulsar.Result) -> None:
        """pulsar-client's callback, perhaps on one of its threads: only a failure is news."""
        if result == _pulsar.Result.Ok:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # Not lost: the broker redelivers it, and the dedupe cache skips finished handlers.
            loop.call_soon_threadsafe(
                lambda: log.warning(
                    "acknowledgement failed; the broker will redeliver", error=str(result)
                )
            )

    def _acknowledge_notice(self, message: _pulsar.Message) -> None:
        if self._notice_binding is None:
            return
        try:
            self._notice_binding.acknowledge(message)
        except pulsar.PulsarException as exc:
            log.warning(
                "acknowledgement of a notice failed; the broker will redeliver it",
                message_id=str(message.message_id()),
                error=str(exc),
            )

    def _acknowledge_cumulative(self, message: _pulsar.Message) -> None:
        if self._binding is None:
            return
        try:
            self._binding.acknowledge_cumulative(message)
        except pulsar.PulsarException as exc:
            log.warning(
                "cumulative acknowledgement failed; the broker will redeliver",
                up_to_message_id=str(message.message_id()),
                error=str(exc),
            )

    def connected(self) -> bool:
        return self._consumer is not None and self._consumer.is_connected()

    async def close(self) -> None:
        """Idempotent: a failed start closes, and the daemon closes again on its way out."""
        if self._releaser is not None:
            self._releaser.cancel()
            self._releaser = None
        if self._prefix_acks is not None and not self._closed:
            self._prefix_acks.flush_all()  # finished messages must not come back after a stop
        consumer, notice_consumer, client = self._consumer, self._notice_consumer, self._client
        self._consumer = self._notice_consumer = self._client = None
        self._binding = self._notice_binding = None
        if self._closed:
            return
        self._closed = True

        def close_all() -> None:
            for closable in (consumer, notice_consumer, client):
                if closable is None:
                    continue
                try:
                    closable.close()
                except pulsar.PulsarException as exc:
                    log.info("close failed", error=str(exc))

        await asyncio.get_running_loop().run_in_executor(self._executor, close_all)
        self._executor.shutdown(wait=False)
