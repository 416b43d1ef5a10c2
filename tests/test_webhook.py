"""The webhook handler against a real HTTP receiver on 127.0.0.1, through the real pipeline.

The receiver (tests/webhook_receiver.py) checks Standard Webhooks signatures with its own code;
the daemon runs in-process on the memory source with the real dead-letter store.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import io
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_support import Harness, decoded_status, in_harness, status_message
from tests.support.pki import make_pki
from tests.support.ports import free_port
from tests.support.servers import serving
from tests.support.settings import make_settings, routes_of
from tests.support.waiting import wait_until
from tests.webhook_receiver import WebhookReceiver, verify_standard_webhook
from tuya_events.config.errors import ConfigError
from tuya_events.config.secrets import secret_values
from tuya_events.handlers import HandlerContext
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.webhook import WebhookHandler, WebhookOptions, parse_retry_after
from tuya_events.handlers.webhook_signing import signature, signing_key
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.redact import REDACTOR

WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef-webhook-key-bytes").decode()
PLAIN = "a plain-text receiver secret, 33 b"


@pytest.fixture
def receivers() -> Iterator[Callable[..., WebhookReceiver]]:
    """Start receivers on free ports; every one is stopped after the test."""
    with serving() as start:
        yield lambda **options: start(WebhookReceiver(**options))


def webhook(url: str, **options: Any) -> WebhookHandler:
    return WebhookHandler("webhook", WebhookOptions.model_validate({"url": url, **options}))


def publish(h: Harness, devices: int, per_device: int, first_seq: int = 0) -> list[str]:
    """Publish round-robin over devices; returns the events' ids (Tuya dataIds) in order."""
    ids = []
    for seq in range(first_seq, first_seq + per_device):
        for index in range(devices):
            device = f"dev{index:02d}"
            h.source.publish(*status_message(device, seq), partition=index % 4, key=device)
            ids.append(f"{device}-{seq}")
    return ids


def expected_order(ids: list[str]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = {}
    for event_id in ids:
        order.setdefault(event_id.rsplit("-", 1)[0], []).append(event_id)
    return order


def run_pipeline(
    tmp_path: Path,
    handler: WebhookHandler,
    scenario: Callable[[Harness], Any],
    retry: dict[str, Any] | None = None,
    max_in_flight: int = 100,
) -> Any:
    """``scenario`` against the daemon with ``handler`` (retries fast, ``retry`` over them)."""
    settings = make_settings(tmp_path, retry=retry or {}, consumer={"max_in_flight": max_in_flight})
    return in_harness(settings, [handler], scenario)


# -- signing ---------------------------------------------------------------------------------


def test_signer_and_receiver_agree_with_the_spec_vector() -> None:
    # The reference vector published with the Standard Webhooks libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, stamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signature(signing_key(secret), msg_id, stamp, body) == expected
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp)}
    ok = verify_standard_webhook(
        secret, {**headers, "webhook-signature": f"v1,bad {expected}"}, body, stamp + 1
    )
    assert ok is None
    tampered = verify_standard_webhook(
        secret, {**headers, "webhook-signature": expected}, body + b" ", stamp + 1
    )
    assert tampered == "no valid v1 signature"


