"""Commands from MQTT back to devices: a real Mosquitto, a real client publishing ``.../set``,
the fake Tuya OpenAPI checking every signature and token and the 4/s command limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.support.mosquitto import (
    LIGHT,
    SENSOR,
    SOCKET,
    THERMOSTAT,
    Bridge,
    MosquittoBroker,
    Watcher,
    add_devices,
    bridge_settings,
    running_mosquitto,
)
from tests.support.servers import serving
from tests.support.waiting import wait_until

T0 = 1_700_000_000_000


@pytest.fixture
def cloud() -> Iterator[FakeTuyaOpenApi]:
    with serving() as start:
        server = start(FakeTuyaOpenApi(v.ACCESS_ID, v.ACCESS_SECRET))
        add_devices(server)
        yield server


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with running_mosquitto(tmp_path / "mosquitto") as running:
        yield running


def _result(watcher: Watcher, topic: str, index: int = -1) -> dict[str, Any]:
    return json.loads(watcher.on(topic)[index])


def _sent(cloud: FakeTuyaOpenApi) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(r.path.split("/")[-2], r.json["commands"]) for r in cloud.commands()]


def test_commands_are_checked_unscaled_sent_and_answered(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(tmp_path, broker, cloud, commands=True)

    async def scenario() -> None:
        async with (
            Watcher(broker, ("tuya/+/+/result", "tuya/+/result")) as watcher,
            Bridge(settings) as bridge,
        ):
            for device in (SOCKET, THERMOSTAT, LIGHT, SENSOR):
                bridge.report(device, T0, probe=1)  # the bridge knows a device by its events
            await wait_until(bridge.settled)
            await watcher.caught_up()

            await watcher.publish(f"tuya/{SOCKET}/switch_1/set", b"ON")
            topic = f"tuya/{SOCKET}/switch_1/result"
            await wait_until(lambda: watcher.on(topic) != [])
            assert _result(watcher, topic) == {
                "device_id": SOCKET,
                "code": "switch_1",
                "ok": True,
                "commands": [{"code": "switch_1", "value": True}],
            }
            # 21.5 degrees with scale 1 and step 5 (0.5 degrees): Tuya gets 215.
            await watcher.publish(f"tuya/{THERMOSTAT}/temp_set/set", b"21.5")
            topic = f"tuya/{THERMOSTAT}/temp_set/result"
            await wait_until(lambda: watcher.on(topic) != [])
            assert _result(watcher, topic)["ok"] is True
            # Several codes at once, in one request.
            request = {"switch_led": True, "bright_value_v2": 500, "colour_data_v2": {"h": 1}}
            await watcher.publish(f"tuya/{LIGHT}/set", json.dumps(request).encode())
            await wait_until(lambda: watcher.on(f"tuya/{LIGHT}/result") != [])
            assert _result(watcher, f"tuya/{LIGHT}/result")["ok"] is True
            assert _sent(cloud) == [
                (SOCKET, [{"code": "switch_1", "value": True}]),
                (THERMOSTAT, [{"code": "temp_set", "value": 215}]),
                (LIGHT, [{"code": c, "value": value} for c, value in request.items()]),
            ]

            refusals = [
                (f"tuya/{THERMOSTAT}/temp_set/set", b"21.3", "bad_step"),
                (f"tuya/{THERMOSTAT}/temp_set/set", b"40", "out_of_range"),
                (f"tuya/{THERMOSTAT}/temp_set/set", b"21.55", "bad_value"),
                (f"tuya/{SOCKET}/switch_1/set", b"maybe", "bad_value"),
                (f"tuya/{SENSOR}/va_temperature/set", b"20", "not_writable"),
                (f"tuya/{LIGHT}/set", b"not json", "bad_payload"),
                ("tuya/bfunknown0000000000/switch_1/set", b"ON", "unknown_device"),
            ]
            for topic, payload, _ in refusals:
                await watcher.publish(topic, payload)
            expected: dict[str, list[str]] = {}
            for topic, _, reason in refusals:
                expected.setdefault(topic.removesuffix("/set") + "/result", []).append(reason)

            def refused(answer: str) -> list[dict[str, Any]]:
                found = [json.loads(payload) for payload in watcher.on(answer)]
                return [outcome for outcome in found if not outcome["ok"]]

            for answer, reasons in expected.items():
                await wait_until(lambda a=answer, r=reasons: len(refused(a)) == len(r))
                assert [outcome["reason"] for outcome in refused(answer)] == reasons
                assert all(outcome["message"] for outcome in refused(answer))
            assert len(cloud.commands()) == 3  # none of the refused ones was sent

            # Tuya refuses: its code and text come back.
            cloud.answer(1106, path="/commands")
            await watcher.publish(f"tuya/{SOCKET}/switch_1/set", b"off")
            topic = f"tuya/{SOCKET}/switch_1/result"
            await wait_until(lambda: len(watcher.on(topic)) == 3)
            outcome = _result(watcher, topic)
            assert outcome["ok"] is False and outcome["tuya_code"] == 1106
            assert outcome["message"] == "permission deny"

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_commands_keep_to_the_rate_limit_and_their_order(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(tmp_path, broker, cloud, commands=True)
    count = 9

    async def scenario() -> None:
        async with Watcher(broker, ("tuya/+/+/result",)) as watcher, Bridge(settings) as bridge:
            bridge.report(SOCKET, T0, probe=1)
            await wait_until(bridge.settled)
            await watcher.caught_up()
            for index in range(count):
                payload = b"true" if index % 2 == 0 else b"false"
                await watcher.publish(f"tuya/{SOCKET}/switch_1/set", payload)
            topic = f"tuya/{SOCKET}/switch_1/result"
            await wait_until(lambda: len(watcher.on(topic)) == count, timeout=30)
            assert all(json.loads(p)["ok"] for p in watcher.on(topic))

    asyncio.run(asyncio.wait_for(scenario(), 60))
    # Every command accepted by the fake, which answers 1110 past 4 a second: the shared
    # client's limiter spaced them; and they reached it in the order they were published.
    assert 1110 not in cloud.codes()
    values = [commands[0]["value"] for _, commands in _sent(cloud)]
    assert values == [index % 2 == 0 for index in range(count)]


def test_a_retained_command_is_never_run(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(tmp_path, broker, cloud, commands=True)

    async def scenario() -> None:
        async with Watcher(broker, ("tuya/+/+/result",)) as watcher:
            # Left on the broker by someone, before the bridge connects.
            await watcher.publish(f"tuya/{SOCKET}/switch_1/set", b"ON", retain=True)
            async with Bridge(settings) as bridge:
                bridge.report(SOCKET, T0, probe=1)
                await wait_until(bridge.settled)
                await watcher.caught_up()
                await watcher.publish(f"tuya/{SOCKET}/switch_1/set", b"OFF")
                topic = f"tuya/{SOCKET}/switch_1/result"
                await wait_until(lambda: watcher.on(topic) != [])
            await watcher.publish(f"tuya/{SOCKET}/switch_1/set", b"", retain=True)

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert _sent(cloud) == [(SOCKET, [{"code": "switch_1", "value": False}])]
