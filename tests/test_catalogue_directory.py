"""The catalogue's OpenAPI calls (tuya_events/catalogue/directory.py) against the fake Tuya
OpenAPI on 127.0.0.1, which checks every signature and token and records what it received."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import (
    ASSOCIATED_USERS_PATH,
    PROJECT_THINGS_PATH,
    FakeTuyaOpenApi,
    data_point,
)
from tests.support.servers import serving
from tuya_events.catalogue.directory import (
    DETAILS_CALL,
    LIST_CALL,
    SPECIFICATION_CALL,
    STATUS_CALL,
    Directory,
)
from tuya_events.openapi.client import Credentials, OpenApiClient, OpenApiOptions
from tuya_events.openapi.errors import OpenApiError
from tuya_events.tuya.devices import Device

NOW_MS = 1_700_000_000_000
FAST = {"initial_backoff": 0.01, "max_backoff": 0.05}
IOT_03_DETAILS = "/v1.0/iot-03/devices"
DEVICES_DETAILS = "/v1.0/devices"

T = TypeVar("T")


@pytest.fixture
def server() -> Iterator[FakeTuyaOpenApi]:
    with serving() as start:
        yield start(FakeTuyaOpenApi(v.API_CLIENT_ID, v.API_SECRET))


def exactly(server: FakeTuyaOpenApi, path: str, code: Any = ...) -> list[Any]:
    """Requests to this very path (``server.requests`` matches any path containing it)."""
    return [r for r in server.requests(path, code) if r.path == path]


def ids_of(request: Any) -> list[str]:
    return dict(request.query)["device_ids"].split(",")


def with_directory(
    server: FakeTuyaOpenApi,
    use: Callable[[Directory], Awaitable[T]],
    calls: list[tuple[str, str]] | None = None,
    **options: Any,
) -> T:
    """Run ``use(directory)`` with a real client on the fake server."""

    async def scenario() -> T:
        client = OpenApiClient(
            Credentials(v.API_CLIENT_ID, v.API_SECRET, server.url),
            OpenApiOptions.model_validate(FAST),
        )
        async with client:
            directory = Directory(
                client,
                now_ms=lambda: NOW_MS,
                on_call=(lambda call, outcome: calls.append((call, outcome)))
                if calls is not None
                else None,
                **options,
            )
            return await use(directory)

    return asyncio.run(scenario())


async def listed(directory: Directory) -> list[list[Device]]:
    return [page async for page in directory.list_devices()]


def add_devices(server: FakeTuyaOpenApi, count: int) -> list[str]:
    ids = [f"bf{index:04d}fakedevice" for index in range(count)]
    for index, device_id in enumerate(ids):
        server.add_device(device_id, name=f"Sensor {index}", category="wsdcg")
    return ids


def assert_no_secrets(device: Device) -> None:
    for text in (repr(device), str(device.as_dict()), str(device.details())):
        for secret_field in ("local_key", "localKey", "203.0.113.7", "fakeuid0001"):
            assert secret_field not in text
    assert not hasattr(device, "local_key")


# -- details --------------------------------------------------------------------------------------


def test_45_ids_take_three_calls_of_at_most_20(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 45)
    calls: list[tuple[str, str]] = []

    found = with_directory(server, lambda d: d.details(ids), calls)

    assert sorted(found) == sorted(ids)
    sent = exactly(server, IOT_03_DETAILS)
    assert [len(ids_of(r)) for r in sent] == [20, 20, 5]
    assert [i for r in sent for i in ids_of(r)] == ids  # each id once, in order
    assert {r.code for r in sent} == {None}
    assert calls == [(DETAILS_CALL, "success")] * 3
    device = found[ids[7]]
    assert device.name == "Sensor 7" and device.category == "wsdcg"
    assert device.product_id == "fakeproduct0001" and device.online is True
    assert device.fetched_at_ms == NOW_MS and device.specification_fetched_at_ms == 0


def test_the_batch_size_is_the_directory_s(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 7)
    with_directory(server, lambda d: d.details(ids), batch_size=3)
    assert [len(ids_of(r)) for r in exactly(server, IOT_03_DETAILS)] == [3, 3, 1]


def test_more_ids_than_tuya_takes_are_refused_by_the_fake(server: FakeTuyaOpenApi) -> None:
    """The fake enforces the documented limit, so a directory batching past it would fail."""
    ids = add_devices(server, 21)
    with pytest.raises(OpenApiError) as caught:
        with_directory(server, lambda d: d.details(ids), batch_size=21)
    assert caught.value.code == 1100


def test_local_key_and_other_private_fields_never_reach_a_device(
    server: FakeTuyaOpenApi,
) -> None:
    ids = add_devices(server, 2)
    assert server.devices[ids[0]]["local_key"]  # the answer carries one, as Tuya's does

    async def use(directory: Directory) -> tuple[Any, dict[str, Device]]:
        raw = await directory.client.request(
            "GET", IOT_03_DETAILS, query={"device_ids": ",".join(ids)}
        )
        return raw, await directory.details(ids)

    raw, found = with_directory(server, use)
    assert all(item["local_key"] for item in raw["list"])
    for device in found.values():
        assert_no_secrets(device)
        assert set(device.details()) == {
            "id", "name", "product_id", "product_name", "category", "model", "time_zone",
            "icon", "online", "sub", "active_time", "create_time", "update_time",
        }  # fmt: skip


def test_unknown_ids_are_absent_and_duplicates_or_impossible_ids_are_not_sent(
    server: FakeTuyaOpenApi,
) -> None:
    ids = add_devices(server, 2)
    asked = [ids[0], "bfunknown0000", ids[1], ids[0], "a,b", "../x", ""]

    found = with_directory(server, lambda d: d.details(asked))

    assert sorted(found) == sorted(ids)
    (sent,) = exactly(server, IOT_03_DETAILS)
    assert ids_of(sent) == [ids[0], "bfunknown0000", ids[1]]


def test_no_ids_no_call(server: FakeTuyaOpenApi) -> None:
    assert with_directory(server, lambda d: d.details([])) == {}
    assert with_directory(server, lambda d: d.status([])) == {}
    assert server.requests("/v1.0/token") == []


def test_the_devices_family_answer_and_page_parameters(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 3)
    found = with_directory(server, lambda d: d.details(ids), family="devices")
    assert sorted(found) == sorted(ids)
    (sent,) = exactly(server, DEVICES_DETAILS)
    assert dict(sent.query) == {"device_ids": ",".join(ids), "page_no": "1", "page_size": "3"}
    assert exactly(server, IOT_03_DETAILS) == []


# -- the API family -------------------------------------------------------------------------------


def test_auto_falls_back_on_1106_and_remembers_the_devices_family(
    server: FakeTuyaOpenApi,
) -> None:
    ids = add_devices(server, 3)
    server.denied_families.add("iot-03")
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> tuple[Any, ...]:
        details = await directory.details(ids)
        remembered = directory.working_family
        points = await directory.specification(ids[0])
        status = await directory.status(ids)
        more = await directory.details(ids[:1])
        return details, remembered, points, status, more, directory.working_family

    details, remembered, _, status, more, working = with_directory(server, use, calls)

    assert sorted(details) == sorted(ids) and list(more) == ids[:1] and sorted(status) == ids
    assert remembered == "devices" and working == "devices"
    iot_03 = server.requests("/v1.0/iot-03/")
    assert [(r.path, r.code) for r in iot_03] == [(IOT_03_DETAILS, 1106)]  # once, then never
    assert len(exactly(server, DEVICES_DETAILS, None)) == 2
    assert len(exactly(server, f"/v1.0/devices/{ids[0]}/specifications", None)) == 1
    assert len(exactly(server, "/v1.0/devices/status", None)) == 1
    assert calls == [
        (DETAILS_CALL, "1106"),
        (DETAILS_CALL, "success"),
        (SPECIFICATION_CALL, "success"),
        (STATUS_CALL, "success"),
        (DETAILS_CALL, "success"),
    ]


def test_auto_keeps_iot_03_when_it_works(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 2)

    async def use(directory: Directory) -> str | None:
        await directory.details(ids)
        await directory.status(ids)
        return directory.working_family

    assert with_directory(server, use) == "iot-03"
    assert server.requests("/v1.0/devices") == []
    assert len(exactly(server, "/v1.0/iot-03/devices/status", None)) == 1


def test_a_remembered_family_is_used_from_the_first_call(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 2)
    with_directory(server, lambda d: d.details(ids), working_family="devices")
    assert server.requests("/v1.0/iot-03/") == []
    assert len(exactly(server, DEVICES_DETAILS, None)) == 1


@pytest.mark.parametrize("family", ["iot-03", "devices"])
def test_a_fixed_family_never_falls_back(server: FakeTuyaOpenApi, family: str) -> None:
    ids = add_devices(server, 2)
    server.denied_families.add(family)
    other = "/v1.0/devices" if family == "iot-03" else "/v1.0/iot-03/"
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> None:
        with pytest.raises(OpenApiError) as caught:
            await directory.details(ids)
        assert caught.value.code == 1106 and "link the device" in str(caught.value)
        with pytest.raises(OpenApiError):
            await directory.specification(ids[0])
        assert directory.working_family == family

    with_directory(server, use, calls, family=family)
    assert server.requests(other) == []
    assert calls == [(DETAILS_CALL, "1106"), (SPECIFICATION_CALL, "1106")]


def test_auto_raises_when_both_families_refuse(server: FakeTuyaOpenApi) -> None:
    """1106 for a device not linked to the project: no family helps, none is remembered."""
    ids = add_devices(server, 1)
    server.denied_families.update({"iot-03", "devices"})
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> str | None:
        with pytest.raises(OpenApiError) as caught:
            await directory.specification(ids[0])
        assert caught.value.code == 1106
        return directory.working_family

    assert with_directory(server, use, calls) is None
    assert calls == [(SPECIFICATION_CALL, "1106")] * 2


def test_unknown_families_are_refused() -> None:
    client = OpenApiClient(Credentials("id", "secret", "http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="family"):
        Directory(client, family="iot-04")
    with pytest.raises(ValueError, match="family"):
        Directory(client, working_family="auto")
    with pytest.raises(ValueError, match="batch_size"):
        Directory(client, batch_size=0)


# -- quota and subscription -----------------------------------------------------------------------


@pytest.mark.parametrize("code", [28841004, 28841002])
def test_quota_and_subscription_codes_raise_with_their_code_and_are_not_retried(
    server: FakeTuyaOpenApi, code: int
) -> None:
    ids = add_devices(server, 2)
    server.answer(code, times=None, path="/v1.0/iot-03/devices")
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> None:
        with pytest.raises(OpenApiError) as caught:
            await directory.details(ids)
        error = caught.value
        assert error.code == code and error.configuration and not error.retryable
        assert "Service API" in str(error)  # the hint says where to look
        assert directory.working_family is None  # only 1106 moves to the other family

    with_directory(server, use, calls)
    assert [r.code for r in exactly(server, IOT_03_DETAILS)] == [code]
    assert server.requests("/v1.0/devices") == []
    assert calls == [(DETAILS_CALL, str(code))]


def test_a_transport_failure_is_one_outcome_after_the_client_s_retries(
    server: FakeTuyaOpenApi,
) -> None:
    ids = add_devices(server, 1)
    server.answer(None, times=None, path="/v1.0/iot-03/devices/status", http_status=503)
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> None:
        with pytest.raises(OpenApiError) as caught:
            await directory.status(ids)
        assert caught.value.reason == "http_5xx"

    with_directory(server, use, calls)
    assert len(server.requests("/v1.0/iot-03/devices/status")) == 3  # the client's attempts
    assert calls == [(STATUS_CALL, "http_5xx")]


# -- specification --------------------------------------------------------------------------------


SENSOR_STATUS = [
    data_point("va_temperature", "Integer", 1, unit="℃", min=-200, max=600, scale=1, step=1),
    data_point("va_humidity", "Integer", 2, unit="%", min=0, max=100, scale=0, step=1),
    data_point("cur_voltage", "Integer", 20, unit="V", min=0, max=99999, scale=2, step=1),
    data_point("cur_current", "Integer", 18, unit="A", min=0, max=30000, scale=3, step=1),
    data_point("temp_unit_convert", "Enum", 9, range=["c", "f"]),
    data_point("switch_1", "Boolean", 3),
]
SENSOR_FUNCTIONS = [
    data_point("switch_1", "Boolean", 3),  # also in status: status wins
    data_point("countdown_1", "Integer", 7, unit="s", min=0, max=86400, scale=0, step=1),
]


@pytest.mark.parametrize(
    ("family", "path"),
    [
        ("iot-03", "/v1.0/iot-03/devices/bfsensor0001/specification"),
        ("devices", "/v1.0/devices/bfsensor0001/specifications"),
    ],
)
def test_specification_is_parsed_with_scales_ranges_and_types(
    server: FakeTuyaOpenApi, family: str, path: str
) -> None:
    server.add_device(
        "bfsensor0001", category="wsdcg", status_spec=SENSOR_STATUS, functions=SENSOR_FUNCTIONS
    )

    async def use(directory: Directory) -> tuple[Any, Any]:
        raw = await directory.client.request("GET", path)
        return raw, await directory.specification("bfsensor0001")

    raw, points = with_directory(server, use, family=family)

    assert isinstance(raw["status"][0]["values"], str)  # JSON in a string, as Tuya sends it
    assert exactly(server, path)[-1].code is None
    assert list(points) == [
        "va_temperature", "va_humidity", "cur_voltage", "cur_current", "temp_unit_convert",
        "switch_1", "countdown_1",
    ]  # fmt: skip
    temperature = points["va_temperature"]
    assert (temperature.type, temperature.unit, temperature.scale) == ("Integer", "℃", 1)
    assert (temperature.min, temperature.max, temperature.step, temperature.dp_id) == (
        -200, 600, 1, "1",
    )  # fmt: skip
    assert temperature.scaled(235) == 23.5
    assert points["va_humidity"].scale == 0 and points["va_humidity"].scaled(41) == 41
    assert points["cur_voltage"].scale == 2 and points["cur_voltage"].scaled(23012) == 230.12
    assert points["cur_current"].scale == 3 and points["cur_current"].scaled(1500) == 1.5
    mode = points["temp_unit_convert"]
    assert (mode.type, mode.range, mode.scaled("f")) == ("Enum", ("c", "f"), "f")
    switch = points["switch_1"]
    assert (switch.type, switch.dp_id, switch.scaled(True)) == ("Boolean", "3", True)
    assert points["countdown_1"].unit == "s"


def test_a_device_without_a_specification_has_no_points(server: FakeTuyaOpenApi) -> None:
    server.add_device("bfplain0001")
    assert with_directory(server, lambda d: d.specification("bfplain0001")) == {}


def test_an_impossible_id_is_not_sent(server: FakeTuyaOpenApi) -> None:
    with pytest.raises(ValueError, match="device id"):
        with_directory(server, lambda d: d.specification("x/../../v1.0/token"))
    assert server.received == []


# -- status ---------------------------------------------------------------------------------------


def test_status_per_device_batched_with_commands_read_back(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 25)
    server.add_device("bfplug0001", status={"switch_1": False, "cur_power": 125})

    async def use(directory: Directory) -> dict[str, Any]:
        await directory.client.send_commands("bfplug0001", [{"code": "switch_1", "value": True}])
        return await directory.status([*ids, "bfplug0001", "bfunknown0000"])

    status = with_directory(server, use)

    assert status["bfplug0001"] == [
        {"code": "switch_1", "value": True},
        {"code": "cur_power", "value": 125},
    ]
    assert status[ids[0]] == [] and "bfunknown0000" not in status and len(status) == 26
    sent = exactly(server, "/v1.0/iot-03/devices/status")
    assert [len(ids_of(r)) for r in sent] == [20, 7]


# -- listing --------------------------------------------------------------------------------------


def test_listing_pages_through_the_linked_app_accounts_devices(server: FakeTuyaOpenApi) -> None:
    ids = add_devices(server, 45)
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> tuple[list[list[Device]], str | None]:
        return await listed(directory), directory.working_listing

    pages, listing = with_directory(server, use, calls)

    assert [len(page) for page in pages] == [20, 20, 5]
    assert [device.id for page in pages for device in page] == ids
    assert listing == "associated-users"
    sent = exactly(server, ASSOCIATED_USERS_PATH)
    keys = [dict(r.query).get("last_row_key") for r in sent]
    assert keys[0] is None and keys[1] and keys[2] and keys[1] != keys[2]
    assert calls == [(LIST_CALL, "success")] * 3
    for device in (device for page in pages for device in page):
        assert_no_secrets(device)
        assert device.fetched_at_ms == NOW_MS and device.category == "wsdcg"
    assert pages[0][3].name == "Sensor 3"


@pytest.mark.parametrize(("count", "sizes"), [(40, [20, 20, 0]), (45, [20, 20, 5])])
def test_listing_falls_back_to_the_project_query_on_1106(
    server: FakeTuyaOpenApi, count: int, sizes: list[int]
) -> None:
    ids = add_devices(server, count)
    server.answer(1106, times=None, path=ASSOCIATED_USERS_PATH)
    calls: list[tuple[str, str]] = []

    async def use(directory: Directory) -> tuple[Any, ...]:
        first = await listed(directory)
        second = await listed(directory)
        return first, second, directory.working_listing

    first, second, listing = with_directory(server, use, calls)

    assert [len(page) for page in first] == sizes  # no has_more: a short page ends it
    assert [device.id for page in first for device in page] == ids
    assert [device.id for page in second for device in page] == ids
    assert listing == "thing"
    assert len(exactly(server, ASSOCIATED_USERS_PATH)) == 1  # the second listing goes straight
    sent = exactly(server, PROJECT_THINGS_PATH)
    assert [dict(r.query).get("last_id") for r in sent[:3]] == [None, ids[19], ids[39]]
    assert {dict(r.query)["page_size"] for r in sent} == {"20"}
    assert len(sent) == 6  # three pages, twice
    assert calls[0] == (LIST_CALL, "1106") and calls[1:] == [(LIST_CALL, "success")] * 6
    device = first[0][5]
    # camelCase fields of the project query under the names the catalogue uses
    assert (device.name, device.product_id, device.product_name) == (
        "Sensor 5", "fakeproduct0001", "Fake product",
    )  # fmt: skip
    assert device.online is True and device.time_zone == "+01:00"
    assert device.active_time is not None and device.update_time is not None
    assert_no_secrets(device)


def test_listing_does_not_fall_back_on_a_quota_error(server: FakeTuyaOpenApi) -> None:
    add_devices(server, 3)
    server.answer(28841004, times=None, path=ASSOCIATED_USERS_PATH)

    async def use(directory: Directory) -> None:
        with pytest.raises(OpenApiError) as caught:
            await listed(directory)
        assert caught.value.code == 28841004

    with_directory(server, use)
    assert server.requests(PROJECT_THINGS_PATH) == []


def test_a_refusal_after_the_first_page_is_raised_not_switched(server: FakeTuyaOpenApi) -> None:
    """Switching calls half-way would hand out the first page's devices twice."""
    add_devices(server, 25)

    async def use(directory: Directory) -> list[int]:
        sizes = []
        with pytest.raises(OpenApiError) as caught:
            async for page in directory.list_devices():
                sizes.append(len(page))
                server.answer(1106, times=None, path=ASSOCIATED_USERS_PATH)
        assert caught.value.code == 1106
        return sizes

    assert with_directory(server, use) == [20]
    assert server.requests(PROJECT_THINGS_PATH) == []


def test_an_empty_project_lists_nothing(server: FakeTuyaOpenApi) -> None:
    assert with_directory(server, listed) == [[]]
    assert len(exactly(server, ASSOCIATED_USERS_PATH)) == 1


def test_the_page_size_is_the_directory_s(server: FakeTuyaOpenApi) -> None:
    add_devices(server, 25)
    pages = with_directory(server, listed, page_size=10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert {dict(r.query)["size"] for r in exactly(server, ASSOCIATED_USERS_PATH)} == {"10"}
