"""A real webhook receiver for the tests and the benchmark: aiohttp on 127.0.0.1, in its own
thread (so it outlives each test's ``asyncio.run``) or, with ``python -m``, its own process.

It checks Standard Webhooks signatures as a receiver would, with its own code written from the
spec (https://www.standardwebhooks.com): the three ``webhook-*`` headers, a timestamp within five
minutes of its clock, and HMAC-SHA256 over ``{id}.{timestamp}.{raw body}`` with the key taken from
the ``whsec_`` secret (base64) or the plain secret's UTF-8 bytes, compared in constant time
against every ``v1,`` entry. It does not import the handler's signer.

Scripted answers (``answer``) make it fail N times with 500, answer 429 with ``Retry-After``,
400 with a body, or answer late, for the next requests or only for one device's events.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import random
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.servers import ThreadedAiohttpServer

TOLERANCE_SECONDS = 300


def receiver_key(secret: str) -> bytes:
    """The spec's key: a ``whsec_`` secret is base64 of the key; any other is its UTF-8 bytes."""
    if secret[:6] == "whsec_":
        return base64.b64decode(secret[6:])
    return secret.encode()


def verify_standard_webhook(
    secret: str, headers: Any, body: bytes, now: float, tolerance: int = TOLERANCE_SECONDS
) -> str | None:
    """None when the request is authentic and fresh, else why not."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent_at = int(stamp)
    except ValueError:
        return "webhook-timestamp is not an integer"
    if now - sent_at > tolerance:
        return "stale timestamp"
    if sent_at - now > tolerance:
        return "timestamp in the future"
    mac = hmac.new(receiver_key(secret), digestmod=hashlib.sha256)
    for part in (msg_id.encode(), b".", stamp.encode(), b".", body):
        mac.update(part)
    expected = base64.b64encode(mac.digest())
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return None
    return "no valid v1 signature"


def devices_of(payload: Any) -> list[str]:
    """Device ids of a body: one event object, or an array of them (batching)."""
    events = payload if isinstance(payload, list) else [payload]
    return [
        str(item.get("event", {}).get("device_id"))
        for item in events
        if isinstance(item, dict) and isinstance(item.get("event"), dict)
    ]


@dataclass
class Answer:
    """A scripted answer: ``times`` requests (None: every one), optionally only for a device."""

    status: int
    times: int | None = 1
    device: str | None = None
    body: str = ""
    retry_after: str | Callable[[], str] | None = None  # a callable is asked when answering
    delay: float = 0.0


@dataclass
class Request:
    """Every request that reached the receiver, whatever the answer."""

    at: float
    status: int
    webhook_id: str | None
    devices: list[str]


@dataclass
class Accepted:
    at: float
    webhook_id: str | None
    timestamp: str | None
    headers: dict[str, str]
    body: bytes
    payload: Any


@dataclass
class Rejected:
    at: float
    reason: str
    webhook_id: str | None


@dataclass
class WebhookReceiver(ThreadedAiohttpServer):
    thread_name = "webhook-receiver"

    secret: str | None = None
    delay: float = 0.0
    jitter: float = 0.0  # up to this much extra delay, at random, per request
    port: int = 0
    clock: Any = time.time
    ssl_context: ssl.SSLContext | None = None
    answers: list[Answer] = field(default_factory=list)
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(11)

    # -- control, from the test's thread ---------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    def answer(self, status: int, times: int | None = 1, **details: Any) -> None:
        with self._lock:
            self.answers.append(Answer(status, times, **details))

    def clear_answers(self) -> None:
        with self._lock:
            self.answers.clear()

    def ids(self) -> list[str]:
        """Event ids in arrival order, batches unrolled."""
        with self._lock:
            bodies = [a.payload for a in self.accepted]
        return [
            item["id"] for body in bodies for item in (body if isinstance(body, list) else [body])
        ]

    def by_device(self) -> dict[str, list[str]]:
        order: dict[str, list[str]] = {}
        with self._lock:
            bodies = [a.payload for a in self.accepted]
        for body in bodies:
            for item in body if isinstance(body, list) else [body]:
                order.setdefault(item["event"]["device_id"], []).append(item["id"])
        return order

    # -- the server, in its own thread -------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        app.router.add_get("/_report", self._report)
        return app

    def _pick(self, devices: list[str]) -> Answer | None:
        with self._lock:
            for answer in self.answers:
                if answer.times == 0:
                    continue
                if answer.device is not None and answer.device not in devices:
                    continue
                if answer.times is not None:
                    answer.times -= 1
                return answer
        return None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.monotonic()
        msg_id = request.headers.get("webhook-id")
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.secret is not None:
                problem = verify_standard_webhook(self.secret, request.headers, body, self.clock())
                if problem is not None:
                    with self._lock:
                        self.rejected.append(Rejected(at, problem, msg_id))
                        self.requests.append(Request(at, 401, msg_id, []))
                    return web.Response(status=401, text=problem)
            payload = json.loads(body)
            devices = devices_of(payload)
            scripted = self._pick(devices)
            delay = self.delay + (scripted.delay if scripted else 0.0)
            if self.jitter:
                delay += self._random.random() * self.jitter
            if delay:
                await asyncio.sleep(delay)
            if scripted is not None:
                with self._lock:
                    self.requests.append(Request(at, scripted.status, msg_id, devices))
                retry_after = scripted.retry_after
                if callable(retry_after):
                    retry_after = retry_after()
                headers = {"Retry-After": retry_after} if retry_after else {}
                return web.Response(status=scripted.status, text=scripted.body, headers=headers)
            with self._lock:
                self.requests.append(Request(at, 200, msg_id, devices))
                self.accepted.append(
                    Accepted(
                        at,
                        msg_id,
                        request.headers.get("webhook-timestamp"),
                        dict(request.headers),
                        body,
                        payload,
                    )
                )
            return web.Response(status=200, text="ok")
        finally:
            self.concurrent -= 1

    async def _report(self, request: web.Request) -> web.Response:
        """For the benchmark's separate process: what arrived, per device in order."""
        with self._lock:
            report = {
                "accepted": len(self.accepted),
                "rejected": len(self.rejected),
                "max_concurrent": self.max_concurrent,
            }
        report["by_device"] = self.by_device()
        return web.json_response(report)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.webhook_receiver --delay 0.05``: prints ``PORT <n>``, serves until
    SIGTERM/SIGINT or until its stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--secret", default=None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(secret=args.secret, delay=args.delay, port=args.port).start()
    print(f"PORT {receiver.port}", flush=True)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
