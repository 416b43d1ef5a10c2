"""An async client for Tuya's signed OpenAPI: pooled connections, tokens, limits, retries.

What it takes care of, so callers only say what to call:

- **Signing** every request (the current scheme, or the legacy one for old projects), after the
  rate limiter let it go, so ``t`` is fresh however long it waited.
- **Tokens**: fetched when first needed, refreshed ahead of expiry by :class:`TokenManager`;
  a call answered 1010/1011/1012 gets a new token and is sent once more.
- **Limits**: a token bucket per endpoint class (commands 4/s, queries 50/s by default).
- **Retries** of what may work later -- network errors, timeouts, HTTP 5xx, 1110 and 1111 --
  with jittered exponential backoff. Configuration problems (1004, 1013, 1106, 2884xxxx) fail at
  once with a hint; see :mod:`tuya_events.openapi.errors`.

Device commands set values (``switch_1: true``), so sending one again after a timeout whose
answer was lost does not toggle anything.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

from tuya_events import __version__
from tuya_events.backoff import equal_jitter
from tuya_events.config.settings import OpenApiOptions
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.openapi.errors import SHARED_KEY_HINT, OpenApiError
from tuya_events.openapi.ratelimit import COMMAND, QUERY, TOKEN, RateLimiter, endpoint_class
from tuya_events.openapi.signing import (
    TOKEN_PATH,
    SignedRequest,
    is_token_call,
    sign_request,
    split_path,
)
from tuya_events.openapi.tokens import TokenManager

log = get_logger("tuya_events.openapi")

COMMAND_PATHS = {
    "iot-03": "/v1.0/iot-03/devices/{device_id}/commands",
    "devices": "/v1.0/devices/{device_id}/commands",
}
SUCCESS = "success"
_ERROR_EXCERPT = 200


@dataclass(frozen=True)
class Credentials:
    access_id: str
    access_secret: str = field(repr=False)
    base_url: str

    @classmethod
    def from_settings(cls, settings: Any) -> Credentials:
        """From :class:`~tuya_events.config.settings.Settings` (its ``tuya`` section)."""
        tuya = settings.tuya
        return cls(tuya.access_id, tuya.access_secret.get_secret_value(), tuya.resolved_openapi_url)


def ssl_option(settings: Any) -> ssl.SSLContext | bool:
    """TLS as ``tls:`` says: the system's CAs or ``ca_file``; off only with ``insecure``, which
    the daemon and ``check-config`` report (``config.transport_security``), never silently."""
    tls = settings.tls
    if not tls.verify_certificates:
        return False
    return ssl.create_default_context(cafile=tls.ca_file)


def new_nonce() -> str:
    return uuid.uuid4().hex


def now_ms() -> str:
    return str(int(time.time() * 1000))


class OpenApiClient:
    """One cloud project's OpenAPI. ``async with`` it, or ``start()`` and ``close()``."""

    def __init__(
        self,
        credentials: Credentials,
        options: OpenApiOptions | None = None,
        *,
        metrics: Metrics | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        t: Callable[[], str] = now_ms,
        nonce: Callable[[], str] = new_nonce,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.credentials = credentials
        self.options = options or OpenApiOptions()
        self.base_url = credentials.base_url.rstrip("/")
        self._ssl = True if ssl_context is None else ssl_context
        self._metrics = metrics
        self._t = t
        self._nonce = nonce
        self._rng = rng
        self.limiter = RateLimiter(
            {name: (limit.rate, limit.burst) for name, limit in self.options.rate_limits.items()}
        )
        self.tokens = TokenManager(
            self._fetch_token, self.options.refresh_margin, on_fetch=self._token_fetched
        )
        self._session: aiohttp.ClientSession | None = None
        if metrics is not None:
            # Series exist from the start (at 0), so rate() and increase() see the first failure.
            for outcome in (SUCCESS, "failure"):
                metrics.openapi_token_refreshes.labels(outcome)
            for endpoint in (TOKEN, COMMAND, QUERY):
                metrics.openapi_requests.labels(endpoint, SUCCESS)
                metrics.openapi_request_duration.labels(endpoint)

    def retune(self, options: OpenApiOptions) -> None:
        """A reload's new options: rate limits (fresh buckets), timeouts and retries for the
        next calls; the session, its connections and the token are kept."""
        self.options = options
        self.limiter = RateLimiter(
            {name: (limit.rate, limit.burst) for name, limit in options.rate_limits.items()}
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=self.options.max_connections, ssl=self._ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.options.timeout),
            headers={"User-Agent": f"tuya-events/{__version__}"},
            raise_for_status=False,
            trust_env=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OpenApiClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calls ------------------------------------------------------------------------------

    def sign(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        access_token: str = "",
        t: str | None = None,
        nonce: str | None = None,
        signature_headers: Mapping[str, str] | None = None,
    ) -> SignedRequest:
        """Sign a request as :meth:`request` would send it (the dry run shows this)."""
        legacy = self.options.legacy_signing
        if nonce is None:
            nonce = "" if legacy else self._nonce()
        return sign_request(
            client_id=self.credentials.access_id,
            secret=self.credentials.access_secret,
            method=method,
            path=path,
            query=query,
            body=body,
            t=t if t is not None else self._t(),
            access_token=access_token,
            nonce=nonce,
            signature_headers=signature_headers,
            legacy=legacy,
            lang=self.options.lang,
        )

    def url_for(self, signed: SignedRequest) -> URL:
        """Where a signed request goes: the query sorted, values percent-encoded on the wire."""
        url = URL(self.base_url + signed.path)
        return url.with_query(list(signed.query)) if signed.query else url

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | Mapping[str, str] = (),
        body: Any = None,
        access_token: str | None = None,
        t: str | None = None,
        nonce: str | None = None,
        signature_headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call ``method path`` and return Tuya's ``result``; raises :class:`OpenApiError`.

        ``body`` is sent as given when it is bytes, else as JSON. A business call uses the
        managed token unless ``access_token`` is given (then it is not renewed on 1010).
        ``t`` and ``nonce`` fix those values (for reproducing a request); normally fresh ones
        are used for every attempt.
        """
        pairs = tuple(query.items()) if isinstance(query, Mapping) else tuple(query)
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        bare, _ = split_path(path)
        call = _Call(method.upper(), path, pairs, data, nonce, dict(signature_headers or {}), t)
        call.token_call = is_token_call(bare)
        call.endpoint = endpoint_class(call.method, bare, call.token_call)
        return await self._with_retries(call, access_token)

    async def send_commands(
        self, device_id: str, commands: list[dict[str, Any]], family: str = "iot-03"
    ) -> Any:
        """``POST .../devices/{device_id}/commands`` in the given API family."""
        path = COMMAND_PATHS[family].format(device_id=device_id)
        return await self.request("POST", path, body={"commands": commands})

    # -- internals ----------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        options = self.options
        return equal_jitter(attempt, options.initial_backoff, options.max_backoff, self._rng)

    async def _with_retries(self, call: _Call, access_token: str | None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._with_token(call, access_token)
            except OpenApiError as error:
                if not error.retryable or attempt >= self.options.max_attempts:
                    raise
                delay = self.backoff(attempt)
                log.info(
                    "OpenAPI call failed, retrying",
                    path=call.display_path,
                    reason=error.reason,
                    attempt=attempt,
                    retry_in=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def _with_token(self, call: _Call, access_token: str | None) -> Any:
        if call.token_call or access_token is not None:
            given = access_token or ""
            return await self._exchange(call, lambda: _ready(given))
        used: list[str] = []

        async def managed() -> str:
            used.append(await self.tokens.access_token())
            return used[-1]

        # A token due for refresh is refreshed before the call queues for the rate limiter, so
        # the refresh does not eat into the call's slot.
        await self.tokens.access_token()
        try:
            return await self._exchange(call, managed)
        except OpenApiError as error:
            if not error.token_problem:
                raise
            log.info("OpenAPI token rejected, getting a new one", code=error.code)
        await self.tokens.renew(used[-1])
        try:
            return await self._exchange(call, managed)
        except OpenApiError as error:
            if not error.token_problem:
                raise
            raise OpenApiError(
                error.code, error.msg, error.tid, SHARED_KEY_HINT, path=call.display_path
            ) from None

    async def _exchange(self, call: _Call, token: Callable[[], Awaitable[str]]) -> Any:
        """One request: wait for the limiter, then take the token, sign, send, read.

        The token is taken after the wait: a call queued behind the limiter while the token was
        refreshed must not go out with the replaced one.
        """
        waited = await self.limiter.acquire(call.endpoint)
        if self._metrics is not None and call.endpoint != TOKEN:
            self._metrics.openapi_rate_limit_wait.labels(call.endpoint).observe(waited)
        signed = self.sign(
            call.method,
            call.path,
            query=call.query,
            body=call.body,
            access_token=await token(),
            t=call.t,
            nonce=call.nonce,
            signature_headers=call.signature_headers,
        )
        session = self._session
        if session is None:
            raise RuntimeError("the OpenAPI client is not started")
        url = self.url_for(signed)
        started = time.perf_counter()
        outcome = "network_error"
        try:
            try:
                async with session.request(
                    call.method, url, data=signed.body, headers=signed.headers
                ) as response:
                    status = response.status
                    raw = await response.read()
            except asyncio.TimeoutError:
                outcome = "timeout"
                raise OpenApiError(
                    None,
                    f"no answer from {self.base_url} within {self.options.timeout:g}s",
                    reason="timeout",
                    path=call.display_path,
                ) from None
            except aiohttp.ClientError as exc:
                raise OpenApiError(
                    None,
                    f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}",
                    hint="check the network, a proxy or firewall, and tuya.region/openapi_url",
                    reason="network_error",
                    path=call.display_path,
                ) from None
            try:
                result = self._result(status, raw, call.display_path)
            except OpenApiError as error:
                outcome = error.reason
                raise
            outcome = SUCCESS
            return result
        finally:
            if self._metrics is not None:
                elapsed = time.perf_counter() - started
                self._metrics.openapi_requests.labels(call.endpoint, outcome).inc()
                self._metrics.openapi_request_duration.labels(call.endpoint).observe(elapsed)

    def _result(self, status: int, raw: bytes, path: str) -> Any:
        try:
            answer = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            answer = None
        if isinstance(answer, dict) and "success" in answer:
            if answer.get("success") is True:
                return answer.get("result")
            code = answer.get("code")
            tid = answer.get("tid")
            number = int(code) if isinstance(code, (int, str)) and str(code).isdigit() else None
            raise OpenApiError(
                number,
                str(answer.get("msg") or "no message"),
                str(tid) if tid is not None else None,
                reason=None if number is not None else "bad_response",
                status=status,
                path=path,
            )
        excerpt = " ".join(raw[:_ERROR_EXCERPT].decode("utf-8", "replace").split())
        if status >= 500:
            reason = "http_5xx"
        elif status != 200:
            reason = f"http_{status // 100}xx"
        else:
            reason = "bad_response"
        raise OpenApiError(
            None,
            f"HTTP {status}: {excerpt or 'no body'}"
            if status != 200
            else f"not a Tuya answer: {excerpt or 'no body'}",
            reason=reason,
            status=status,
            path=path,
        )

    async def _fetch_token(self, refresh_token: str | None) -> Any:
        if refresh_token:
            call = _Call("GET", f"{TOKEN_PATH}/{refresh_token}", (), None, None, {}, None)
            call.display = f"{TOKEN_PATH}/{{refresh_token}}"  # the refresh token is a secret
        else:
            call = _Call("GET", TOKEN_PATH, (("grant_type", "1"),), None, None, {}, None)
        call.token_call = True
        call.endpoint = TOKEN
        # One attempt: the call that needed the token retries, with the token fetch inside it.
        return await self._exchange(call, lambda: _ready(""))

    def _token_fetched(self, ok: bool) -> None:
        if self._metrics is not None:
            self._metrics.openapi_token_refreshes.labels(SUCCESS if ok else "failure").inc()


async def _ready(value: str) -> str:
    return value


@dataclass(slots=True)
class _Call:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes | None
    nonce: str | None
    signature_headers: dict[str, str]
    t: str | None
    token_call: bool = False
    endpoint: str = COMMAND
    display: str | None = None

    @property
    def display_path(self) -> str:
        return self.display or split_path(self.path)[0]