@pytest.mark.parametrize(
    ("handler_secret", "receiver_secret"),
    [
        (WHSEC, WHSEC),
        (PLAIN, PLAIN),
        # whsec_ is decoded to the key: the same bytes as a plain secret give the same signature.
        ("whsec_" + base64.b64encode(PLAIN.encode()).decode(), PLAIN),
    ],
    ids=["whsec", "plain", "whsec-of-plain"],
)
def test_signed_events_pass_the_receivers_check(
    tmp_path: Path,
    receivers: Callable[..., WebhookReceiver],
    handler_secret: str,
    receiver_secret: str,
) -> None:
    receiver = receivers(secret=receiver_secret)

    async def scenario(h: Harness) -> list[str]:
        ids = publish(h, devices=3, per_device=3)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        return ids

    ids = run_pipeline(tmp_path, webhook(receiver.url, secret=handler_secret), scenario)
    assert receiver.rejected == []
    assert sorted(receiver.ids()) == sorted(ids)
    for accepted in receiver.accepted:
        payload = accepted.payload
        assert accepted.webhook_id == payload["id"]  # the event id: stable across retries
        assert abs(int(accepted.timestamp or 0) - time.time()) < 60
        assert accepted.headers["Content-Type"] == "application/json"
        assert payload["type"] == "tuya.status" and payload["schema"] == 1
        device, seq = payload["id"].rsplit("-", 1)
        assert payload["event"]["device_id"] == device
        assert payload["event"]["statuses"][0]["value"] == int(seq)


def test_wrong_secret_is_rejected_with_401_and_dead_lettered(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    receiver = receivers(secret=WHSEC)
    wrong = "whsec_" + base64.b64encode(b"another key entirely, 32 bytes!!").decode()

    async def scenario(h: Harness) -> list[Any]:
        publish(h, devices=1, per_device=1)
        await wait_until(lambda: len(h.source.acknowledged) == 1)
        return h.store.list()

    records = run_pipeline(tmp_path, webhook(receiver.url, secret=wrong), scenario)
    assert [r.reason for r in receiver.rejected] == ["no valid v1 signature"]
    assert receiver.accepted == []
    [record] = records
    assert (record.handler, record.reason, record.attempts) == ("webhook", "http_401", 1)
    assert record.message == "HTTP 401: no valid v1 signature"


@pytest.mark.parametrize(("skew", "accepted"), [(290, True), (310, False)])
def test_receiver_refuses_signatures_older_than_five_minutes(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver], skew: int, accepted: bool
) -> None:
    # The receiver's clock runs ahead, so the handler's fresh timestamp looks that old to it.
    receiver = receivers(secret=WHSEC, clock=lambda: time.time() + skew)

    async def scenario(h: Harness) -> int:
        publish(h, devices=1, per_device=1)
        await wait_until(lambda: len(h.source.acknowledged) == 1)
        return h.store.count()

    dead_letters = run_pipeline(tmp_path, webhook(receiver.url, secret=WHSEC), scenario)
    assert len(receiver.accepted) == int(accepted)
    assert [r.reason for r in receiver.rejected] == ([] if accepted else ["stale timestamp"])
    assert dead_letters == int(not accepted)


# -- outcomes --------------------------------------------------------------------------------


def test_status_classification_against_a_real_server(
    receivers: Callable[..., WebhookReceiver],
) -> None:
    receiver = receivers()
    handler = webhook(receiver.url)
    cases = {  # status -> (retryable, infrastructure)
        301: (False, False),
        400: (False, False),
        404: (False, False),
        408: (True, True),  # a slow or rate-limiting receiver is an outage
        410: (False, False),
        429: (True, True),
        500: (True, True),
        503: (True, True),
    }
    outcomes: dict[int, HandlerError] = {}

    async def scenario() -> None:
        await handler.start()
        try:
            for status in cases:
                receiver.answer(status, body=f"answer {status}")
                event, delivery = decoded_status()
                with pytest.raises(HandlerError) as raised:
                    await handler.handle(event, delivery)
                outcomes[status] = raised.value
            await handler.handle(*decoded_status())  # no scripted answer left: 200
        finally:
            await handler.stop()

    asyncio.run(scenario())
    for status, (retryable, infrastructure) in cases.items():
        error = outcomes[status]
        assert error.reason == f"http_{status}"
        assert (error.retryable, error.infrastructure) == (retryable, infrastructure), status
        assert error.message.startswith(f"HTTP {status}: answer {status}")
    assert len(receiver.accepted) == 1


