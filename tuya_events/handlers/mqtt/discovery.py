"""Home Assistant discovery configs, built from the catalogue's view of a device.

Which component a data point becomes is decided by its code (Tuya's standard instruction set
names the same thing the same way across products), then by the device's category, then by
the unit. The codes a light, a cover or a climate entity takes are not offered again as
sensors. Without commands (``commands: false``) nothing that would send one is offered:
switches become binary sensors, covers and lights their sensors.

Entities read the per-code topics (plain payloads), so a value template is needed only where
Tuya's value is not what Home Assistant expects (``pir`` for motion, 0-1000 for a colour
temperature in kelvin, ...). Each config names the device (identifiers, name, model,
manufacturer Tuya) and two availability topics, the bridge's and the device's, both needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tuya_events import __version__
from tuya_events.handlers.mqtt.topics import Topics, discovery_id, publishable_code
from tuya_events.tuya.devices import INTEGER, DataPoint, Device

MANUFACTURER = "Tuya"
BOOLEAN = "Boolean"
ENUM = "Enum"

# Home Assistant's spelling of the units Tuya writes its own way.
UNITS = {"℃": "°C", "°c": "°C", "c": "°C", "℉": "°F", "°f": "°F", "lux": "lx", "ug/m3": "µg/m³"}

# code -> (device_class, state_class, default name)
SENSORS: dict[str, tuple[str | None, str | None, str]] = {
    "va_temperature": ("temperature", "measurement", "Temperature"),
    "temp_current": ("temperature", "measurement", "Temperature"),
    "temp_indoor": ("temperature", "measurement", "Temperature"),
    "temp_current_f": ("temperature", "measurement", "Temperature"),
    "va_humidity": ("humidity", "measurement", "Humidity"),
    "humidity_value": ("humidity", "measurement", "Humidity"),
    "humidity_current": ("humidity", "measurement", "Humidity"),
    "humidity_indoor": ("humidity", "measurement", "Humidity"),
    "cur_power": ("power", "measurement", "Power"),
    "cur_current": ("current", "measurement", "Current"),
    "cur_voltage": ("voltage", "measurement", "Voltage"),
    "add_ele": ("energy", "total_increasing", "Energy"),
    "battery_percentage": ("battery", "measurement", "Battery"),
    "va_battery": ("battery", "measurement", "Battery"),
    "battery_value": ("battery", "measurement", "Battery"),
    "residual_electricity": ("battery", "measurement", "Battery"),
    "bright_value_sensor": ("illuminance", "measurement", "Illuminance"),
    "illuminance_value": ("illuminance", "measurement", "Illuminance"),
    "co2_value": ("carbon_dioxide", "measurement", "CO2"),
    "pm25_value": ("pm25", "measurement", "PM2.5"),
    "battery_state": ("enum", None, "Battery level"),
}
# The unit, when a code is not in SENSORS: what it measures.
UNIT_CLASSES = {
    "°C": "temperature",
    "°F": "temperature",
    "W": "power",
    "kW": "power",
    "mA": "current",
    "A": "current",
    "V": "voltage",
    "kWh": "energy",
    "lx": "illuminance",
}
# Batteries report 0-100 without always saying %.
_PERCENT_CLASSES = {"battery": "%", "humidity": "%"}

# code -> (device_class, values meaning "on"; None: the Boolean true)
BINARY_SENSORS: dict[str, tuple[str, tuple[str, ...] | None, str]] = {
    "doorcontact_state": ("door", None, "Door"),
    "pir": ("motion", ("pir",), "Motion"),
    "presence_state": ("occupancy", ("presence",), "Presence"),
    "smoke_sensor_status": ("smoke", ("alarm",), "Smoke"),
    "smoke_sensor_state": ("smoke", ("1", "alarm"), "Smoke"),
    "watersensor_state": ("moisture", ("alarm",), "Water leak"),
    "gas_sensor_status": ("gas", ("alarm",), "Gas"),
    "gas_sensor_state": ("gas", ("1", "alarm"), "Gas"),
    "ch4_sensor_state": ("gas", ("1", "alarm"), "Gas"),
    "temper_alarm": ("tamper", None, "Tamper"),
}

SOCKET_CATEGORIES = frozenset({"cz", "pc"})
LIGHT_CATEGORIES = frozenset({"dj", "dd", "xdd", "fwd", "dc", "tgq", "tgkg", "fsd", "gyd", "tyndj"})
COVER_CATEGORIES = frozenset({"cl", "clkg", "mc"})
CLIMATE_CATEGORIES = frozenset({"wk", "wkf", "wkcz"})

_SWITCH = re.compile(r"^switch(_\d+|_usb\d*)?$")
BRIGHTNESS = ("bright_value_v2", "bright_value")
COLOUR_TEMPERATURE = ("temp_value_v2", "temp_value")
COLOUR = ("colour_data_v2", "colour_data")
WARMEST_K, COLDEST_K = 2700, 6500
# For plain sensors: the types whose values fit Home Assistant's 255-character state.
_PLAIN_TYPES = frozenset({BOOLEAN, INTEGER, ENUM})


@dataclass(frozen=True, slots=True)
class Config:
    """One entity: ``homeassistant/<component>/<node>/<object>/config`` and its payload."""

    component: str
    object_id: str
    payload: dict[str, Any] = field(hash=False, compare=False)
    topic: str = ""


def unit_of(point: DataPoint | None) -> str | None:
    if point is None or point.unit is None:
        return None
    unit = point.unit.strip()
    return UNITS.get(unit.lower(), UNITS.get(unit, unit)) or None


def _name(point: DataPoint, default: str | None) -> str | None:
    """The name a user gave the data point in the app, else ours, else the code."""
    return point.name or default or point.code


class DiscoveryBuilder:
    def __init__(self, topics: Topics, commands: bool, unknown_codes: str) -> None:
        self.topics = topics
        self.commands = commands
        self.unknown_codes = unknown_codes

    def configs(self, device: Device) -> list[Config]:
        points = {code: point for code, point in device.points.items() if publishable_code(code)}
        taken: set[str] = set()
        configs: list[Config] = []
        category = device.category or ""
        for build in (self._light, self._cover, self._climate):
            found = build(device, points, category, taken)
            if found is not None:
                configs.append(found)
        for code, point in points.items():
            if code in taken:
                continue
            config = self._single(device, point, category)
            if config is not None:
                configs.append(config)
        return [
            Config(c.component, c.object_id, _without_nulls(c.payload), self._topic(device, c))
            for c in configs
        ]

    def _topic(self, device: Device, config: Config) -> str:
        return self.topics.discovery(config.component, device.id, config.object_id)

    # -- what every config carries ------------------------------------------------------------

    def _base(self, device: Device, object_id: str, name: str | None) -> dict[str, Any]:
        topics = self.topics
        model = device.model or device.product_name
        info: dict[str, Any] = {
            "identifiers": [f"tuya_{device.id}"],
            "name": device.name or device.id,
            "manufacturer": MANUFACTURER,
        }
        if model:
            info["model"] = model
        if device.product_id:
            info["model_id"] = device.product_id
        return {
            "name": name,
            "unique_id": f"tuya_{device.id}_{discovery_id(object_id)}",
            "device": info,
            "origin": {"name": "tuya-events", "sw_version": __version__},
            "availability": [
                {"topic": topics.bridge_availability},
                {"topic": topics.availability(device.id)},
            ],
            "availability_mode": "all",
            "qos": 1,
        }

    # -- one data point -----------------------------------------------------------------------

    def _single(self, device: Device, point: DataPoint, category: str) -> Config | None:
        code = point.code
        state_topic = self.topics.code(device.id, code)
        binary = BINARY_SENSORS.get(code)
        if binary is not None:
            device_class, on_values, default = binary
            payload = self._base(device, code, _name(point, default))
            payload.update(
                state_topic=state_topic,
                device_class=device_class,
                value_template=_on_template(on_values),
            )
            return Config("binary_sensor", code, payload)
        if _SWITCH.match(code) and point.type == BOOLEAN:
            return self._switch(device, point, category)
        sensor = SENSORS.get(code)
        if sensor is not None:
            return self._sensor(device, point, *sensor)
        unit = unit_of(point)
        if point.type == INTEGER and unit in UNIT_CLASSES:
            return self._sensor(device, point, UNIT_CLASSES[unit], "measurement", None)
        if self.unknown_codes == "sensor" and point.type in _PLAIN_TYPES:
            payload = self._base(device, code, _name(point, None))
            payload["state_topic"] = state_topic
            if unit:
                payload["unit_of_measurement"] = unit
            if point.type == INTEGER:
                payload["state_class"] = "measurement"
            return Config("sensor", code, payload)
        return None

    def _sensor(
        self,
        device: Device,
        point: DataPoint,
        device_class: str | None,
        state_class: str | None,
        default: str | None,
    ) -> Config:
        code = point.code
        payload = self._base(device, code, _name(point, default))
        payload["state_topic"] = self.topics.code(device.id, code)
        if device_class is not None:
            payload["device_class"] = device_class
        if device_class == "enum":
            if point.range:
                payload["options"] = list(point.range)
        else:
            unit = unit_of(point) or _PERCENT_CLASSES.get(device_class or "")
            if unit:
                payload["unit_of_measurement"] = unit
            if state_class is not None:
                payload["state_class"] = state_class
            if point.scale:
                payload["suggested_display_precision"] = point.scale
        return Config("sensor", code, payload)

    def _switch(self, device: Device, point: DataPoint, category: str) -> Config:
        code = point.code
        single = code in ("switch", "switch_1") and not any(
            other != code and _SWITCH.match(other) for other in device.points
        )
        default = None if single else code.replace("_", " ").capitalize()
        payload = self._base(device, code, point.name or default)
        state_topic = self.topics.code(device.id, code)
        if not self.commands:
            payload.update(state_topic=state_topic, device_class="power", payload_on="true")
            payload["payload_off"] = "false"
            return Config("binary_sensor", code, payload)
        payload.update(
            state_topic=state_topic,
            command_topic=self.topics.command(device.id, code),
            payload_on="true",
            payload_off="false",
            state_on="true",
            state_off="false",
            device_class="outlet" if category in SOCKET_CATEGORIES else "switch",
        )
        return Config("switch", code, payload)

    # -- several data points --------------------------------------------------------------------

    def _light(
        self, device: Device, points: dict[str, DataPoint], category: str, taken: set[str]
    ) -> Config | None:
        power = points.get("switch_led")
        if power is None or not self.commands:
            return None
        if category not in LIGHT_CATEGORIES and not any(code in points for code in BRIGHTNESS):
            return None
        topics = self.topics
        payload = self._base(device, "light", power.name)
        payload.update(
            command_topic=topics.command(device.id, "switch_led"),
            state_topic=topics.code(device.id, "switch_led"),
            payload_on="true",
            payload_off="false",
            state_value_template="{{ 'true' if value == 'true' else 'false' }}",
        )
        taken.add("switch_led")
        brightness = _first(points, BRIGHTNESS, INTEGER)
        if brightness is not None and brightness.max:
            low = int(brightness.min or 0)
            payload.update(
                brightness_command_topic=topics.command(device.id, brightness.code),
                brightness_state_topic=topics.code(device.id, brightness.code),
                brightness_scale=int(brightness.max),
                # Home Assistant goes down to 1; Tuya's lowest brightness is often 10 or 25.
                brightness_command_template=f"{{{{ [value | int, {low}] | max }}}}",
            )
            taken.add(brightness.code)
        temperature = _first(points, COLOUR_TEMPERATURE, INTEGER)
        if temperature is not None and temperature.max:
            top = int(temperature.max)
            span = COLDEST_K - WARMEST_K
            payload.update(
                color_temp_kelvin=True,
                min_kelvin=WARMEST_K,
                max_kelvin=COLDEST_K,
                color_temp_command_topic=topics.command(device.id, temperature.code),
                color_temp_command_template=(
                    f"{{{{ ((value - {WARMEST_K}) * {top} / {span}) | round | int }}}}"
                ),
                color_temp_state_topic=topics.code(device.id, temperature.code),
                color_temp_value_template=(
                    f"{{{{ ({WARMEST_K} + (value | float) * {span} / {top}) | round | int }}}}"
                ),
            )
            taken.add(temperature.code)
        colour = _first(points, COLOUR, "Json")
        if colour is not None:
            top = 1000 if colour.code.endswith("_v2") else 255
            payload.update(
                hs_command_topic=topics.command(device.id, colour.code),
                hs_command_template=(
                    '{"h": {{ hue | int }}, "s": {{ (sat * '
                    + f"{top} / 100) | int }}}}, "
                    + f'"v": {top}}}'
                ),
                hs_state_topic=topics.code(device.id, colour.code),
                hs_value_template=(
                    "{% set c = value | from_json %}{{ c.h }},{{ (c.s * 100 / "
                    + f"{top}) | round(1) }}}}"
                ),
            )
            taken.add(colour.code)
        return Config("light", "light", payload)

    def _cover(
        self, device: Device, points: dict[str, DataPoint], category: str, taken: set[str]
    ) -> Config | None:
        control = points.get("control")
        if category not in COVER_CATEGORIES or control is None or not self.commands:
            return None
        topics = self.topics
        payload = self._base(device, "cover", control.name)
        values = set(control.range or ())
        payload.update(
            command_topic=topics.command(device.id, "control"),
            payload_open="open" if "open" in values or not values else None,
            payload_close="close" if "close" in values or not values else None,
            payload_stop="stop" if "stop" in values or not values else None,
            device_class="curtain" if category == "cl" else "shade",
        )
        taken.add("control")
        position = points.get("percent_state") or points.get("percent_control")
        if position is not None:
            payload.update(
                position_topic=topics.code(device.id, position.code),
                position_open=100,
                position_closed=0,
            )
            taken.add(position.code)
        target = points.get("percent_control")
        if target is not None:
            payload["set_position_topic"] = topics.command(device.id, target.code)
            taken.add(target.code)
        return Config("cover", "cover", payload)

    def _climate(
        self, device: Device, points: dict[str, DataPoint], category: str, taken: set[str]
    ) -> Config | None:
        target = points.get("temp_set")
        if category not in CLIMATE_CATEGORIES or target is None or not self.commands:
            return None
        topics = self.topics
        payload = self._base(device, "climate", target.name)
        step = (target.step or 1) / 10**target.scale
        payload.update(
            temperature_command_topic=topics.command(device.id, "temp_set"),
            temperature_state_topic=topics.code(device.id, "temp_set"),
            temperature_unit="F" if unit_of(target) == "°F" else "C",
            temp_step=step,
            precision=0.1 if step < 0.5 else (0.5 if step < 1 else 1.0),
        )
        if target.min is not None:
            payload["min_temp"] = target.scaled(target.min)
        if target.max is not None:
            payload["max_temp"] = target.scaled(target.max)
        taken.add("temp_set")
        current = points.get("temp_current")
        if current is not None:
            payload["current_temperature_topic"] = topics.code(device.id, "temp_current")
            taken.add("temp_current")
        power = points.get("switch")
        if power is not None and power.type == BOOLEAN:
            payload.update(
                modes=["off", "heat"],
                mode_command_topic=topics.command(device.id, "switch"),
                mode_command_template="{{ 'true' if value == 'heat' else 'false' }}",
                mode_state_topic=topics.code(device.id, "switch"),
                mode_state_template="{{ 'heat' if value == 'true' else 'off' }}",
            )
            taken.add("switch")
        else:
            payload["modes"] = ["heat"]
        return Config("climate", "climate", payload)


def _first(points: dict[str, DataPoint], codes: tuple[str, ...], kind: str) -> DataPoint | None:
    for code in codes:
        point = points.get(code)
        if point is not None and point.type == kind:
            return point
    return None


def _on_template(on_values: tuple[str, ...] | None) -> str:
    if on_values is None:
        return "{{ 'ON' if value == 'true' else 'OFF' }}"
    listed = ", ".join(f"'{value}'" for value in on_values)
    return f"{{{{ 'ON' if value in [{listed}] else 'OFF' }}}}"


def _without_nulls(payload: dict[str, Any]) -> dict[str, Any]:
    """Options left unset; ``name`` stays, where null means "named after the device"."""
    return {key: value for key, value in payload.items() if value is not None or key == "name"}
