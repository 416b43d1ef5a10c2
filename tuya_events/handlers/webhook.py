"""``type: webhook``: POST each event as JSON to a URL, signed the Standard Webhooks way.

``handle`` returns only after a 2xx answer, so the Tuya message is acknowledged only once the
receiver has it. Failures are classified for the pipeline: network errors, timeouts, 5xx, 408
and 429 are outages (retried for ``retry.infrastructure_max_time``); any other status (3xx, 4xx)
will never work and is dead-lettered at once with the status and the start of the answer.
``Retry-After`` (seconds or an HTTP date) is passed on.

Options::

    url: https://example.com/hooks/tuya       # http:// or https://
    headers: {Authorization: "Bearer ..."}    # sent with every request
    timeout: 10s                              # the whole request, per attempt
    max_concurrency: 64                       # requests at once (one connection each)
    verify_tls: true                          # false only for tests
    ca_file: /etc/ssl/my-ca.pem               # trust this CA instead of the system's
    secret: whsec_...                         # or secret_file: PATH; enables signing
    max_retry_after: 5m                       # cap on a receiver's Retry-After
    batch: {max_size: 100, max_wait: 50ms}    # optional: JSON arrays of events

Signing (when ``secret`` is set) follows the Standard Webhooks spec, see
:mod:`tuya_events.handlers.webhook_signing`: a ``whsec_<base64>`` secret is base64-decoded to
the HMAC key, any other secret is used as its UTF-8 bytes. ``webhook-id`` is the event's id
(Tuya's dataId, else the message id: stable across retries). With batching the body is a JSON
array and ``webhook-id`` is ``batch_`` + a SHA-256 of the contained ids (see
:func:`~tuya_events.handlers.webhook_signing.batch_id`); receivers should deduplicate on each
element's ``id``, since a retried event may travel in a different batch. An event id that is
not safe in a header or in the signed ``{id}.{timestamp}.{body}`` (a ``.``, spaces, over 200
characters) is sent as ``evt_`` + a SHA-256 of it, which is just as stable.

Credentials in the URL (``https://user:password@host/...``) are sent as ``Authorization: Basic``,
so a URL with them and an ``Authorization`` header is refused when the file is loaded.

Secrets stay inside: the secret, credentials in the URL and the values of credential-like headers
(Authorization, Cookie, ``*token*``, ``*key*``, ...) are masked in every failure message, also
when a receiver echoes them in its answer, in each form they were sent in (a Basic header's
base64 and the user:password in it, percent-encoded URL parts). An answer's excerpt is masked
before it is cut, so no start of a secret survives the cut.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from yarl import URL

from tuya_events import __version__
from tuya_events.config.types import Duration
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler, HandlerContext, HandlerError
from tuya_events.handlers.payload import event_id, event_payload
from tuya_events.handlers.webhook_signing import (
    ID_HEADER,
    RECOMMENDED_KEY_BYTES,
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    batch_id,
    signed_headers,
    signing_key,
    webhook_id,
)
from tuya_events.observability.logging import get_logger
from tuya_events.observability.redact import (
    REDACTOR,
    Redactor,
    basic_credentials,
    header_secrets,
    url_secrets,
)
from tuya_events.tuya.events import Event

log = get_logger("tuya_events.handlers.webhook")

EXCERPT_CHARS = 200
# Bytes of an error answer read for the excerpt; the rest is discarded with the connection.
EXCERPT_READ_BYTES = 4096
# A success answer up to this size is read so the connection can be reused; beyond, it is closed.
DRAIN_BYTES = 64 * 1024

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Set by the handler (or by aiohttp): configuring them would break signing or framing.
_RESERVED_HEADERS = frozenset(
    {ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER, "content-length", "host", "transfer-encoding"}
)
_MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words in messages


class BatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int = Field(default=100, ge=1, le=10_000)
    max_wait: Duration = Field(default=0.05, le=60.0)


class WebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=64, ge=1, le=10_000)
    verify_tls: bool = True
    ca_file: str | None = None
    secret: SecretStr | None = None
    max_retry_after: Duration = 300.0
    batch: BatchOptions | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            url = URL(value)
        except (TypeError, ValueError):
            raise ValueError("must be an http:// or https:// URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if url.fragment:
            raise ValueError("must not have a #fragment")
        problem = _basic_auth_problem(url)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        url = info.data.get("url")  # absent when the url itself is invalid
        authorization = any(name.lower() == "authorization" for name in value)
        if authorization and url is not None and _has_userinfo(URL(url)):
            raise ValueError(
                "an Authorization header cannot be combined with credentials in url "
                "(they are sent as Authorization: Basic); keep one of them"
            )
        for name, text in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the handler; remove it")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"the value of {name} must be one line")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not Path(value).is_file():
            raise ValueError(f"{value} is not a file")
        try:
            ssl.create_default_context(cafile=value)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(f"{value} is not a readable PEM CA bundle ({exc})") from None
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            signing_key(value.get_secret_value())  # ValueError, never with the secret in it
        return value


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; None if absent or
    unreadable (then the pipeline's own backoff applies)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is taken as such
        return None
    return max(0.0, when.timestamp() - now)


def _has_userinfo(url: URL) -> bool:
    """Whether aiohttp will send the URL's userinfo as ``Authorization: Basic``."""
    return url.raw_user is not None or url.raw_password is not None