def test_500_twice_then_success_is_delivered_once(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    receiver = receivers(secret=WHSEC)
    receiver.answer(500, times=2, device="dev01", body="try later")

    async def scenario(h: Harness) -> tuple[list[str], int]:
        ids = publish(h, devices=3, per_device=2)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        return ids, h.store.count()

    ids, dead_letters = run_pipeline(tmp_path, webhook(receiver.url, secret=WHSEC), scenario)
    assert dead_letters == 0
    assert sorted(receiver.ids()) == sorted(ids)  # each exactly once
    attempts = [r for r in receiver.requests if r.devices == ["dev01"]]
    assert [r.status for r in attempts] == [500, 500, 200, 200]
    assert {r.webhook_id for r in attempts[:3]} == {"dev01-0"}  # the same id on every retry
    assert receiver.by_device() == expected_order(ids)


def retry_pause(receiver: WebhookReceiver, device: str) -> float:
    first, second = [r for r in receiver.requests if device in r.devices][:2]
    assert (first.status, second.status) == (429, 200)
    return second.at - first.at


@pytest.mark.parametrize(
    ("retry_after", "max_retry_after", "at_least", "below"),
    [
        (lambda: "1", "5m", 0.95, 3.0),  # delta-seconds, honoured
        # An HTTP-date 2 s after the answer, in whole seconds: 1-2 s of pause.
        (lambda: email.utils.formatdate(time.time() + 2, usegmt=True), "5m", 0.95, 3.5),
        (lambda: "3600", "300ms", 0.25, 2.0),  # capped by max_retry_after
    ],
    ids=["seconds", "http-date", "capped"],
)
def test_429_retry_after_is_honoured_and_capped(
    tmp_path: Path,
    receivers: Callable[..., WebhookReceiver],
    retry_after: Callable[[], str],
    max_retry_after: str,
    at_least: float,
    below: float,
) -> None:
    receiver = receivers()
    receiver.answer(429, device="dev00", retry_after=retry_after, body="slow down")
    handler = webhook(receiver.url, max_retry_after=max_retry_after)

    async def scenario(h: Harness) -> int:
        ids = publish(h, devices=2, per_device=1)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        return h.store.count()

    # The pipeline caps a Retry-After at retry.max_backoff: give it room.
    assert run_pipeline(tmp_path, handler, scenario, retry={"max_backoff": "10s"}) == 0
    assert at_least <= retry_pause(receiver, "dev00") < below
    assert sorted(receiver.ids()) == ["dev00-0", "dev01-0"]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now) == 0.0  # RFC 850, past
    for unreadable in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024 00:00:00"):
        assert parse_retry_after(unreadable, now) is None, unreadable


def test_400_is_dead_lettered_with_status_and_excerpt_and_the_loop_goes_on(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    receiver = receivers()
    answer = "field 'statuses' rejected: " + "x" * 300
    receiver.answer(400, times=None, device="dev02", body=answer)

    async def scenario(h: Harness) -> tuple[list[str], list[Any]]:
        ids = publish(h, devices=4, per_device=3)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        more = publish(h, devices=4, per_device=1, first_seq=3)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids) + len(more))
        return ids + more, h.store.list()

    ids, records = run_pipeline(tmp_path, webhook(receiver.url), scenario)
    assert sorted(r.device_id for r in records) == ["dev02"] * 4
    for record in records:
        assert (record.reason, record.attempts, record.handler) == ("http_400", 1, "webhook")
        assert record.message == f"HTTP 400: {answer[:200]}"
    delivered = [event_id for event_id in ids if not event_id.startswith("dev02")]
    assert receiver.ids() == [i for i in receiver.ids() if not i.startswith("dev02")]
    assert sorted(receiver.ids()) == sorted(delivered)


