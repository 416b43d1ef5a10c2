"""Every topic the bridge publishes or listens on, in one place.

A device id, a data-point code or a bizCode becomes a topic level only when it is one: no
``/``, no wildcard, no NUL, not empty. Tuya's ids and codes are plain words, but they come off
the wire, and a code such as ``a/#`` must not reach another topic. A code that collides with
one of the device's own topics (``state``, ``set``, ...) is kept in the state document only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STATE = "state"
AVAILABILITY = "availability"
EVENT = "event"
SET = "set"
RESULT = "result"
BRIDGE = "bridge"
RESERVED_CODES = frozenset({STATE, AVAILABILITY, EVENT, SET, RESULT})

ONLINE = "online"
OFFLINE = "offline"

_LEVEL = re.compile(r"^[^/#+\x00]{1,200}$")
# What Home Assistant accepts in node and object ids of a discovery topic.
_DISCOVERY_ID = re.compile(r"[^A-Za-z0-9_-]")


def is_level(text: str | None) -> bool:
    """Whether ``text`` can be one topic level as it is."""
    return text is not None and bool(_LEVEL.match(text)) and not text.startswith("$")


def discovery_id(text: str) -> str:
    """A node or object id for a discovery topic: other characters become ``_``."""
    return _DISCOVERY_ID.sub("_", text)


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics under one prefix (and Home Assistant's discovery prefix)."""

    prefix: str
    discovery_prefix: str = "homeassistant"

    @property
    def bridge_availability(self) -> str:
        return f"{self.prefix}/{BRIDGE}/{AVAILABILITY}"

    def state(self, device_id: str) -> str:
        return f"{self.prefix}/{device_id}/{STATE}"

    def code(self, device_id: str, code: str) -> str:
        return f"{self.prefix}/{device_id}/{code}"

    def availability(self, device_id: str) -> str:
        return f"{self.prefix}/{device_id}/{AVAILABILITY}"

    def event(self, device_id: str, name: str) -> str:
        return f"{self.prefix}/{device_id}/{EVENT}/{name}"

    def command(self, device_id: str, code: str | None = None) -> str:
        if code is None:
            return f"{self.prefix}/{device_id}/{SET}"
        return f"{self.prefix}/{device_id}/{code}/{SET}"

    def result(self, device_id: str, code: str | None = None) -> str:
        if code is None:
            return f"{self.prefix}/{device_id}/{RESULT}"
        return f"{self.prefix}/{device_id}/{code}/{RESULT}"

    def command_filters(self) -> list[str]:
        """What the bridge subscribes to for commands: one code, or a JSON of several."""
        return [f"{self.prefix}/+/+/{SET}", f"{self.prefix}/+/{SET}"]

    def parse_command(self, topic: str) -> tuple[str, str | None] | None:
        """``(device_id, code)`` of a command topic (code None: the JSON form); None for any
        other topic."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            return None
        levels = topic[len(head) :].split("/")
        if levels[-1] != SET or len(levels) not in (2, 3):
            return None
        device_id = levels[0]
        code = levels[1] if len(levels) == 3 else None
        if not is_level(device_id) or device_id == BRIDGE:
            return None
        if code is not None and (not is_level(code) or code in RESERVED_CODES):
            return None
        return device_id, code

    def discovery(self, component: str, device_id: str, object_id: str) -> str:
        return (
            f"{self.discovery_prefix}/{component}/{discovery_id(device_id)}/"
            f"{discovery_id(object_id)}/config"
        )


def publishable_code(code: str | None) -> bool:
    """Whether a code gets a topic of its own (it is always in the state document)."""
    return is_level(code) and code not in RESERVED_CODES


def publishable_device(device_id: str | None) -> bool:
    return is_level(device_id) and device_id != BRIDGE
