"""The mqtt handler end to end: encrypted messages -> the daemon's pipeline -> a real Mosquitto,
read back by a real MQTT client; devices enriched from the fake Tuya OpenAPI."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.support.metrics import handler_outcomes
from tests.support.mosquitto import (
    CURTAIN,
    DOOR,
    LIGHT,
    MOTION,
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
from tests.support.paths import ROOT, importable_tests_env
from tests.support.pki import make_pki
from tests.support.servers import serving
from tests.support.waiting import wait_until

T0 = 1_700_000_000_000

# What Home Assistant's MQTT docs require of each component's config (besides what every
# entity discovered with a device needs: unique_id, device with identifiers).
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "light": {"command_topic"},
    "cover": set(),
    "climate": set(),
}
# Units Home Assistant accepts for the device classes we give.
UNITS = {
    "temperature": {"°C", "°F"},
    "humidity": {"%"},
    "battery": {"%"},
    "power": {"W", "kW"},
    "voltage": {"V"},
    "current": {"A", "mA"},
}


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


def run(scenario: Any) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, 60))


def test_state_availability_events_and_retained_topics(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(tmp_path, broker, cloud)

    async def scenario() -> None:
        async with Watcher(broker, ("tuya/#",)) as watcher, Bridge(settings) as bridge:
            await wait_until(lambda: watcher.last("tuya/bridge/availability") == b"online")
            bridge.report(SENSOR, T0, va_temperature=235, va_humidity=61)
            bridge.report(SENSOR, T0 + 1000, battery_state="low")
            bridge.device_event(SENSOR, "offline", T0 + 2000)
            await wait_until(bridge.settled)
            await watcher.caught_up()
            assert watcher.last(f"tuya/{SENSOR}/va_temperature") == b"23.5"
            assert watcher.last(f"tuya/{SENSOR}/va_humidity") == b"61"
            assert watcher.last(f"tuya/{SENSOR}/battery_state") == b"low"
            state = json.loads(watcher.last(f"tuya/{SENSOR}/state") or b"{}")
            assert state["name"] == "Cellar"
            assert state["values"] == {
                "va_temperature": 23.5,
                "va_humidity": 61,
                "battery_state": "low",
            }
            assert state["codes"]["va_temperature"] == {
                "value": 235, "scaled": 23.5, "unit": "℃", "name": None, "t": T0,
            }  # fmt: skip
            assert watcher.last(f"tuya/{SENSOR}/availability") == b"offline"
            event = json.loads(watcher.last(f"tuya/{SENSOR}/event/offline") or b"{}")
            assert event["event"]["event_name"] == "offline"
            assert event["event"]["device"]["name"] == "Cellar"
            assert bridge.store.count() == 0

        # A client that connects afterwards gets the retained state (and the bridge is gone).
        async with Watcher(broker, ("tuya/#",)) as late:
            await wait_until(lambda: late.last(f"tuya/{SENSOR}/state") is not None)
            retained = {seen.topic: seen for seen in late.seen}
            assert retained[f"tuya/{SENSOR}/va_temperature"].retain
            assert retained[f"tuya/{SENSOR}/va_temperature"].payload == b"23.5"
            assert retained[f"tuya/{SENSOR}/availability"].payload == b"offline"
            assert retained["tuya/bridge/availability"].payload == b"offline"  # stopped cleanly
            assert f"tuya/{SENSOR}/event/offline" not in retained  # events are not retained

    run(scenario())


def _check_config(topic: str, config: dict[str, Any], published: set[str]) -> None:
    component = topic.split("/")[1]
    missing = REQUIRED[component] - set(config)
    assert not missing, f"{topic} lacks {missing}"
    assert config["unique_id"].startswith("tuya_")
    device = config["device"]
    assert device["identifiers"] and device["name"] and device["manufacturer"] == "Tuya"
    assert device["model"]
    topics = [a["topic"] for a in config["availability"]]
    assert topics[0] == "tuya/bridge/availability" and len(topics) == 2
    assert config["availability_mode"] == "all"
    for key, value in config.items():
        if key.endswith("_topic") and not key.endswith(("command_topic", "set_position_topic")):
            assert value in published, f"{topic}: {key} {value} is never published"
    device_class = config.get("device_class")
    if component == "sensor" and device_class in UNITS:
        assert config["unit_of_measurement"] in UNITS[device_class], topic


def test_home_assistant_discovery(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(
        tmp_path, broker, cloud, homeassistant={"discovery": True}, commands=True
    )

    async def scenario() -> None:
        async with (
            Watcher(broker, ("tuya/#", "homeassistant/#")) as watcher,
            Bridge(settings) as bridge,
        ):
            bridge.report(SENSOR, T0, va_temperature=235, va_humidity=61, battery_state="high")
            bridge.report(
                SOCKET, T0, switch_1=True, cur_power=125, cur_voltage=2301, cur_current=540
            )
            colour = '{"h":120,"s":1000,"v":1000}'
            bridge.report(
                LIGHT, T0, switch_led=True, bright_value_v2=500, temp_value_v2=0,
                colour_data_v2=colour,
            )  # fmt: skip
            bridge.report(DOOR, T0, doorcontact_state=False, battery_percentage=90)
            bridge.report(MOTION, T0, pir="pir")
            bridge.report(CURTAIN, T0, control="open", percent_control=40, percent_state=40)
            bridge.report(THERMOSTAT, T0, switch=True, temp_set=215, temp_current=198)
            await wait_until(bridge.settled)
            await watcher.caught_up()
            await wait_until(lambda: len(watcher.topics("homeassistant/")) >= 13)
            configs = {
                s.topic: json.loads(s.payload) for s in watcher.seen if s.topic.endswith("/config")
            }
            published = set(watcher.topics("tuya/"))
            for topic, config in configs.items():
                _check_config(topic, config, published)
            by_object = {topic.split("/", 2)[2]: topic.split("/")[1] for topic in configs}
            assert len(configs) == 13, sorted(by_object)
            assert by_object[f"{SENSOR}/va_temperature/config"] == "sensor"
            assert by_object[f"{SOCKET}/switch_1/config"] == "switch"
            assert by_object[f"{LIGHT}/light/config"] == "light"
            assert by_object[f"{DOOR}/doorcontact_state/config"] == "binary_sensor"
            assert by_object[f"{MOTION}/pir/config"] == "binary_sensor"
            assert by_object[f"{CURTAIN}/cover/config"] == "cover"
            assert by_object[f"{THERMOSTAT}/climate/config"] == "climate"
            temperature = configs[f"homeassistant/sensor/{SENSOR}/va_temperature/config"]
            assert temperature["device_class"] == "temperature"
            assert temperature["unit_of_measurement"] == "°C"
            assert temperature["state_topic"] == f"tuya/{SENSOR}/va_temperature"
            light = configs[f"homeassistant/light/{LIGHT}/light/config"]
            assert light["brightness_scale"] == 1000
            assert light["command_topic"] == f"tuya/{LIGHT}/switch_led/set"
            # The codes the light takes are not offered again as sensors.
            assert f"homeassistant/sensor/{LIGHT}/bright_value_v2/config" not in configs
            climate = configs[f"homeassistant/climate/{THERMOSTAT}/climate/config"]
            assert (climate["min_temp"], climate["max_temp"], climate["temp_step"]) == (5, 35, 0.5)
            motion = configs[f"homeassistant/binary_sensor/{MOTION}/pir/config"]
            assert motion["device_class"] == "motion" and "'pir'" in motion["value_template"]

            # Home Assistant restarted: every config again.
            before = len(watcher.on(f"homeassistant/sensor/{SENSOR}/va_temperature/config"))
            await watcher.publish("homeassistant/status", b"online")
            await wait_until(
                lambda: (
                    len(watcher.on(f"homeassistant/sensor/{SENSOR}/va_temperature/config")) > before
                )
            )
            # A device deleted from the project: its configs and retained topics are cleared.
            bridge.device_event(SENSOR, "delete", T0 + 5000)
            await wait_until(bridge.settled)
            await watcher.caught_up()
            topic = f"homeassistant/sensor/{SENSOR}/va_temperature/config"
            await wait_until(lambda: watcher.last(topic) == b"")
            assert watcher.last(f"tuya/{SENSOR}/state") == b""
            assert SENSOR not in bridge.handler.states
            assert bridge.store.count() == 0

    run(scenario())


def test_restart_keeps_state_and_older_redelivery_never_wins(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(tmp_path, broker, cloud)

    async def scenario() -> None:
        async with Bridge(settings) as bridge:
            bridge.report(SENSOR, T0 + 2000, data_id="newer", va_temperature=300, va_humidity=40)
            await wait_until(bridge.settled)
        # A new daemon on the same state directory; an older report comes again.
        async with Watcher(broker, ("tuya/#",)) as watcher, Bridge(settings) as bridge:
            await wait_until(lambda: watcher.last(f"tuya/{SENSOR}/va_humidity") == b"40")
            seen = len(watcher.seen)
            bridge.report(SENSOR, T0 + 1000, data_id="older", va_temperature=100, va_humidity=50)
            bridge.report(SENSOR, T0 + 3000, data_id="newest", va_humidity=45)
            await wait_until(bridge.settled)
            await watcher.caught_up()
            await wait_until(lambda: watcher.last(f"tuya/{SENSOR}/va_humidity") == b"45")
            later = [s.topic for s in watcher.seen[seen:]]
            assert f"tuya/{SENSOR}/va_temperature" not in later  # the older value never went out
            state = json.loads(watcher.last(f"tuya/{SENSOR}/state") or b"{}")
            assert state["values"] == {"va_temperature": 30.0, "va_humidity": 45}

    run(scenario())


def _values(watcher: Watcher, device: str) -> list[int]:
    return [int(payload) for payload in watcher.on(f"tuya/{device}/counter")]


def test_broker_restart_mid_stream_loses_nothing_and_keeps_order(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    devices = [SENSOR, SOCKET, DOOR]
    count = 150

    async def scenario(broker: MosquittoBroker) -> None:
        settings = bridge_settings(tmp_path, broker, cloud)
        watching = Watcher(broker, ("tuya/+/counter",), persistent="order-watcher")
        async with watching as watcher, Bridge(settings) as bridge:
            for seq in range(count):
                for device in devices:
                    bridge.report(device, T0 + seq, data_id=f"{device}-{seq}", counter=seq)
                if seq == count // 3:
                    await wait_until(lambda: len(bridge.source.acknowledged) > 30)
                    await asyncio.to_thread(broker.restart)
                await asyncio.sleep(0.002)
            await wait_until(bridge.settled, timeout=40)
            assert bridge.handler.connection.connections >= 2  # it did reconnect
            registry = bridge.daemon.metrics.registry
            assert handler_outcomes(registry, "mqtt", "retry") > 0  # events met the outage
            assert bridge.store.count() == 0  # nothing dead-lettered
            for device in devices:
                await wait_until(lambda d=device: _values(watcher, d)[-1:] == [count - 1])
        for device in devices:
            values = _values(watcher, device)
            assert sorted(set(values)) == list(range(count)), device  # nothing lost
            assert values == sorted(values), device  # in order (a resend repeats, never reorders)

    with running_mosquitto(tmp_path / "mosquitto", persistence=True) as broker:
        run(scenario(broker))


def test_a_broker_that_forgot_everything_gets_the_retained_state_again(
    tmp_path: Path, broker: MosquittoBroker, cloud: FakeTuyaOpenApi
) -> None:
    settings = bridge_settings(tmp_path, broker, cloud, homeassistant={"discovery": True})

    async def scenario() -> None:
        async with Bridge(settings) as bridge:
            bridge.report(SENSOR, T0, va_temperature=235)
            await wait_until(bridge.settled)
            await asyncio.to_thread(broker.restart)  # no persistence: retained messages gone
            await wait_until(lambda: bridge.handler.connection.connections == 2)
            async with Watcher(broker, ("tuya/#", "homeassistant/#")) as late:
                await wait_until(lambda: late.last(f"tuya/{SENSOR}/va_temperature") == b"23.5")
                await wait_until(lambda: late.last(f"tuya/{SENSOR}/state") is not None)
                await wait_until(lambda: late.last("tuya/bridge/availability") == b"online")
                config = f"homeassistant/sensor/{SENSOR}/va_temperature/config"
                await wait_until(lambda: late.last(config) is not None)

    run(scenario())


def test_an_unreachable_broker_is_an_outage_not_a_dead_letter(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    with running_mosquitto(tmp_path / "mosquitto", users={"bridge": "right-pass-0123"}) as broker:
        settings = bridge_settings(
            tmp_path, broker, cloud, username="bridge", password="wrong-pass-4567"
        )

        async def scenario() -> None:
            async with Bridge(settings) as bridge:
                connection = bridge.handler.connection
                assert not connection.connected
                assert "refused" in (connection.last_error or "")
                bridge.report(SENSOR, T0, va_temperature=235)
                registry = bridge.daemon.metrics.registry
                await wait_until(lambda: handler_outcomes(registry, "mqtt", "retry") >= 2)
                assert bridge.source.unacknowledged  # waiting, not acknowledged
                assert bridge.store.count() == 0  # and never dead-lettered

        run(scenario())


KILLED_BRIDGE = """
import asyncio, sys
from pathlib import Path
from tests.support.settings import make_settings
from tuya_events.handlers.base import HandlerContext
from tuya_events.handlers.mqtt import MqttHandler, MqttOptions
from tuya_events.observability.metrics import Metrics