def _basic_auth_problem(url: URL) -> str | None:
    """Why the URL's credentials cannot be sent as HTTP Basic auth (which would fail every
    request), or None. Never with the credentials in it."""
    if not _has_userinfo(url):
        return None
    if ":" in (url.user or ""):
        return "the user in the URL must not contain a ':' (HTTP Basic auth)"
    try:
        f"{url.user or ''}:{url.password or ''}".encode("latin-1")
    except UnicodeEncodeError:
        return "credentials in the URL must be Latin-1 text (HTTP Basic auth as aiohttp sends it)"
    return None


def _credential_values(options: WebhookOptions) -> list[str]:
    """Everything that must never appear in a message or a log line, in the forms we send it:
    the secret; the URL's credentials as written, as sent (yarl's encoding) and as the Basic
    header made of its userinfo; credential-like headers, a Basic one's decoded pair too."""
    values: list[str] = []
    if options.secret is not None:
        secret = options.secret.get_secret_value()
        values += [secret, secret.removeprefix(SECRET_PREFIX)]
    url = URL(options.url)
    values += url_secrets(options.url) + url_secrets(str(url))
    if _has_userinfo(url):
        values += basic_credentials(url.user or "", url.password or "")
    for name, value in options.headers.items():
        values += header_secrets(name, value)
    return values


def _query_values(url: URL) -> list[str]:
    """Every query value, as written and as sent: the URL is ours, and a receiver's key may sit
    in a parameter of any name. Masked in this handler's messages only (in logs they would
    mask ordinary words)."""
    values = [v for v in url.query.values() if v]
    values += [part.partition("=")[2] for part in url.raw_query_string.split("&")]
    return values


@dataclass(slots=True)
class _Pending:
    event_id: str
    body: bytes
    result: asyncio.Future[None]


def _copy(error: HandlerError) -> HandlerError:
    """One exception object per waiter: raising a shared one would tangle tracebacks."""
    return HandlerError(
        error.reason,
        error.message,
        retryable=error.retryable,
        infrastructure=error.infrastructure,
        retry_after=error.retry_after,
    )


class _Batcher:
    """Collects events into arrays: a batch leaves when full or ``max_wait`` after its first
    event. Every caller awaits the outcome of the request that carried its event."""

    def __init__(
        self,
        send: Callable[[bytes, str], Awaitable[None]],
        max_size: int,
        max_wait: float,
    ) -> None:
        self._send = send
        self._max_size = max_size
        self._max_wait = max_wait
        self._pending: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._requests: set[asyncio.Task[None]] = set()

    async def submit(self, event_id: str, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        item = _Pending(event_id, body, loop.create_future())
        self._pending.append(item)
        if len(self._pending) >= self._max_size:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait, self.flush)
        await item.result

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        items, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._request(items))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _request(self, items: list[_Pending]) -> None:
        body = b"[" + b",".join(item.body for item in items) + b"]"
        try:
            await self._send(body, batch_id(item.event_id for item in items))
        except HandlerError as error:
            outcome: HandlerError | None = error
        except Exception as exc:  # a bug: the pipeline retries it like any handler exception
            outcome = HandlerError("handler_error", f"{type(exc).__name__}: {exc}")
        else:
            outcome = None
        for item in items:
            if item.result.done():  # its caller was cancelled (shutdown timeout)
                continue
            if outcome is None:
                item.result.set_result(None)
            else:
                item.result.set_exception(_copy(outcome))

    async def close(self) -> None:
        """Send what is pending and wait for every request still under way."""
        self.flush()
        if self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)


