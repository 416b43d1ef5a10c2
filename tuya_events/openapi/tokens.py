"""The access token: fetched on first use, refreshed ahead of expiry, one fetch at a time.

Tokens last ``expire_time`` seconds (7200 in practice). A token is refreshed (with its refresh
token) ``refresh_margin`` seconds before it expires, but never earlier than half-way through its
life, so a short-lived token is not refreshed on every call. Concurrent callers that find the
token due wait for the single fetch under way instead of starting their own: every fetch
invalidates the previous token on Tuya's side, so parallel fetches would fight each other.

When Tuya rejects a token (1010/1011/1012) the client calls :meth:`TokenManager.renew` with the
rejected token: the first caller fetches a new one, the others get that one. A token rejected
well before its expiry is counted: when that keeps happening, another process is probably using
the same key pair, and the log says so.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tuya_events.observability.logging import get_logger
from tuya_events.openapi.errors import SHARED_KEY_HINT, OpenApiError

log = get_logger("tuya_events.openapi.tokens")

# Rejections of unexpired tokens within this window that make the shared-key warning appear.
EARLY_REJECTIONS_WINDOW = 600.0
EARLY_REJECTIONS_WARN = 3


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    refresh_token: str
    obtained_at: float  # monotonic seconds
    lifetime: float
    uid: str | None = None

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.lifetime

    def refresh_at(self, margin: float) -> float:
        return self.obtained_at + max(self.lifetime - margin, self.lifetime / 2)


def parse_token(result: Any, obtained_at: float) -> Token:
    """The ``result`` of a token call; raises OpenApiError when it is not one."""
    if not isinstance(result, dict):
        raise OpenApiError(None, "the token answer has no result object", reason="bad_response")
    access = result.get("access_token")
    refresh = result.get("refresh_token")
    lifetime = result.get("expire_time")
    if (
        not isinstance(access, str)
        or not access
        or isinstance(lifetime, bool)
        or not isinstance(lifetime, (int, float))
        or lifetime <= 0
    ):
        raise OpenApiError(
            None,
            "the token answer lacks access_token or a positive expire_time",
            reason="bad_response",
        )
    uid = result.get("uid")
    return Token(
        access,
        refresh if isinstance(refresh, str) else "",
        obtained_at,
        float(lifetime),
        uid if isinstance(uid, str) else None,
    )


# fetch(refresh_token or None) -> the token call's result object
Fetch = Callable[[str | None], Awaitable[Any]]


class TokenManager:
    def __init__(
        self,
        fetch: Fetch,
        refresh_margin: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[bool], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._on_fetch = on_fetch
        self._lock = asyncio.Lock()
        self.token: Token | None = None
        self.early_rejections: deque[float] = deque()

    def _fresh(self, token: Token | None) -> bool:
        return token is not None and self._clock() < token.refresh_at(self.refresh_margin)

    async def access_token(self) -> str:
        """A token good for the next call: the current one, or a refreshed one when it is due."""
        token = self.token
        if self._fresh(token):
            assert token is not None
            return token.access_token
        async with self._lock:
            token = self.token
            if self._fresh(token):
                assert token is not None
                return token.access_token
            self.token = await self._obtain(token)
            return self.token.access_token

    async def renew(self, rejected: str) -> str:
        """Tuya rejected ``rejected``: get a new token unless another caller already did."""
        async with self._lock:
            current = self.token
            if current is not None and current.access_token != rejected:
                return current.access_token
            if current is not None and self._clock() < current.expires_at:
                self._count_early_rejection()
            self.token = None
            self.token = await self._obtain(None)
            return self.token.access_token

    def keeps_being_invalidated(self) -> bool:
        return len(self.early_rejections) >= EARLY_REJECTIONS_WARN

    def _count_early_rejection(self) -> None:
        now = self._clock()
        self.early_rejections.append(now)
        while self.early_rejections and now - self.early_rejections[0] > EARLY_REJECTIONS_WINDOW:
            self.early_rejections.popleft()
        if self.keeps_being_invalidated():
            log.warning(
                "OpenAPI access token rejected before its expiry",
                times=len(self.early_rejections),
                within_seconds=EARLY_REJECTIONS_WINDOW,
                hint=SHARED_KEY_HINT,
            )

    async def _obtain(self, previous: Token | None) -> Token:
        """Refresh ``previous`` while it is still valid, else (or if that fails) get a new one."""
        if previous is not None and previous.refresh_token and self._clock() < previous.expires_at:
            try:
                return await self._fetch_one(previous.refresh_token)
            except OpenApiError as error:
                if error.retryable:
                    raise
                log.info(
                    "token refresh refused, getting a new token", code=error.code, msg=error.msg
                )
        return await self._fetch_one(None)

    async def _fetch_one(self, refresh_token: str | None) -> Token:
        obtained_at = self._clock()
        try:
            result = await self._fetch(refresh_token)
            token = parse_token(result, obtained_at)
        except Exception:
            if self._on_fetch is not None:
                self._on_fetch(False)
            raise
        if self._on_fetch is not None:
            self._on_fetch(True)
        return token
