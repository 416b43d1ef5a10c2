"""The mqtt handler's pure parts: topics, the newest-wins merge, payloads, command values,
options, discovery choices. No broker: the end-to-end tests are test_mqtt_bridge.py and
test_mqtt_commands.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tests.support.enriched_events import BATTERY, HUMIDITY, TEMPERATURE, thermometer
from tests.support.settings import routes_of
from tuya_events.config.errors import ConfigError
from tuya_events.handlers.mqtt.commands import CommandRefused, build_commands, coerce, parse_request
from tuya_events.handlers.mqtt.discovery import DiscoveryBuilder
from tuya_events.handlers.mqtt.options import MqttOptions
from tuya_events.handlers.mqtt.state import DeviceState, plain_payload
from tuya_events.handlers.mqtt.store import StateStore
from tuya_events.handlers.mqtt.topics import Topics
from tuya_events.tuya.devices import DataPoint, make_device
from tuya_events.tuya.events import StatusItem

TOPICS = Topics("tuya")
TEMP_SET = DataPoint("temp_set", "Integer", "2", "℃", 1, 50, 350, 5)


def test_command_topics_are_parsed_and_nothing_else() -> None:
    assert TOPICS.parse_command("tuya/dev1/switch_1/set") == ("dev1", "switch_1")
    assert TOPICS.parse_command("tuya/dev1/set") == ("dev1", None)
    for topic in (
        "tuya/dev1/switch_1",  # a state topic
        "tuya/bridge/set",  # not a device
        "tuya/dev1/state/set",  # a reserved level, not a code
        "tuya/dev1/a/b/set",
        "other/dev1/switch_1/set",
        "tuya/dev1/switch_1/result",
    ):
        assert TOPICS.parse_command(topic) is None, topic


def _item(code: str, value: object, t_ms: int | None) -> StatusItem:
    return StatusItem(code, value, t_ms, None, TEMPERATURE if code == "va_temperature" else None)


def test_merge_is_newest_wins_by_event_time() -> None:
    state = DeviceState("dev1")
    assert state.merge((_item("va_temperature", 235, 2000),), 0) == ["va_temperature"]
    assert state.merge((_item("va_temperature", 100, 1000),), 0) == []  # older: ignored
    assert state.codes["va_temperature"].scaled == 23.5
    assert state.merge((_item("va_temperature", 235, 2000),), 0) == ["va_temperature"]  # retry
    assert state.merge((_item("seq", 7, None),), 1500) == ["seq"]  # the event's time
    assert state.codes["seq"].t_ms == 1500 and state.codes["seq"].unit is None
    assert state.set_availability("offline", 3000)
    assert not state.set_availability("online", 2500)
    assert state.availability == "offline"


def test_state_survives_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "mqtt.state"

    async def write() -> DeviceState:
        store = StateStore(path)
        states = store.open()
        state = states["dev1"] = DeviceState("dev1")
        state.set_device(thermometer("dev1"))
        state.merge((_item("va_temperature", 235, 2000),), 0)
        state.set_availability("online", 5)
        state.discovered = ("homeassistant/sensor/dev1/va_temperature/config",)
        assert await store.save(state, with_device=True) is None
        gone = states["dev2"] = DeviceState("dev2")
        await store.save(gone)
        del states["dev2"]
        await store.forget("dev2")
        await store.close()
        return state

    state = asyncio.run(write())
    with path.open("ab") as log:
        log.write(b'{"id":"dev1","r":{"codes":')  # a last line cut off by a crash
    again = StateStore(path).open()
    assert list(again) == ["dev1"]
    kept = again["dev1"]
    assert kept.codes == state.codes
    assert (kept.availability, kept.availability_t_ms) == ("online", 5)
    assert kept.device is not None and kept.device.points == thermometer("dev1").points
    assert kept.discovered == state.discovered
    assert kept.document() == state.document()
    assert path.read_bytes().count(b"\n") == 2  # rewritten compactly when opened


def test_plain_payloads() -> None:
    assert plain_payload(True) == b"true"
    assert plain_payload(23.5) == b"23.5"
    assert plain_payload("low") == b"low"
    assert plain_payload("") == b'""'  # never empty: that would delete a retained topic
    assert plain_payload(None) == b"null"
    assert orjson.loads(plain_payload({"h": 1})) == {"h": 1}


def test_command_values() -> None:
    assert coerce(TEMP_SET, "21.5", True) == 215
    assert coerce(TEMP_SET, 21.5, False) == 215
    for value, reason in (("21.3", "bad_step"), ("40", "out_of_range"), ("2.15e1x", "bad_value")):
        with pytest.raises(CommandRefused) as refused:
            coerce(TEMP_SET, value, True)
        assert refused.value.reason == reason
    switch = DataPoint("switch_1", "Boolean")
    assert [coerce(switch, text, True) for text in ("ON", "off", "1", " true ")] == [
        True, False, True, True,
    ]  # fmt: skip
    assert coerce(BATTERY, '"low"', True) == "low"
    with pytest.raises(CommandRefused):
        coerce(BATTERY, "empty", True)
    colour = DataPoint("colour_data_v2", "Json")
    assert coerce(colour, '{"h": 1}', True) == {"h": 1}
    with pytest.raises(CommandRefused):
        coerce(DataPoint("bits", "Bitmap"), "1", True)
    request = parse_request(b'{"temp_set": 20, "switch_1": true}', None)
    commands = build_commands({"temp_set": TEMP_SET, "switch_1": switch}, request)
    assert commands == [{"code": "temp_set", "value": 200}, {"code": "switch_1", "value": True}]
    with pytest.raises(CommandRefused) as refused:
        build_commands({"switch_1": switch}, request)
    assert refused.value.reason == "not_writable"


def test_options_are_checked() -> None:
    MqttOptions(url="mqtt://127.0.0.1")
    problems = [
        {"url": "http://broker"},
        {"url": "mqtt://user:pw@broker"},
        {"url": "mqtt://broker", "password": "x"},
        {"url": "mqtt://broker", "prefix": "tuya/#"},
        {"url": "mqtt://broker", "prefix": "$SYS"},
        {"url": "mqtt://broker", "tls": {"verify": False}},
        {"url": "mqtt://broker", "homeassistant": {"prefix": "tuya"}},
    ]
    for options in problems:
        with pytest.raises(ValueError):
            MqttOptions.model_validate(options)
    options = MqttOptions(url="mqtts://broker.example")
    assert (options.host, options.port) == ("broker.example", 8883)


def test_a_bad_mqtt_handler_is_a_config_error_at_its_key(tmp_path: Path) -> None:
    from tests.support.settings import make_settings

    settings = make_settings(tmp_path, [{"type": "mqtt", "url": "mqtt://broker", "qos": 2}])
    with pytest.raises(ConfigError) as error:
        routes_of(settings)
    assert error.value.problems[0][0] == "handlers[0].qos"


def test_discovery_without_commands_offers_nothing_that_would_send_one() -> None:
    socket = make_device(
        {"id": "plug1", "name": "Plug", "category": "cz", "model": "P1"},
        [DataPoint("switch_1", "Boolean"), DataPoint("countdown_1", "Integer", unit="s")],
    )
    with_commands = DiscoveryBuilder(TOPICS, True, "sensor").configs(socket)
    assert [(c.component, c.object_id) for c in with_commands] == [
        ("switch", "switch_1"),
        ("sensor", "countdown_1"),
    ]
    without = DiscoveryBuilder(TOPICS, False, "ignore").configs(socket)
    assert [(c.component, c.object_id) for c in without] == [("binary_sensor", "switch_1")]
    assert "command_topic" not in without[0].payload


def test_discovery_of_a_sensor_names_units_and_classes() -> None:
    configs = DiscoveryBuilder(TOPICS, False, "sensor").configs(thermometer("dev1"))
    by_code = {config.object_id: config.payload for config in configs}
    assert by_code["va_temperature"]["unit_of_measurement"] == "°C"
    assert by_code["va_temperature"]["device_class"] == "temperature"
    assert by_code["va_humidity"]["name"] == HUMIDITY.name  # the user's name for it
    assert by_code["battery_state"]["device_class"] == "enum"
    assert by_code["battery_state"]["options"] == ["low", "middle", "high"]
    assert configs[0].topic == "homeassistant/sensor/dev1/va_temperature/config"
