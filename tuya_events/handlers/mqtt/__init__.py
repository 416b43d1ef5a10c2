"""``type: mqtt``: a two-way bridge between Tuya's cloud and an MQTT broker, with Home
Assistant discovery (docs/mqtt.md)."""

from tuya_events.handlers.mqtt.handler import MqttHandler
from tuya_events.handlers.mqtt.options import MqttOptions

__all__ = ["MqttHandler", "MqttOptions"]
