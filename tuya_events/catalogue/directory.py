"""The OpenAPI calls behind the catalogue: list, details, specification, status.

Every call goes through the shared :class:`~tuya_events.openapi.client.OpenApiClient` (signing,
token, rate limits, retries); this module only knows which paths to call, how to batch them and
how to read the answers. Answers are read tolerantly (a list under ``list`` or ``devices`` or
the result itself), because Tuya's families differ in shape and one odd answer must not stop a
sync. Device details go through :func:`~tuya_events.tuya.devices.make_device`, whose whitelist
drops ``local_key``. docs/devices-api.md says which calls, and what is unverified.
"""

from __future__ import annotations

import re
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from functools import partial
from typing import Any, TypeVar

from tuya_events.openapi.client import SUCCESS, OpenApiClient
from tuya_events.openapi.errors import PERMISSION_DENY, URI_PATH_INVALID, OpenApiError
from tuya_events.tuya.devices import DataPoint, Device, make_device, parse_specification

IOT_03 = "iot-03"
DEVICES = "devices"
AUTO = "auto"
FAMILIES = (IOT_03, DEVICES)

# Call names, the label of tuya_events_catalogue_calls_total{call}.
LIST_CALL = "list"
DETAILS_CALL = "details"
SPECIFICATION_CALL = "specification"
STATUS_CALL = "status"

_DETAILS_PATHS = {IOT_03: "/v1.0/iot-03/devices", DEVICES: "/v1.0/devices"}
_STATUS_PATHS = {IOT_03: "/v1.0/iot-03/devices/status", DEVICES: "/v1.0/devices/status"}
_SPECIFICATION_PATHS = {
    IOT_03: "/v1.0/iot-03/devices/{device_id}/specification",
    DEVICES: "/v1.0/devices/{device_id}/specifications",
}

# Listing a project's devices. Neither call is family-bound, so ``family`` does not apply.
# First choice: the devices of the app accounts linked to the project (Devices > Link App
# Account), paged with ``last_row_key``/``has_more``. That is how most users of this daemon put
# devices in a project, it is the call other Tuya clients use to list them, and one report says
# devices of a linked Smart Life account show up there and not in the project query. Fallback,
# on 1106/1108: the "query devices in project" call, paged with ``last_id`` (the last id of the
# previous page), at most 20 a page, answering a bare list with camelCase fields (``productId``,
# ``isOnline``, ``customName``, ...). *Unverified* against a live project: the camelCase fields
# and which of ``customName``/``name`` is the name users gave (we take ``customName`` first),
# the largest ``size`` the first call accepts, and whether each call sees the other's devices.
ASSOCIATED_USERS = "associated-users"
PROJECT_THINGS = "thing"
LISTINGS = (ASSOCIATED_USERS, PROJECT_THINGS)
_LIST_PATHS = {
    ASSOCIATED_USERS: "/v1.0/iot-01/associated-users/devices",
    PROJECT_THINGS: "/v2.0/cloud/thing/device",
}
THING_PAGE_LIMIT = 20
# A server that keeps saying "more" must not keep a sync (and the call quota) going for ever.
MAX_PAGES = 1000

_CAMEL_DETAILS = {
    "productId": "product_id",
    "productName": "product_name",
    "timeZone": "time_zone",
    "activeTime": "active_time",
    "createTime": "create_time",
    "updateTime": "update_time",
    "isOnline": "online",
}
# Tuya device ids are letters and digits; anything else could not be one, and a comma or a
# slash in an id would change which devices (or which path) a call asks for.
_DEVICE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

T = TypeVar("T")


def _wall_ms() -> int:
    return int(time.time() * 1000)


def valid_device_id(device_id: str) -> bool:
    return isinstance(device_id, str) and _DEVICE_ID.fullmatch(device_id) is not None


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _items(result: Any) -> list[Any]:
    """The list in an answer: the result itself, or under ``list`` or ``devices``."""
    if isinstance(result, list):
        return result
    if isinstance(result, Mapping):
        for key in ("list", "devices"):
            found = result.get(key)
            if isinstance(found, list):
                return found
    return []


