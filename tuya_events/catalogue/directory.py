"""The OpenAPI calls behind the catalogue: list, details, specification, status.

INTERFACE STUB -- to be implemented (see the docstrings). Every call goes through the shared
:class:`~tuya_events.openapi.client.OpenApiClient` (signing, token, rate limits, retries).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from tuya_events.openapi.client import OpenApiClient
from tuya_events.tuya.devices import DataPoint, Device

IOT_03 = "iot-03"
DEVICES = "devices"

# Call names, the label of tuya_events_catalogue_calls_total{call}.
LIST_CALL = "list"
DETAILS_CALL = "details"
SPECIFICATION_CALL = "specification"
STATUS_CALL = "status"


class Directory:
    """One cloud project's devices, through its OpenAPI.

    ``family`` is ``auto`` (iot-03 first; on 1106 the /v1.0/devices family, remembered in
    :attr:`working_family`), ``iot-03`` or ``devices``. ``on_call(call, outcome)`` is told of
    every HTTP call made (outcome ``success`` or the error's reason/code), for the metric.
    Errors are :class:`~tuya_events.openapi.errors.OpenApiError` as the client raises them.
    """

    def __init__(
        self,
        client: OpenApiClient,
        *,
        batch_size: int = 20,
        family: str = "auto",
        working_family: str | None = None,
        on_call: Callable[[str, str], None] | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        raise NotImplementedError

    working_family: str | None

    async def list_devices(self) -> AsyncIterator[list[Device]]:
        """The project's devices, a page at a time, details filled (no specification)."""
        raise NotImplementedError
        yield []

    async def details(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """Details of these devices, ``batch_size`` ids per call; ids the answer lacks are
        absent from the result."""
        raise NotImplementedError

    async def specification(self, device_id: str) -> dict[str, DataPoint]:
        """The data-point specification of one device, by code."""
        raise NotImplementedError

    async def status(self, device_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Current status items (``{"code", "value"}``) per device, ``batch_size`` per call."""
        raise NotImplementedError
