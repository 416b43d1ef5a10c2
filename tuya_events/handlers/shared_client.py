"""One OpenAPI client per cloud project, shared by everything in the daemon that calls it."""

from __future__ import annotations

from dataclasses import dataclass

from tuya_events.config.settings import OpenApiOptions, Settings
from tuya_events.handlers.base import HandlerContext
from tuya_events.observability.metrics import Metrics
from tuya_events.openapi.client import Credentials, OpenApiClient, ssl_option

TOP_LEVEL = "the top-level openapi: section"


@dataclass
class SharedClient:
    """One cloud project's OpenAPI client, shared by its action handlers and the device
    catalogue: one token (a second client's token would replace the first's), one rate limit.
    Made by the first user that starts, closed when the last one stops."""

    options: OpenApiOptions
    # Where ``options`` were given (TOP_LEVEL, or "handler 'NAME''s openapi:"); None: the
    # defaults, which the first handler block may still set.
    source: str | None
    client: OpenApiClient | None = None
    users: int = 0

    async def acquire(self, settings: Settings, metrics: Metrics) -> OpenApiClient:
        if self.client is None:
            self.client = OpenApiClient(
                Credentials.from_settings(settings),
                self.options,
                metrics=metrics,
                ssl_context=ssl_option(settings),
            )
        self.users += 1
        await self.client.start()
        return self.client

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.client is not None:
            await self.client.close()


def project_client(context: HandlerContext) -> SharedClient:
    """The project's shared client entry (for users other than action handlers)."""
    settings = context.settings
    credentials = Credentials.from_settings(settings)
    key = ("openapi", credentials.base_url.rstrip("/"), credentials.access_id)
    source = TOP_LEVEL if settings.openapi_given else None
    return context.shared.get_or_create(key, lambda: SharedClient(settings.openapi, source))
