"""The device catalogue's test set-up: the fake Tuya OpenAPI knowing two sensors, settings that
point the daemon at it, a handler that records what enrichment gave each event, publishing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi, data_point
from tests.pipeline_support import ENCODER, Harness
from tests.support.servers import serving
from tests.support.settings import make_settings
from tuya_events.catalogue.catalogue import Catalogue
from tuya_events.config.settings import Settings
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler
from tuya_events.tuya.events import Event, StatusReport

KNOWN = "bfknown000000000000001"
NEW = "bfnew00000000000000002"
SENSOR_SPEC = [
    data_point("seq", "Integer", 1, unit="u", min=0, max=10000, scale=1, step=1),
    data_point("va_temperature", "Integer", 2, unit="℃", min=-200, max=600, scale=1, step=1),
]


class Seen(BaseHandler):
    """Records, in handling order, each event's device, first value, name and scaled value."""

    def __init__(self) -> None:
        super().__init__("seen")
        self.events: list[tuple[str | None, Any, str | None, Any, bool | None]] = []

    def handle(self, event: Event, delivery: Delivery) -> None:
        value = scaled = None
        if isinstance(event, StatusReport) and event.statuses:
            value, scaled = event.statuses[0].value, event.statuses[0].scaled
        known = event.device.known if event.device is not None else None
        name = event.device.name if event.device is not None else None
        self.events.append((event.device_id, value, name, scaled, known))


@contextlib.contextmanager
def serving_cloud() -> Iterator[FakeTuyaOpenApi]:
    """The fake OpenAPI for the vectors' project, knowing two sensors of two products."""
    with serving() as start:
        server = start(FakeTuyaOpenApi(v.ACCESS_ID, v.ACCESS_SECRET))
        server.add_device(
            KNOWN, name="Kitchen sensor", product_id="sensorpk", status_spec=SENSOR_SPEC
        )
        server.add_device(NEW, name="Hall sensor", product_id="otherpk", status_spec=SENSOR_SPEC)
        yield server


def settings_for(
    tmp_path: Path, cloud: FakeTuyaOpenApi, resync: dict[str, Any] | None = None, **enrichment: Any
) -> Settings:
    """Enrichment on against ``cloud``, no start-up sync, quick OpenAPI retries; no resync unless
    ``resync`` is given."""
    return make_settings(
        tmp_path,
        tuya={"openapi_url": cloud.url},
        enrichment={"enabled": True, **enrichment},
        catalogue={"sync_on_start": False},
        openapi={"initial_backoff": "10ms", "max_backoff": "20ms", "max_attempts": 2},
        resync=resync if resync is not None else {"enabled": False},
    )


def publish(harness: Harness, device: str, seq: int) -> None:
    document = {
        "dataId": f"{device}-{seq}",
        "devId": device,
        "status": [{"code": "seq", "value": seq, "t": 1700000000000 + seq}],
    }
    body, properties = ENCODER.encode(document, em="aes_ecb", protocol=4)
    harness.source.publish(body, properties, partition=0, key=device)


def publish_event(harness: Harness, device: str, biz_code: str, **biz_data: Any) -> None:
    document = {"devId": device, "bizCode": biz_code, "bizData": {"devId": device, **biz_data}}
    body, properties = ENCODER.encode(document, em="aes_ecb", protocol=20)
    harness.source.publish(body, properties, partition=0, key=device)


async def fill(settings: Settings, *device_ids: str) -> Catalogue:
    """A catalogue as the daemon would build it, synced for ``device_ids``, then closed."""
    from tuya_events.assembly import opened_catalogue
    from tuya_events.handlers import HandlerContext
    from tuya_events.observability.metrics import Metrics

    async with opened_catalogue(
        settings, HandlerContext(settings, Metrics()), background=False
    ) as catalogue:
        await catalogue.sync(device_ids=list(device_ids))
    return catalogue


def run(settings: Settings, seen: Seen, scenario: Callable[[Harness], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with Harness(settings, [seen]) as harness:
            return await scenario(harness)

    return asyncio.run(main())