def test_receiver_down_is_retried_as_infrastructure_and_delivered_once_it_is_up(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    port = free_port()
    handler = webhook(f"http://127.0.0.1:{port}/hook")
    receiver = WebhookReceiver(port=port)

    async def scenario(h: Harness) -> tuple[list[str], int]:
        ids = publish(h, devices=2, per_device=2)
        # max_attempts is 3: far more refused attempts than that, and still no dead letter.
        await wait_until(lambda: h.outcomes("webhook", "retry") >= 10)
        assert h.source.acknowledged == [] and h.store.count() == 0
        await asyncio.to_thread(receiver.start)
        try:
            await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        finally:
            await asyncio.to_thread(receiver.stop)
        return ids, h.store.count()

    ids, dead_letters = run_pipeline(
        tmp_path, handler, scenario, retry={"infrastructure_max_time": "30s"}
    )
    assert dead_letters == 0
    assert receiver.by_device() == expected_order(ids)


@pytest.mark.parametrize("outage", ["refused", "too_slow"])
def test_outage_longer_than_infrastructure_max_time_is_dead_lettered(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver], outage: str
) -> None:
    port = free_port() if outage == "refused" else receivers(delay=0.5).port
    reason = "network_error" if outage == "refused" else "timeout"

    async def scenario(h: Harness) -> list[Any]:
        publish(h, devices=1, per_device=1)
        await wait_until(lambda: len(h.source.acknowledged) == 1)
        return h.store.list()

    [record] = run_pipeline(
        tmp_path,
        webhook(f"http://127.0.0.1:{port}/hook", timeout="100ms"),
        scenario,
        retry={"infrastructure_max_time": "300ms"},
    )
    assert record.reason == reason
    assert record.attempts > 1  # retried as an outage, not given up on at once
    if outage == "too_slow":
        assert record.message == f"no complete answer from http://127.0.0.1:{port} within 0.1s"
    else:
        assert f"127.0.0.1:{port}" in record.message


