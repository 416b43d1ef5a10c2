"""The demo's cloud (tuya_events/cli/demo_cloud.py) on 127.0.0.1, called through the daemon's
real OpenAPI client: what the catalogue will ask of it, answered from the simulator's devices."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests import vectors as v
from tuya_events.cli.demo_cloud import DemoCloud
from tuya_events.openapi.client import Credentials, OpenApiClient, OpenApiOptions
from tuya_events.openapi.errors import OpenApiError
from tuya_events.transport.simulator import SimulatedSource, TuyaSimulator
from tuya_events.tuya.codec import TuyaCodec, TuyaEncoder
from tuya_events.tuya.devices import make_device, parse_specification

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05}

Published = list[tuple[bytes, dict[str, str], int, str]]
Scenario = Callable[[DemoCloud, OpenApiClient], Awaitable[Any]]


def simulator(devices: int = 6, published: Published | None = None) -> TuyaSimulator:
    sent = published if published is not None else []
    return TuyaSimulator(
        TuyaEncoder(v.API_CLIENT_ID, v.API_SECRET),
        lambda *message: sent.append(message),
        devices=devices,
        seed=7,
    )


def client_for(url: str, secret: str = v.API_SECRET, **options: Any) -> OpenApiClient:
    return OpenApiClient(
        Credentials(v.API_CLIENT_ID, secret, url),
        OpenApiOptions.model_validate({**FAST, **options}),
    )


def with_cloud(
    scenario: Scenario, sim: TuyaSimulator | None = None, secret: str = v.API_SECRET, **kw: Any
) -> Any:
    """Run ``scenario`` against a started demo cloud, with a client of ``secret``."""
    legacy = kw.get("legacy", False)

    async def run() -> Any:
        cloud = DemoCloud(sim or simulator(), v.API_CLIENT_ID, v.API_SECRET, **kw)
        url = await cloud.start()
        try:
            async with client_for(url, secret, legacy_signing=legacy) as client:
                return await scenario(cloud, client)
        finally:
            await cloud.close()

    return asyncio.run(run())


def test_batch_details_carry_names_products_and_the_local_key_the_daemon_drops() -> None:
    sim = simulator()
    ids = [device.device_id for device in sim.devices]

    async def scenario(cloud: DemoCloud, client: OpenApiClient) -> tuple[Any, Any]:
        query = {"device_ids": ",".join([*ids[:3], "bfnotinthisproject"])}
        iot_03 = await client.request("GET", "/v1.0/iot-03/devices", query=query)
        devices = await client.request("GET", "/v1.0/devices", query=query)
        return iot_03, devices

    iot_03, devices = with_cloud(scenario, sim)
    assert iot_03["total"] == 3 and iot_03["has_more"] is False
    assert [item["id"] for item in iot_03["list"]] == ids[:3]  # the unknown id is left out
    assert [item["id"] for item in devices["devices"]] == ids[:3]
    plug, sensor, door = iot_03["list"]
    assert (plug["name"], plug["category"]) == ("Desk plug", "cz")
    assert (sensor["name"], sensor["category"]) == ("Kitchen sensor", "wsdcg")
    assert (door["name"], door["category"]) == ("Hall door", "mcs")
    assert sensor["product_id"] == sim.devices[1].product_key
    assert sensor["product_name"] == "Temperature and humidity sensor"
    for item in iot_03["list"]:
        assert len(item["local_key"]) == 16 and int(item["local_key"], 16) >= 0
        assert {"model", "online", "time_zone", "icon", "active_time", "create_time"} <= set(item)
        assert "local_key" not in make_device(item).as_dict()
    assert devices["devices"][0]["local_key"] == plug["local_key"]  # one key per device


def test_names_stay_unique_with_many_devices() -> None:
    names = [device.name for device in simulator(devices=40).devices]
    assert len(set(names)) == 40
    assert {"Desk plug", "Kitchen sensor", "Hall door", "Kitchen sensor 2"} <= set(names)


def test_specifications_describe_the_values_the_simulator_sends() -> None:
    published: Published = []
    sim = simulator(devices=6, published=published)
    for _ in range(300):
        sim.step()

    async def scenario(cloud: DemoCloud, client: OpenApiClient) -> dict[str, Any]:
        specs = {}
        for device in sim.devices[:3]:
            path = f"/v1.0/iot-03/devices/{device.device_id}/specification"
            specs[device.kind] = await client.request("GET", path)
            legacy_path = f"/v1.0/devices/{device.device_id}/specifications"
            assert await client.request("GET", legacy_path) == specs[device.kind]
        return specs

    specs = with_cloud(scenario, sim)
    temperature = parse_specification(specs["sensor"])["va_temperature"]
    assert (temperature.type, temperature.unit, temperature.scale) == ("Integer", "℃", 1)
    humidity = parse_specification(specs["sensor"])["va_humidity"]
    assert (humidity.unit, humidity.scale) == ("%", 0)
    power = parse_specification(specs["plug"])["cur_power"]
    assert (power.type, power.unit, power.scale) == ("Integer", "W", 1)
    assert parse_specification(specs["plug"])["switch_1"].type == "Boolean"
    door = parse_specification(specs["door"])
    assert door["doorcontact_state"].type == "Boolean"
    assert (door["battery_percentage"].type, door["battery_percentage"].unit) == ("Integer", "%")
    assert specs["sensor"]["status"][0]["dp_id"] == 1 and specs["sensor"]["category"] == "wsdcg"

    codec = TuyaCodec(v.API_SECRET)
    checked = 0
    temperatures = []
    for body, properties, _, key in published:
        try:
            event = codec.decode(body, properties)
        except Exception:
            continue  # the simulator's damaged messages
        device = sim.device(key)
        assert device is not None
        points = parse_specification(specs[device.kind])
        assert event.product_key == device.product_key  # the productKey is the product_id
        for item in event.document.get("status", []):
            point = points[item["code"]]
            value = item["value"]
            if point.type == "Integer":
                assert isinstance(value, int) and point.min <= value <= point.max  # type: ignore[operator]
            elif point.type == "Boolean":
                assert isinstance(value, bool)
            else:
                assert point.type == "Enum" and value in point.range  # type: ignore[operator]
            if item["code"] == "va_temperature":
                temperatures.append(point.scaled(value))
            checked += 1
    assert checked > 300
    assert temperatures and all(18.0 <= t <= 26.0 for t in temperatures)


def test_status_shows_the_devices_current_state_and_commands_set_it() -> None:
    published: Published = []
    sim = simulator(published=published)
    plug, sensor = sim.devices[0], sim.devices[1]

    async def scenario(cloud: DemoCloud, client: OpenApiClient) -> tuple[Any, ...]:
        ids = {"device_ids": f"{plug.device_id},{sensor.device_id}"}
        before = await client.request("GET", "/v1.0/iot-03/devices/status", query=ids)
        sent = await client.send_commands(plug.device_id, [{"code": "switch_1", "value": True}])
        after = await client.request("GET", "/v1.0/devices/status", query=ids)
        one = await client.request("GET", f"/v1.0/iot-03/devices/{plug.device_id}/status")
        with pytest.raises(OpenApiError) as refused:
            await client.send_commands(sensor.device_id, [{"code": "va_temperature", "value": 1}])
        return before, sent, after, one, refused.value

    before, sent, after, one, refused = with_cloud(scenario, sim)
    assert [item["id"] for item in before] == [plug.device_id, sensor.device_id]
    assert {"code": "switch_1", "value": False} in before[0]["status"]
    assert {"code": "va_temperature", "value": 215} in before[1]["status"]
    assert sent is True
    assert {"code": "switch_1", "value": True} in after[0]["status"]
    assert {"code": "switch_1", "value": True} in one
    assert refused.code == 2008  # a status code is not a function: Tuya refuses it
    # The plug reported the change, as a real one does: the daemon sees the command's effect.
    ((body, properties, _, key),) = published
    report = TuyaCodec(v.API_SECRET).decode(body, properties).document
    assert key == plug.device_id
    assert [(s["code"], s["value"]) for s in report["status"]] == [("switch_1", True)]


def test_listings_page_through_every_device() -> None:
    sim = simulator(devices=5)
    ids = [device.device_id for device in sim.devices]

    async def scenario(cloud: DemoCloud, client: OpenApiClient) -> tuple[list[Any], list[Any]]:
        pages, key = [], ""
        while True:
            page = await client.request(
                "GET",
                "/v1.0/iot-01/associated-users/devices",
                query={"size": "2", "last_row_key": key},
            )
            pages.append(page)
            key = page["last_row_key"]
            if not page["has_more"]:
                break
        whole = await client.request(
            "GET", "/v1.0/iot-01/associated-users/devices", query={"size": "5"}
        )
        assert len(whole["devices"]) == 5 and whole["has_more"] is False  # nothing after it
        things = [await client.request("GET", "/v2.0/cloud/thing/device?page_size=3")]
        last = things[0][-1]["id"]
        query = {"page_size": "3", "last_id": last}
        things.append(await client.request("GET", "/v2.0/cloud/thing/device", query=query))
        return pages, things

    pages, things = with_cloud(scenario, sim)
    assert [len(page["devices"]) for page in pages] == [2, 2, 1]
    assert [page["has_more"] for page in pages] == [True, True, False]
    assert [d["id"] for page in pages for d in page["devices"]] == ids
    assert pages[0]["devices"][0]["name"] == "Desk plug" and "local_key" in pages[0]["devices"][0]
    assert [len(page) for page in things] == [3, 2]
    assert [d["id"] for page in things for d in page] == ids
    assert things[0][1]["productName"] == "Temperature and humidity sensor"  # v2.0 camelCase


def test_a_wrong_secret_gets_1004_and_a_bad_token_1010() -> None:
    async def wrong_secret(cloud: DemoCloud, client: OpenApiClient) -> OpenApiError:
        with pytest.raises(OpenApiError) as refused:
            await client.request("GET", "/v1.0/iot-03/devices?device_ids=x")
        return refused.value

    assert with_cloud(wrong_secret, secret="0" * 32).code == 1004

    async def bad_token(cloud: DemoCloud, client: OpenApiClient) -> list[int | None]:
        codes = []
        for token in ("not-a-token", ""):
            with pytest.raises(OpenApiError) as refused:
                await client.request("GET", "/v1.0/devices?device_ids=x", access_token=token)
            codes.append(refused.value.code)
        for path in ("/v1.0/devices/bfnosuchdevice", "/v1.0/iot-03/devices/x/specifications"):
            with pytest.raises(OpenApiError) as refused:
                await client.request("GET", path)
            codes.append(refused.value.code)
        return codes

    # No token, an unknown one; then (with a good token) an unknown device and a wrong path.
    assert with_cloud(bad_token) == [1010, 1010, 1106, 1108]


def test_legacy_signing_projects_are_served_too() -> None:
    async def scenario(cloud: DemoCloud, client: OpenApiClient) -> Any:
        device = cloud.simulator.devices[2]
        return await client.request("GET", f"/v1.0/devices/{device.device_id}")

    assert with_cloud(scenario, legacy=True)["name"] == "Hall door"


def test_bound_before_the_loop_and_served_as_a_service_of_the_simulated_source() -> None:
    """The demo's way: the URL is known before the daemon's loop runs; the source starts and
    stops the cloud in that loop, next to the devices."""
    encoder = TuyaEncoder(v.API_CLIENT_ID, v.API_SECRET)
    source = SimulatedSource(encoder, rate=50, devices=3, seed=1)
    cloud = DemoCloud(source.simulator, v.API_CLIENT_ID, v.API_SECRET)
    source.services.append(cloud)
    url = cloud.bind()

    async def run() -> Any:
        await source.start()
        try:
            async with client_for(url) as client:
                device = source.simulator.devices[0]
                return await client.request("GET", f"/v1.0/iot-03/devices/{device.device_id}")
        finally:
            await source.close()

    assert asyncio.run(run())["name"] == "Desk plug"
    with pytest.raises(RuntimeError):
        cloud.base_url  # noqa: B018  # closed: the port is given back
