"""Tuya data centers: message-service and OpenAPI endpoints, topic and subscription names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Environment = Literal["prod", "test"]


@dataclass(frozen=True, slots=True)
class Region:
    pulsar_url: str
    websocket_url: str
    openapi_url: str


REGIONS: Final[dict[str, Region]] = {
    "cn": Region(
        "pulsar+ssl://mqe.tuyacn.com:7285/",
        "wss://mqe.tuyacn.com:8285/",
        "https://openapi.tuyacn.com",
    ),
    "us": Region(
        "pulsar+ssl://mqe.tuyaus.com:7285/",
        "wss://mqe.tuyaus.com:8285/",
        "https://openapi.tuyaus.com",
    ),
    "us-east": Region(
        "pulsar+ssl://mqe.tuyaus.com:7285/",
        "wss://mqe.tuyaus.com:8285/",
        "https://openapi-ueaz.tuyaus.com",
    ),
    "eu": Region(
        "pulsar+ssl://mqe.tuyaeu.com:7285/",
        "wss://mqe.tuyaeu.com:8285/",
        "https://openapi.tuyaeu.com",
    ),
    "eu-west": Region(
        "pulsar+ssl://mqe.tuyaeu.com:7285/",
        "wss://mqe.tuyaeu.com:8285/",
        "https://openapi-weaz.tuyaeu.com",
    ),
    "in": Region(
        "pulsar+ssl://mqe.tuyain.com:7285/",
        "wss://mqe.tuyain.com:8285/",
        "https://openapi.tuyain.com",
    ),
}


def event_topic(access_id: str, environment: Environment) -> str:
    """Production is partitioned (11 partitions); the test environment has its own topic."""
    name = "event" if environment == "prod" else "event-test"
    return f"persistent://{access_id}/out/{name}"


def notice_topic(access_id: str) -> str:
    """Tuya's high-priority notices (backlog alarms): a channel of its own beside the events.

    Tuya's "Manage Pulsar Notifications" page (developer.tuya.com/en/docs/iot/highpriority-notice,
    2024-08) names it ``${clientId}/out/notice`` and says to subscribe by changing only the
    topic in the SDK (so: the same subscription name). *Unverified* against live traffic: the
    ``persistent://`` form (from the "Topic and Subscription" page's topic format), whether it
    is partitioned, and whether the test environment has one of its own (nothing says so: both
    environments use this one). ``tuya.notice_topic`` overrides it.
    """
    return f"persistent://{access_id}/out/notice"


def subscription_name(access_id: str, suffix: str = "sub") -> str:
    return f"{access_id}-{suffix}"