def _snake_details(item: Mapping[str, Any]) -> dict[str, Any]:
    """A project-query item in the field names :func:`make_device` reads (snake_case ones win)."""
    out = dict(item)
    for camel, snake in _CAMEL_DETAILS.items():
        if camel in item and snake not in item:
            out[snake] = item[camel]
    custom = item.get("customName")
    if isinstance(custom, str) and custom:
        out["name"] = custom
    return out


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
        page_size: int = THING_PAGE_LIMIT,
    ) -> None:
        if family not in (AUTO, *FAMILIES):
            raise ValueError(f"unknown API family {family!r}: auto, iot-03 or devices")
        if working_family is not None and working_family not in FAMILIES:
            raise ValueError(f"unknown API family {working_family!r}: iot-03 or devices")
        if batch_size < 1 or page_size < 1:
            raise ValueError("batch_size and page_size must be at least 1")
        self.client = client
        self.batch_size = batch_size
        self.family = family
        # A fixed family is the working one; in auto mode a remembered one (from an earlier run)
        # saves the 1106 on the first call.
        self.working_family = family if family != AUTO else working_family
        self.working_listing: str | None = None
        self.page_size = page_size
        self._on_call = on_call
        self._now_ms = now_ms or _wall_ms

    # -- the calls ------------------------------------------------------------------------------

    async def list_devices(self) -> AsyncIterator[list[Device]]:
        """The project's devices, a page at a time, details filled (no specification)."""
        listings = (self.working_listing,) if self.working_listing else LISTINGS
        for index, listing in enumerate(listings):
            things = listing == PROJECT_THINGS
            handed_out = False
            try:
                async with aclosing(self._pages(listing)) as pages:
                    async for items in pages:
                        self.working_listing = listing
                        handed_out = True
                        yield list(
                            self._devices(items, _snake_details if things else None).values()
                        )
                return
            except OpenApiError as error:
                # Only a refusal of the very first page moves to the other call: after a page
                # was handed out, switching would hand out the same devices again.
                refused = error.code in (PERMISSION_DENY, URI_PATH_INVALID)
                if handed_out or not refused or index + 1 == len(listings):
                    raise

    async def details(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """Details of these devices, ``batch_size`` ids per call; ids the answer lacks are
        absent from the result."""
        wanted = self._wanted(device_ids)
        found: dict[str, Device] = {}
        for batch in _chunks(wanted, self.batch_size):
            result = await self._in_family(DETAILS_CALL, partial(self._details_call, batch))
            found.update(self._devices(_items(result)))
        return found

    async def specification(self, device_id: str) -> dict[str, DataPoint]:
        """The data-point specification of one device, by code."""
        if not valid_device_id(device_id):
            raise ValueError(f"not a Tuya device id: {device_id!r}")

        def call(family: str) -> Awaitable[Any]:
            path = _SPECIFICATION_PATHS[family].format(device_id=device_id)
            return self.client.request("GET", path)

        return parse_specification(await self._in_family(SPECIFICATION_CALL, call))

    async def status(self, device_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Current status items (``{"code", "value"}``) per device, ``batch_size`` per call."""
        wanted = self._wanted(device_ids)
        found: dict[str, list[dict[str, Any]]] = {}
        for batch in _chunks(wanted, self.batch_size):
            result = await self._in_family(STATUS_CALL, partial(self._status_call, batch))
            for entry in _items(result):
                if not isinstance(entry, Mapping):
                    continue
                device_id = entry.get("id")
                if isinstance(device_id, str) and device_id:
                    found[device_id] = _status_items(entry.get("status"))
        return found

    # -- internals ------------------------------------------------------------------------------

    def _status_call(self, batch: list[str], family: str) -> Awaitable[Any]:
        query = {"device_ids": ",".join(batch)}
        return self.client.request("GET", _STATUS_PATHS[family], query=query)

    def _details_call(self, batch: list[str], family: str) -> Awaitable[Any]:
        query = {"device_ids": ",".join(batch)}
        if family == DEVICES:
            # Documented as required on /v1.0/devices; a page as large as the batch holds it.
            query.update(page_no="1", page_size=str(len(batch)))
        return self.client.request("GET", _DETAILS_PATHS[family], query=query)

    async def _in_family(self, call: str, send: Callable[[str], Awaitable[T]]) -> T:
        """``send`` in the working family; in auto mode, 1106 on iot-03 moves to devices."""
        families = (self.working_family,) if self.working_family else FAMILIES
        for index, family in enumerate(families):
            try:
                result = await self._counted(call, send(family))
            except OpenApiError as error:
                if error.code == PERMISSION_DENY and index + 1 < len(families):
                    continue
                raise
            if self.family == AUTO:
                self.working_family = family
            return result
        raise AssertionError("unreachable: the last family re-raises")  # pragma: no cover

    async def _counted(self, call: str, request: Awaitable[T]) -> T:
        try:
            result = await request
        except OpenApiError as error:
            self._told(call, error.reason)
            raise
        self._told(call, SUCCESS)
        return result

    def _told(self, call: str, outcome: str) -> None:
        if self._on_call is not None:
            self._on_call(call, outcome)

    def _wanted(self, device_ids: Sequence[str]) -> list[str]:
        """The ids to ask for: each once, in order, only ones that can be Tuya ids."""
        return [i for i in dict.fromkeys(device_ids) if valid_device_id(i)]

    def _devices(
        self,
        items: list[Any],
        rename: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> dict[str, Device]:
        fetched = self._now_ms()
        devices: dict[str, Device] = {}
        for item in items:
            if not isinstance(item, Mapping):
                continue
            details = rename(item) if rename is not None else item
            try:
                device = make_device(details, fetched_at_ms=fetched)
            except ValueError:  # no id: nothing to file it under
                continue
            devices[device.id] = device
        return devices

    def _pages(self, listing: str) -> AsyncGenerator[list[Any], None]:
        return self._associated_pages() if listing == ASSOCIATED_USERS else self._thing_pages()

    async def _associated_pages(self) -> AsyncGenerator[list[Any], None]:
        path = _LIST_PATHS[ASSOCIATED_USERS]
        seen: set[str] = set()
        row_key: str | None = None
        for _ in range(MAX_PAGES):
            query = {"size": str(self.page_size)}
            if row_key:
                query["last_row_key"] = row_key
            result = await self._counted(LIST_CALL, self.client.request("GET", path, query=query))
            items = _items(result)
            yield items
            more = isinstance(result, Mapping) and result.get("has_more") is True
            row_key = result.get("last_row_key") if isinstance(result, Mapping) else None
            if not more or not items or not isinstance(row_key, str) or not row_key:
                return
            if row_key in seen:  # the same cursor again: the server is going round in circles
                return
            seen.add(row_key)

    async def _thing_pages(self) -> AsyncGenerator[list[Any], None]:
        path = _LIST_PATHS[PROJECT_THINGS]
        size = min(self.page_size, THING_PAGE_LIMIT)
        seen: set[str] = set()
        last_id: str | None = None
        for _ in range(MAX_PAGES):
            query = {"page_size": str(size)}
            if last_id:
                query["last_id"] = last_id
            result = await self._counted(LIST_CALL, self.client.request("GET", path, query=query))
            items = _items(result)
            yield items
            # No has_more here: a short page is the last one.
            if len(items) < size:
                return
            tail = items[-1].get("id") if isinstance(items[-1], Mapping) else None
            if not isinstance(tail, str) or not tail or tail in seen:
                return
            seen.add(tail)
            last_id = tail


def _status_items(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        return []
    return [
        {"code": item["code"], "value": item.get("value")}
        for item in raw
        if isinstance(item, Mapping) and isinstance(item.get("code"), str) and item["code"]
    ]
