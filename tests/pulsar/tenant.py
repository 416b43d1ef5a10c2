"""A Tuya cloud project as the test broker serves it: credentials, topics and subscription."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuya_events.tuya.auth import pulsar_authentication, websocket_headers

from .credentials import TuyaCredentials

if TYPE_CHECKING:
    import pulsar


@dataclass(frozen=True)
class TuyaTenant:
    """What the daemon is configured with for one project, pointed at the test broker."""

    credentials: TuyaCredentials
    broker_url: str  # pulsar://127.0.0.1:PORT
    websocket_url: str  # ws://127.0.0.1:PORT

    @property
    def access_id(self) -> str:
        return self.credentials.access_id

    @property
    def access_secret(self) -> str:
        return self.credentials.access_secret

    @property
    def subscription(self) -> str:
        return f"{self.access_id}-sub"

    def topic(self, name: str = "event") -> str:
        """``persistent://{ACCESS_ID}/out/event`` (11 partitions), ``.../event-test`` (1) or
        ``.../notice`` (not partitioned)."""
        return f"persistent://{self.access_id}/out/{name}"

    def authentication(self) -> pulsar.Authentication:
        return pulsar_authentication(self.access_id, self.access_secret)

    def websocket_headers(self) -> dict[str, str]:
        return websocket_headers(self.access_id, self.access_secret)

    def websocket_consumer_url(self, name: str = "event", **params: str | int) -> str:
        """Tuya's WebSocket consumer URL: Failover on ``{ACCESS_ID}-sub`` unless overridden."""
        query = {"subscriptionType": "Failover", **params}
        return (
            f"{self.websocket_url}/ws/v2/consumer/persistent/{self.access_id}/out/{name}/"
            f"{self.subscription}?{urllib.parse.urlencode(query)}"
        )