def test_tls_is_verified_against_ca_file(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    pki = make_pki(tmp_path, "127.0.0.1", "receiver")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(pki.cert, pki.key)
    receiver = receivers(ssl_context=server_context)
    outcomes: dict[str, Any] = {}

    async def attempt(label: str, handler: WebhookHandler) -> None:
        await handler.start()
        try:
            await handler.handle(*decoded_status(seq=len(outcomes)))
            outcomes[label] = "delivered"
        except HandlerError as error:
            outcomes[label] = error
        finally:
            await handler.stop()

    async def scenario() -> None:
        await attempt("system CAs", webhook(receiver.url))
        await attempt("ca_file", webhook(receiver.url, ca_file=str(pki.ca)))
        await attempt("verify off", webhook(receiver.url, verify_tls=False))

    asyncio.run(scenario())
    refused = outcomes["system CAs"]
    assert isinstance(refused, HandlerError)
    assert (refused.reason, refused.infrastructure) == ("network_error", True)
    assert "certificate" in refused.message.lower()
    assert outcomes["ca_file"] == outcomes["verify off"] == "delivered"
    assert len(receiver.accepted) == 2


# -- concurrency and batching ------------------------------------------------------------------


def test_order_per_device_is_kept_under_concurrency(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    receiver = receivers(secret=WHSEC, jitter=0.01)

    async def scenario(h: Harness) -> list[str]:
        ids = publish(h, devices=16, per_device=12)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        return ids

    handler = webhook(receiver.url, secret=WHSEC, max_concurrency=6)
    ids = run_pipeline(tmp_path, handler, scenario, max_in_flight=64)
    assert receiver.by_device() == expected_order(ids)
    assert 2 <= receiver.max_concurrent <= 6  # concurrent, and bounded by max_concurrency


def test_waiting_for_a_free_slot_does_not_count_against_the_timeout(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    # One request at a time, each answered in 0.15 s: the fourth waits 0.45 s for its turn,
    # longer than the 0.3 s timeout, which bounds only its own request.
    receiver = receivers(delay=0.15)
    handler = webhook(receiver.url, max_concurrency=1, timeout="300ms")

    async def scenario(h: Harness) -> tuple[int, float]:
        ids = publish(h, devices=4, per_device=1)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        retries = h.outcomes("webhook", "retry")
        return h.store.count(), retries

    assert run_pipeline(tmp_path, handler, scenario) == (0, 0)
    assert receiver.max_concurrent == 1 and len(receiver.accepted) == 4


def batch_webhook_id(ids: list[str]) -> str:
    return "batch_" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]


def test_batches_are_arrays_acked_only_after_their_request_succeeded(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    receiver = receivers(secret=WHSEC, delay=0.4)
    handler = webhook(
        receiver.url, secret=WHSEC, batch={"max_size": 5, "max_wait": "50ms"}, max_concurrency=8
    )

    async def scenario(h: Harness) -> list[str]:
        ids = publish(h, devices=12, per_device=2)
        await wait_until(lambda: receiver.concurrent > 0)
        await asyncio.sleep(0.1)
        # The first requests are under way but unanswered: nothing may be acknowledged yet.
        assert h.source.acknowledged == [] and receiver.accepted == []
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        return ids

    ids = run_pipeline(tmp_path, handler, scenario)
    assert receiver.rejected == []
    bodies = [a.payload for a in receiver.accepted]
    assert all(isinstance(body, list) and 1 <= len(body) <= 5 for body in bodies)
    assert max(len(body) for body in bodies) > 1
    for accepted in receiver.accepted:
        assert accepted.webhook_id == batch_webhook_id([item["id"] for item in accepted.payload])
    assert sorted(receiver.ids()) == sorted(ids)
    assert receiver.by_device() == expected_order(ids)


def test_a_failed_batch_request_fails_every_event_in_it(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver]
) -> None:
    receiver = receivers()
    receiver.answer(503, times=1, body="restarting")
    handler = webhook(receiver.url, batch={"max_size": 4, "max_wait": "100ms"})

    async def scenario(h: Harness) -> tuple[list[str], int, float]:
        ids = publish(h, devices=4, per_device=1)
        await wait_until(lambda: len(h.source.acknowledged) == len(ids))
        retries = h.outcomes("webhook", "retry")
        return ids, h.store.count(), retries

    ids, dead_letters, retries = run_pipeline(tmp_path, handler, scenario)
    failed = receiver.requests[0]
    assert (failed.status, sorted(failed.devices)) == (503, ["dev00", "dev01", "dev02", "dev03"])
    assert retries == 4  # each event of the failed batch was retried by the pipeline
    assert dead_letters == 0
    assert sorted(receiver.ids()) == sorted(ids)


def test_stop_flushes_pending_batches(receivers: Callable[..., WebhookReceiver]) -> None:
    receiver = receivers()
    handler = webhook(receiver.url, batch={"max_size": 100, "max_wait": "30s"})

    async def scenario() -> None:
        await handler.start()
        calls = [asyncio.create_task(handler.handle(*decoded_status(f"dev{i}"))) for i in range(3)]
        await asyncio.sleep(0.1)
        assert receiver.requests == [] and not any(call.done() for call in calls)
        await handler.stop()
        assert all(call.done() and call.exception() is None for call in calls)

    asyncio.run(scenario())
    [accepted] = receiver.accepted
    assert [item["event"]["device_id"] for item in accepted.payload] == ["dev0", "dev1", "dev2"]


# -- secrets and configuration ---------------------------------------------------------------


def test_no_secret_in_any_log_line_or_dead_letter(
    tmp_path: Path, receivers: Callable[..., WebhookReceiver], captured_logs: io.StringIO
) -> None:
    token = "tok-3f9a0c1e7b2d4a6c8e0f"
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(WHSEC + "\n")
    receiver = receivers(secret=WHSEC)
    # A careless receiver that echoes credentials in its error answers.
    echo = f"denied: secret {WHSEC} key {WHSEC[6:]} auth Bearer {token}"
    receiver.answer(500, times=1, device="dev00", body=echo)
    receiver.answer(400, times=None, device="dev01", body=echo)
    settings = make_settings(
        tmp_path,
        [
            {
                "type": "webhook",
                "url": receiver.url,
                "secret_file": str(secret_file),
                "headers": {"Authorization": f"Bearer {token}"},
            }
        ],
    )
    REDACTOR.add(secret_values(settings))  # as `tuya-events run` does
    [route] = routes_of(settings)
    assert isinstance(route.handler, WebhookHandler)

    async def scenario() -> list[Any]:
        async with Harness(settings, [route.handler]) as h:
            ids = publish(h, devices=2, per_device=1)
            await wait_until(lambda: len(h.source.acknowledged) == len(ids))
            return h.store.list()

    [record] = asyncio.run(scenario())
    assert receiver.rejected == [] and receiver.ids() == ["dev00-0"]  # the secret_file works
    assert record.reason == "http_400" and "[REDACTED]" in record.message
    text = record.message + repr(record.as_dict(include_body=True))
    lines = captured_logs.getvalue().splitlines()
    assert any("handler is down" in line and "http_500" in line for line in lines)
    assert any("message dead-lettered" in line and "http_400" in line for line in lines)
    for leak in (WHSEC, WHSEC[6:], token):
        assert leak not in text
        assert not [line for line in lines if leak in line]


def test_config_errors_name_the_key_path(tmp_path: Path) -> None:
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")
    bad = [
        {"type": "webhook"},
        {"type": "webhook", "name": "b", "url": "ftp://example.com/", "timeout": "0s"},
        {
            "type": "webhook",
            "name": "c",
            "url": "https://example.com/h",
            "max_concurrency": 0,
            "batch": {"max_size": 0, "max_wait": "soon"},
        },
        {
            "type": "webhook",
            "name": "d",
            "url": "https://example.com/h",
            "secret": "whsec_not*base64",
            "headers": {"webhook-signature": "x", "Bad Name": "y"},
        },
        {
            "type": "webhook",
            "name": "e",
            "url": "https://example.com/h",
            "ca_file": str(tmp_path / "missing.pem"),
            "urll": "typo",
        },
        {"type": "webhook", "name": "f", "url": "https://example.com/h", "ca_file": str(not_pem)},
    ]
    settings = make_settings(tmp_path, bad)
    with pytest.raises(ConfigError) as raised:
        routes_of(settings)
    paths = {path for path, _ in raised.value.problems}
    assert {
        "handlers[0].url",
        "handlers[1].url",
        "handlers[1].timeout",
        "handlers[2].max_concurrency",
        "handlers[2].batch.max_size",
        "handlers[2].batch.max_wait",
        "handlers[3].secret",
        "handlers[3].headers",
        "handlers[4].ca_file",
        "handlers[4].urll",
        "handlers[5].ca_file",
    } <= paths
    assert "not*base64" not in raised.value.render()
    good = {"type": "webhook", "url": "https://example.com/h", "secret": WHSEC}
    settings = make_settings(tmp_path, [good])
    [route] = routes_of(settings)
    assert isinstance(route.handler, WebhookHandler) and route.handler.timeout is None


def test_requests_are_counted_by_status_class(
    receivers: Callable[..., WebhookReceiver], tmp_path: Path
) -> None:
    receiver = receivers()
    metrics = Metrics()
    context = HandlerContext(make_settings(tmp_path), metrics)
    handler = WebhookHandler("hook", WebhookOptions(url=receiver.url), context)
    receiver.answer(503)
    event, delivery = decoded_status()

    async def scenario() -> None:
        await handler.start()
        try:
            with pytest.raises(HandlerError):
                await handler.handle(event, delivery)
            await handler.handle(event, delivery)
        finally:
            await handler.stop()

    asyncio.run(scenario())
    counted = {
        cls: metrics.webhook_requests.labels("hook", cls)._value.get() for cls in ("2xx", "5xx")
    }
    assert counted == {"2xx": 1, "5xx": 1}
