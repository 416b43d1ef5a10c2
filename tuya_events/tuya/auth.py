"""Credentials for Tuya's message service: the derived Pulsar password and the client auth object.

Tuya's broker expects auth method ``auth1`` carrying the JSON ``{"username","password"}``.
``pulsar-client`` has no plugin API for custom methods, but ``AuthenticationBasic`` sends
``user + ":" + password`` under any method name, so splitting that JSON at the colon between
``"password"`` and its value yields exactly the bytes the broker wants.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pulsar

AUTH_METHOD = "auth1"


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def pulsar_password(access_id: str, access_secret: str) -> str:
    """The 16-character password Tuya derives from the project's key pair."""
    return md5_hex(access_id + md5_hex(access_secret))[8:24]


def auth1_command_data(access_id: str, access_secret: str) -> str:
    """The exact auth data of the CONNECT command, as Tuya's broker parses it."""
    return json.dumps(
        {"username": access_id, "password": pulsar_password(access_id, access_secret)},
        separators=(",", ":"),
    )


def basic_auth_halves(access_id: str, access_secret: str) -> tuple[str, str]:
    """Split :func:`auth1_command_data` so that ``left + ":" + right`` rebuilds it."""
    left = json.dumps({"username": access_id}, separators=(",", ":"))[:-1] + ',"password"'
    right = json.dumps(pulsar_password(access_id, access_secret)) + "}"
    return left, right


def pulsar_authentication(access_id: str, access_secret: str) -> pulsar.Authentication:
    """A ``pulsar.Client`` authentication object that speaks Tuya's ``auth1`` method."""
    import pulsar

    left, right = basic_auth_halves(access_id, access_secret)
    return pulsar.AuthenticationBasic(left, right, method=AUTH_METHOD)


def websocket_headers(access_id: str, access_secret: str) -> dict[str, str]:
    """Headers for the WebSocket API's upgrade request."""
    return {"username": access_id, "password": pulsar_password(access_id, access_secret)}


def auth_failure_hint(access_id: str, service_url: str, topic: str) -> str:
    """What to check when the broker refuses us: the questions people otherwise ask in issues."""
    return (
        f"The Tuya message service at {service_url} refused access id {access_id!r} "
        f"(topic {topic}). Check: (1) tuya.access_id and tuya.access_secret are the cloud "
        "project's Access ID/Client ID and Access Secret/Client Secret (Cloud > Development > "
        "your project > Overview), without spaces or quotes; (2) tuya.region (or "
        "tuya.pulsar_url) is the data center the project lives in; (3) tuya.environment matches "
        "the message service environment you enabled (test uses the 'event-test' topic); "
        "(4) the message service is enabled for the project and its subscription name suffix "
        "matches tuya.subscription_suffix."
    )