class WebhookHandler(BaseHandler):
    """POST events to one URL; see the module docstring for options and outcomes."""

    Options = WebhookOptions
    # The request timeout is applied per attempt inside ``handle``; waiting for a free slot
    # (``max_concurrency``) or for a batch to fill is backpressure, not a failure, so the
    # pipeline's per-call timeout stays off.
    timeout: float | None = None

    def __init__(
        self, name: str, options: WebhookOptions, context: HandlerContext | None = None
    ) -> None:
        super().__init__(name)
        self.options = options
        self._url = URL(options.url)
        self._origin = f"{self._url.scheme}://{self._url.host}:{self._url.port}"
        self._key = (
            signing_key(options.secret.get_secret_value()) if options.secret is not None else None
        )
        credentials = _credential_values(options)
        REDACTOR.add(credentials)  # and for any log line that might carry them
        self._redactor = Redactor(
            credentials + _query_values(self._url), min_length=_MIN_MASKED_LENGTH
        )
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(options.max_concurrency)
        self._batcher: _Batcher | None = None
        self._requests = context.metrics.webhook_requests if context is not None else None
        self._request_counters: dict[str, Any] = {}

    def _count(self, status_class: str) -> None:
        """``tuya_events_webhook_requests_total{handler,status_class}``, children cached."""
        if self._requests is None:
            return
        counter = self._request_counters.get(status_class)
        if counter is None:
            counter = self._request_counters[status_class] = self._requests.labels(
                self.name, status_class
            )
        counter.inc()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        options = self.options
        ssl_option: ssl.SSLContext | bool
        if options.verify_tls:
            ssl_option = ssl.create_default_context(cafile=options.ca_file)
        else:
            ssl_option = False  # said once at start by config.transport_security
        if self._key is not None and len(self._key) < RECOMMENDED_KEY_BYTES:
            log.warning(
                "webhook secret is shorter than the 24 bytes Standard Webhooks asks for",
                handler=self.name,
            )
        connector = aiohttp.TCPConnector(
            limit=options.max_concurrency, limit_per_host=0, ssl=ssl_option
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=options.timeout),
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"tuya-events/{__version__}",
                **options.headers,
            },
            raise_for_status=False,
            trust_env=False,
        )
        if options.batch is not None:
            self._batcher = _Batcher(self._post, options.batch.max_size, options.batch.max_wait)
        log.info(
            "webhook handler ready",
            handler=self.name,
            origin=self._origin,
            signed=self._key is not None,
            batch=options.batch.max_size if options.batch else None,
            max_concurrency=options.max_concurrency,
        )

    async def stop(self) -> None:
        """Flush pending batches, wait for their requests, then close the connections."""
        if self._batcher is not None:
            await self._batcher.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- per event --------------------------------------------------------------------------

    async def handle(self, event: Event, delivery: Delivery) -> None:
        body = orjson.dumps(event_payload(event, delivery))
        if self._batcher is not None:
            await self._batcher.submit(event_id(event, delivery), body)
        else:
            await self._post(body, webhook_id(event_id(event, delivery)))

    async def _post(self, body: bytes, message_id: str) -> None:
        """One request; returns on 2xx, raises a classified HandlerError otherwise."""
        session = self._session
        if session is None:
            raise HandlerError("not_started", "the webhook handler is not started")
        async with self._slots:
            # Signed once a slot is free, so the timestamp is the attempt's own.
            headers = signed_headers(self._key, message_id, body) if self._key else None
            try:
                async with session.post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    self._count(f"{status // 100}xx")
                    if 200 <= status < 300:
                        await _drain(response)
                        return
                    excerpt = self._excerpt(*await _read_answer(response))
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), time.time()
                    )
            except asyncio.TimeoutError:
                self._count("timeout")
                raise HandlerError(
                    "timeout",
                    f"no complete answer from {self._origin} within {self.options.timeout:g}s",
                    infrastructure=True,
                ) from None
            except aiohttp.ClientError as exc:
                self._count("network_error")
                raise HandlerError(
                    "network_error",
                    self._redact(f"{type(exc).__name__}: {exc}"),
                    infrastructure=True,
                ) from None
        raise self._status_error(status, excerpt, retry_after)

    def _status_error(self, status: int, excerpt: str, retry_after: float | None) -> HandlerError:
        message = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
        reason = f"http_{status}"
        if retry_after is not None:
            retry_after = min(retry_after, self.options.max_retry_after)
        if status >= 500:
            return HandlerError(reason, message, infrastructure=True, retry_after=retry_after)
        if status in (408, 429):
            # A receiver that is slow or rate-limiting is an outage, not the event's fault.
            return HandlerError(reason, message, infrastructure=True, retry_after=retry_after)
        if 300 <= status < 400:  # redirects are not followed (as the spec advises)
            message += " (redirects are not followed: set url to the final address)"
        # 3xx and the other 4xx will never work: dead-letter now.
        return HandlerError(reason, message, retryable=False)

    def _redact(self, text: str) -> str:
        """This handler's credentials and every registered secret, in one pass. Built per
        failure, since secrets are registered as other handlers are built."""
        return (self._redactor | REDACTOR)(text)

    def _excerpt(self, text: str, truncated: bool) -> str:
        """The start of an error answer, masked, then folded to one line, then cut: cut first,
        the start of a secret would survive as no whole secret is left to recognise."""
        redact = self._redactor | REDACTOR
        if truncated:  # a secret cut off by the read limit could not be recognised either
            text = text[: max(0, len(text) - redact.longest)]
        return " ".join(redact(text).split())[:EXCERPT_CHARS]


async def _drain(response: aiohttp.ClientResponse) -> None:
    """Read a small answer to the end so its connection goes back to the pool."""
    read = 0
    async for chunk in response.content.iter_any():
        read += len(chunk)
        if read > DRAIN_BYTES:
            response.close()
            return


async def _read_answer(response: aiohttp.ClientResponse) -> tuple[str, bool]:
    """The start of an error answer, decoded, and whether it went on past what was read."""
    data = bytearray()
    truncated = False
    try:
        async for chunk in response.content.iter_any():
            data += chunk
            if len(data) >= EXCERPT_READ_BYTES:
                response.close()  # not worth reading on: the connection is dropped instead
                truncated = True
                break
    except aiohttp.ClientError:
        truncated = True  # the answer broke off: its last bytes may be the start of a secret
    return data.decode("utf-8", "replace"), truncated