async def main():
    settings = make_settings(Path(sys.argv[2]), state={"directory": sys.argv[2]})
    handler = MqttHandler("mqtt", MqttOptions(url=sys.argv[1]), HandlerContext(settings, Metrics()))
    await handler.start()
    print("connected" if handler.connection.connected else "not connected", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_last_will_says_offline_when_the_bridge_is_killed(
    tmp_path: Path, broker: MosquittoBroker
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_BRIDGE, broker.url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=importable_tests_env(),
    )

    async def scenario() -> None:
        async with Watcher(broker, ("tuya/bridge/availability",)) as watcher:
            line = b"-"
            while line.strip() not in (b"connected", b"not connected", b""):
                line = await asyncio.to_thread(process.stdout.readline)  # type: ignore[union-attr]
            assert line.strip() == b"connected"
            await wait_until(lambda: watcher.last("tuya/bridge/availability") == b"online")
            os.kill(process.pid, signal.SIGKILL)
            await wait_until(lambda: watcher.last("tuya/bridge/availability") == b"offline")
        async with Watcher(broker, ("tuya/bridge/availability",)) as late:
            await wait_until(lambda: late.seen != [])
            assert late.seen[-1].payload == b"offline" and late.seen[-1].retain

    try:
        run(scenario())
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def test_tls_verified_with_a_password_file(
    tmp_path: Path, cloud: FakeTuyaOpenApi, captured_logs: io.StringIO
) -> None:
    pki = make_pki(tmp_path, "127.0.0.1", "mqtt")
    secret = "bridge-pass-3b9d71"
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(secret + "\n")
    users = {"bridge": secret, "watcher": "watcher-pass-55"}
    with running_mosquitto(tmp_path / "mosquitto", users=users, tls=pki) as broker:
        tls = {"ca_file": str(pki.ca)}
        settings = bridge_settings(
            tmp_path, broker, cloud, username="bridge", password_file=str(password_file), tls=tls
        )
        client_tls = ssl.create_default_context(cafile=str(pki.ca))

        async def scenario() -> None:
            async with (
                Watcher(
                    broker, ("tuya/#",), "watcher", "watcher-pass-55", tls=client_tls
                ) as watcher,
                Bridge(settings) as bridge,
            ):
                assert bridge.handler.connection.connected
                bridge.report(SENSOR, T0, va_temperature=235)
                await wait_until(bridge.settled)
                await watcher.caught_up()
                await wait_until(lambda: watcher.last(f"tuya/{SENSOR}/va_temperature") == b"23.5")

        run(scenario())
        assert secret not in captured_logs.getvalue()

        # Another CA than the broker's: the bridge does not connect, and says why.
        other = make_pki(tmp_path, "127.0.0.1", "other")
        wrong = bridge_settings(
            tmp_path / "wrong", broker, cloud, username="bridge",
            password_file=str(password_file), tls={"ca_file": str(other.ca)},
        )  # fmt: skip

        async def refused() -> None:
            async with Bridge(wrong) as bridge:
                assert not bridge.handler.connection.connected
                assert "CERTIFICATE_VERIFY_FAILED" in (bridge.handler.connection.last_error or "")

        run(refused())


def test_tls_with_a_client_certificate(tmp_path: Path, cloud: FakeTuyaOpenApi) -> None:
    server = make_pki(tmp_path, "127.0.0.1", "mqtt")
    client = make_pki(tmp_path, "tuya-events-bridge", "client")
    with running_mosquitto(tmp_path / "mosquitto", tls=server, client_ca=client.ca) as broker:
        tls = {
            "ca_file": str(server.ca),
            "cert_file": str(client.cert),
            "key_file": str(client.key),
        }
        settings = bridge_settings(tmp_path, broker, cloud, tls=tls, protocol="3.1.1")

        async def scenario() -> None:
            async with Bridge(settings) as bridge:
                assert bridge.handler.connection.connected
                bridge.report(SENSOR, T0, va_temperature=235)
                await wait_until(bridge.settled)
                assert bridge.store.count() == 0

        run(scenario())
