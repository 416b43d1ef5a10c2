"""Checks 5-6: log in to the message service, subscribe as a standby, wait for one message.

Two connections, because no single one can do both jobs:

- the **login** uses the native protocol, as the daemon does (same URL, ``auth1`` credentials,
  TLS settings): a topic lookup proves the address, the certificate and the key pair, and opens
  no consumer;
- the **subscription** is a Failover consumer on the configured topic and subscription with a
  lower priority than the daemon's (priority level :data:`STANDBY_PRIORITY`, the daemon's is
  0). pulsar-client for Python has no priority setting, so it is made through the message
  service's WebSocket API, which takes ``priorityLevel`` (Tuya runs it beside the native
  endpoint, port 8285).

Pulsar gives each partition of a Failover subscription to one consumer among those with the
highest priority (lowest level): while a daemon is connected the doctor is a standby on every
partition and is given nothing; the daemon's partitions do not move, so it sees no redelivery.
Alone, the doctor is given the messages waiting in the subscription; it takes one, never
acknowledges it, and closes, and the broker gives every unacknowledged message to the next
consumer (a daemon started afterwards). Verified on the test broker (Apache Pulsar 4.0.7);
Tuya does not publish which Pulsar release it runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from tuya_events.config.settings import Settings
from tuya_events.config.transport_security import TLS_SCHEMES
from tuya_events.doctor import fixes
from tuya_events.doctor.daemon_probe import running_daemon
from tuya_events.doctor.network import ProbeError, reach, tls_context
from tuya_events.doctor.report import Report, Result, failed, format_duration, passed, skipped
from tuya_events.openapi.client import ssl_option
from tuya_events.tuya.auth import pulsar_authentication, websocket_headers
from tuya_events.tuya.codec import EM_ECB, EM_GCM, TuyaCodec, encryption_mode, parse_envelope
from tuya_events.tuya.errors import DecodeError
from tuya_events.tuya.regions import REGIONS

LOGIN, SUBSCRIPTION, ARRIVES = "message-login", "message-subscription", "message-arrives"
DECRYPTS, AGE = "message-decrypts", "message-age"
TITLES = {
    LOGIN: "message service login (native protocol, as the daemon)",
    SUBSCRIPTION: "subscription as a standby (Failover, WebSocket API)",
    ARRIVES: "a message arrives",
    DECRYPTS: "the message decrypts",
    AGE: "the message's age",
}
CHECKS = tuple(TITLES)
STANDBY_PRIORITY = 10
CONSUMER_NAME = "tuya-events-doctor"
BACKLOG_NOTE_SECONDS = 300.0
RETENTION_WARN_SECONDS = 3600.0  # Tuya drops unacknowledged messages after about 2 hours
FUTURE_TOLERANCE_SECONDS = 60.0


def quiet_pulsar_logger() -> Any:
    """The C++ client's own lines go nowhere: its console logger writes to stdout (it would
    break ``--json``) and a Python logger is called from the client's threads, even while the
    interpreter exits (which can abort the process). The doctor reports what failed itself."""
    import pulsar  # here: a WebSocket-only install has no pulsar-client

    return pulsar.FileLogger(pulsar.LoggerLevel.Error, os.devnull)


def websocket_base(settings: Settings, given: str | None) -> str | None:
    """The WebSocket API of the configured data center: given, the region's, or the one that
    goes with a ``pulsar_url`` Tuya documents; None for another broker."""
    if given:
        return given
    tuya = settings.tuya
    if tuya.pulsar_url is None:
        return REGIONS[tuya.region or "eu"].websocket_url
    for region in REGIONS.values():
        if region.pulsar_url.rstrip("/") == tuya.pulsar_url.rstrip("/"):
            return region.websocket_url
    return None


def standby_url(base: str, settings: Settings) -> str:
    tuya = settings.tuya
    query = urlencode(
        {
            "subscriptionType": "Failover",
            "priorityLevel": STANDBY_PRIORITY,
            "consumerName": CONSUMER_NAME,
            "receiverQueueSize": 1,
        }
    )
    path = tuya.topic.replace("://", "/", 1)
    return f"{base.rstrip('/')}/ws/v2/consumer/{path}/{tuya.subscription}?{query}"


@dataclass
class Frame:
    """One message as the WebSocket API hands it over."""

    body: bytes
    properties: dict[str, str]
    publish_time: float | None  # epoch seconds
    redelivery_count: int

    @classmethod
    def parse(cls, text: str) -> Frame | None:
        try:
            document = orjson.loads(text)
            body = base64.b64decode(document["payload"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
            return None
        properties = document.get("properties")
        count = document.get("redeliveryCount")
        return cls(
            body,
            {str(k): str(v) for k, v in properties.items()} if isinstance(properties, dict) else {},
            _epoch(document.get("publishTime")),
            count if isinstance(count, int) else 0,
        )


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class MessageChecks:
    def __init__(
        self, settings: Settings, report: Report, wait: float, websocket: str | None = None
    ) -> None:
        self.settings = settings
        self.report = report
        self.wait = wait
        self.websocket = websocket
        tuya = settings.tuya
        self.credentials = (tuya.access_id, tuya.access_secret.get_secret_value())
        self.timeout = float(max(1, round(settings.consumer.operation_timeout)))

    async def run(self) -> None:
        self.report.add(await self._login())
        base = websocket_base(self.settings, self.websocket)
        if base is None:
            why = (
                f"no WebSocket API is known for tuya.pulsar_url {self.settings.tuya.pulsar_url}: "
                "give its address with --websocket-url"
            )
            for check in (SUBSCRIPTION, ARRIVES, DECRYPTS, AGE):
                self.report.add(skipped(check, TITLES[check], why))
            return
        await self._standby(base)

    # -- 5a: the native login -------------------------------------------------------------

    async def _login(self) -> Result:
        import pulsar  # here: a WebSocket-only install has no pulsar-client

        tuya, tls = self.settings.tuya, self.settings.tls
        url = tuya.resolved_pulsar_url
        title = TITLES[LOGIN]
        parsed = urlsplit(url)
        secure = parsed.scheme.lower() in TLS_SCHEMES
        host, port = parsed.hostname or "", parsed.port or (6651 if secure else 6650)
        context = tls_context(tls.verify_certificates, tls.ca_file) if secure else None
        try:
            await reach(host, port, min(self.timeout, 10.0), context)
        except ProbeError as problem:
            return failed(LOGIN, title, str(problem), self._reach_fix(problem))
        try:
            partitions = await asyncio.to_thread(self._lookup, url)
        except pulsar.PulsarException as exc:
            return failed(
                LOGIN,
                title,
                f"{url} is reachable but did not accept the login for topic {tuya.topic} "
                f"({type(exc).__name__}: {exc}); the broker answers a refused key pair this way",
                self._refused_fix(),
            )
        count = f"{partitions} partitions" if partitions > 1 else "one partition"
        return passed(LOGIN, title, f"{url} accepted the key pair; {tuya.topic} has {count}")

    def _lookup(self, url: str) -> int:
        import pulsar

        tuya, tls = self.settings.tuya, self.settings.tls
        access_id, secret = self.credentials
        options: dict[str, Any] = {
            "authentication": pulsar_authentication(access_id, secret),
            "operation_timeout_seconds": int(self.timeout),
            "logger": quiet_pulsar_logger(),
        }
        if urlsplit(url).scheme.lower() in TLS_SCHEMES:
            options["use_tls"] = True
            options["tls_allow_insecure_connection"] = not tls.verify_certificates
            options["tls_validate_hostname"] = tls.verify_certificates
            if tls.ca_file:
                options["tls_trust_certs_file_path"] = tls.ca_file
        client = pulsar.Client(url, **options)
        try:
            return len(client.get_topic_partitions(tuya.topic))
        finally:
            client.close()

    def _reach_fix(self, problem: ProbeError) -> tuple[str, ...]:
        if problem.step == "tls":
            return (
                "if the broker uses a private CA, set tls.ca_file to its PEM bundle; "
                "tls.insecure: true turns verification off (never in production)",
            )
        return (
            "tuya.region (or tuya.pulsar_url) must be the project's data center; the native "
            "endpoint is pulsar+ssl://mqe.tuya<cn|us|eu|in>.com:7285",
            "outbound TCP to that port must be allowed (firewalls often allow only 80/443)",
        )

    def _refused_fix(self) -> tuple[str, ...]:
        tuya = self.settings.tuya
        return (
            *fixes.KEYS,
            f"{fixes.PROJECT} > Message Service: the message service must be enabled for the "
            f"project; the subscription is {tuya.subscription} (tuya.subscription_suffix must "
            "match the console's)",
            f"tuya.environment ({tuya.environment}) must be an environment the message service "
            "has (test reads event-test)",
        )

    # -- 5b and 6: the standby subscription and its first message -------------------------

    async def _standby(self, base: str) -> None:
        access_id, secret = self.credentials
        url = standby_url(base, self.settings)
        title = TITLES[SUBSCRIPTION]
        tuya = self.settings.tuya
        secure = urlsplit(base).scheme.lower() == "wss"
        started = time.time()
        async with aiohttp.ClientSession(trust_env=False) as session:
            try:
                ws = await asyncio.wait_for(
                    session.ws_connect(
                        url,
                        headers=websocket_headers(access_id, secret),
                        ssl=ssl_option(self.settings) if secure else False,
                        autoping=True,
                    ),
                    self.timeout,
                )
            except Exception as exc:  # aiohttp's handshake, network and TLS errors
                self.report.add(self._subscription_failed(base, exc))
                for check in (ARRIVES, DECRYPTS, AGE):
                    self.report.add(skipped(check, TITLES[check], "no subscription (see above)"))
                return
            try:
                self.report.add(
                    passed(
                        SUBSCRIPTION,
                        title,
                        f"{tuya.topic} as {tuya.subscription} at {base}: a standby (priority "
                        f"level {STANDBY_PRIORITY}), so a running daemon keeps every partition",
                    )
                )
                if self.wait <= 0:
                    for check in (ARRIVES, DECRYPTS, AGE):
                        self.report.add(skipped(check, TITLES[check], "--wait 0: not waiting"))
                    return
                frame, closed = await self._first_frame(ws)
            finally:
                await ws.close()  # unacknowledged: the broker redelivers to the next consumer
        if frame is None:
            self.report.add(await self._silence(started, closed))
            for check in (DECRYPTS, AGE):
                self.report.add(skipped(check, TITLES[check], "no message to look at"))
            return
        self.report.add(passed(ARRIVES, TITLES[ARRIVES], self._arrived(frame)))
        self.report.add(self._decrypts(frame))
        self.report.add(self._age(frame))

    async def _first_frame(
        self, ws: aiohttp.ClientWebSocketResponse[bool]
    ) -> tuple[Frame | None, str]:
        """The first message within the wait, never acknowledged; or why none came."""
        deadline = time.monotonic() + self.wait
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = await ws.receive(timeout=remaining)
            except asyncio.TimeoutError:
                break
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = Frame.parse(message.data)
                if frame is not None:
                    return frame, ""
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return None, f"the WebSocket API closed the subscription ({message.extra or ''})"
        return None, ""

    def _subscription_failed(self, base: str, exc: Exception) -> Result:
        title = TITLES[SUBSCRIPTION]
        tuya = self.settings.tuya
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            if exc.status == 401:
                detail = f"{base} refused the key pair (HTTP 401)"
                return failed(SUBSCRIPTION, title, detail, self._refused_fix())
            detail = (
                f"{base} refused to subscribe {tuya.subscription} to {tuya.topic} "
                f"(HTTP {exc.status}: {exc.message})"
            )
            return failed(SUBSCRIPTION, title, detail, self._refused_fix())
        if isinstance(exc, asyncio.TimeoutError):
            detail = f"{base} did not answer within {self.timeout:g}s"
        else:
            detail = f"cannot reach {base} ({type(exc).__name__}: {exc})"
        fix = (
            "the WebSocket API listens beside the native endpoint (wss://mqe.tuya<cn|us|eu|in>"
            ".com:8285): outbound TCP to it must be allowed, or give another with --websocket-url",
        )
        return failed(SUBSCRIPTION, title, detail, fix)

    async def _silence(self, started: float, closed: str) -> Result:
        """No message: the console checklist, unless a local daemon is the one receiving."""
        title = TITLES[ARRIVES]
        daemon = await running_daemon(self.settings)
        waited = f"no message within {format_duration(self.wait)}"
        if closed:
            waited = closed
        checklist = fixes.console_checklist(self.settings.tuya.environment)
        if daemon is None:
            return failed(ARRIVES, title, waited, checklist)
        if daemon.last_message is not None and daemon.last_message >= started - 1:
            ago = format_duration(time.time() - daemon.last_message)
            return passed(
                ARRIVES,
                title,
                f"the running daemon ({daemon.url}) is the active consumer and received a "
                f"message {ago} ago; the doctor, a standby, is given none while it runs",
            )
        last = (
            f"its last message arrived {format_duration(time.time() - daemon.last_message)} ago"
            if daemon.last_message is not None
            else "it has received no message since it started"
        )
        state = "is connected" if daemon.connected else "is not connected to the message service"
        return failed(
            ARRIVES,
            title,
            f"{waited}: the running daemon ({daemon.url}) {state} and {last}",
            checklist,
        )

    def _arrived(self, frame: Frame) -> str:
        again = (
            f", delivered {frame.redelivery_count} times before" if frame.redelivery_count else ""
        )
        return f"one message, left unacknowledged: the next consumer gets it again{again}"

    def _decrypts(self, frame: Frame) -> Result:
        title = TITLES[DECRYPTS]
        codec = TuyaCodec(self.credentials[1])
        try:
            event = codec.decode(frame.body, frame.properties)
        except DecodeError as error:
            return self._undecryptable(codec, frame, error)
        em = encryption_mode(frame.properties)
        what = [em, f"protocol {event.protocol}", event.kind]
        if event.device_id:
            what.append(f"device {event.device_id}")
        return passed(DECRYPTS, title, ", ".join(what))

    def _undecryptable(self, codec: TuyaCodec, frame: Frame, error: DecodeError) -> Result:
        title = TITLES[DECRYPTS]
        said = frame.properties.get("em")
        try:
            mode = encryption_mode(frame.properties)
            data = parse_envelope(frame.body)["data"]
        except DecodeError:
            mode, data = "", None
        other = EM_GCM if mode == EM_ECB else EM_ECB
        if data is not None and _decrypts_as(codec, data, other):
            label = f"em={said}" if said else "no em property (which means aes_ecb)"
            return failed(
                DECRYPTS,
                title,
                f"it is {other} data but carries {label}: {error}",
                (
                    "the message's encryption and its em property disagree; tuya-events follows "
                    "em per message, so it dead-letters such messages (they are kept: "
                    "tuya-events dlq list)",
                    f"check the message service's encryption setting ({fixes.PROJECT} > Message "
                    "Service: AES-GCM) and report it to Tuya with the message's time",
                ),
                reason=error.reason,
            )
        return failed(
            DECRYPTS,
            title,
            f"neither aes_ecb nor aes_gcm decrypts it ({error})",
            (
                "the access secret is the AES key: tuya.access_secret must be the project's "
                "Access Secret, the same project as tuya.access_id",
                "a damaged message is dead-lettered by the daemon and does not stop others",
            ),
            reason=error.reason,
        )

    def _age(self, frame: Frame) -> Result:
        title = TITLES[AGE]
        if frame.publish_time is None:
            return skipped(AGE, title, "the message carries no publish time")
        age = time.time() - frame.publish_time
        if age < -FUTURE_TOLERANCE_SECONDS:
            return failed(
                AGE,
                title,
                f"published {format_duration(-age)} in this machine's future",
                fixes.CLOCK,
                age_seconds=round(age, 3),
            )
        if age >= RETENTION_WARN_SECONDS:
            return failed(
                AGE,
                title,
                f"published {format_duration(age)} ago: it waited that long for a consumer",
                (
                    "Tuya drops unacknowledged messages after about 2 hours: start the daemon "
                    "(tuya-events run); after a longer gap, resync recovers the current state",
                ),
                age_seconds=round(age, 3),
            )
        detail = f"published {format_duration(max(age, 0.0))} ago"
        if age >= BACKLOG_NOTE_SECONDS:
            detail += ": a backlog (nothing consumed it meanwhile)"
        return passed(AGE, title, detail, age_seconds=round(age, 3))


def _decrypts_as(codec: TuyaCodec, data: str, em: str) -> bool:
    try:
        orjson.loads(codec.decrypt_data(data, em))
    except (DecodeError, orjson.JSONDecodeError):
        return False
    return True
