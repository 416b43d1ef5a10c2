"""A small client of the broker's admin REST API: readiness and the Tuya-shaped topology."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tuya_events.tuya.auth import websocket_headers

from .credentials import TuyaCredentials

CLUSTER = "standalone"
# Tuya's production topic has 11 partitions; its test-environment topic has one.
TUYA_TOPICS = {"event": 11, "event-test": 1}
# The notice channel (tuya_events/tuya/regions.py: notice_topic). Tuya does not say whether it
# is partitioned; a non-partitioned one, like most low-traffic topics.
NOTICE_TOPIC = "notice"


class AdminError(RuntimeError):
    """The admin API answered with an error status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")
        self.status = status


class PulsarAdmin:
    """Admin REST calls, logged in with Tuya-style ``username``/``password`` headers."""

    def __init__(self, admin_url: str, credentials: TuyaCredentials, timeout: float = 30.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._headers = websocket_headers(credentials.access_id, credentials.access_secret)
        self._timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One call; the decoded JSON answer (None when empty). Raises :class:`AdminError`."""
        url = f"{self.admin_url}/admin/v2/{path.lstrip('/')}"
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise AdminError(method, url, error.code, detail) from None
        return json.loads(payload) if payload.strip() else None

    def is_ready(self) -> bool:
        """The standalone has created its cluster and the ``public/default`` namespace."""
        try:
            return CLUSTER in (self.request("GET", "clusters") or []) and "public/default" in (
                self.request("GET", "namespaces/public") or []
            )
        except (OSError, AdminError, ValueError):
            return False

    def create_tuya_tenant(self, access_id: str, notice_topic: bool = True) -> None:
        """Tenant ``{access_id}``, namespace ``{access_id}/out``, its partitioned topics and the
        notice topic. Without the notice topic, the namespace creates no topic on demand either
        (as on Tuya's side), so subscribing to it is refused instead of creating it."""
        tenant = {"adminRoles": [], "allowedClusters": [CLUSTER]}
        self.request("PUT", f"tenants/{access_id}", tenant)
        self.request("PUT", f"namespaces/{access_id}/out")
        for topic, partitions in TUYA_TOPICS.items():
            self.request("PUT", f"persistent/{access_id}/out/{topic}/partitions", partitions)
        if notice_topic:
            self.request("PUT", f"persistent/{access_id}/out/{NOTICE_TOPIC}")
        else:
            self.request(
                "POST",
                f"namespaces/{access_id}/out/autoTopicCreation",
                {"allowAutoTopicCreation": False},
            )

    def subscriptions(self, topic: str) -> list[str]:
        """The subscriptions of ``topic`` (``persistent://...``, not partitioned)."""
        path = topic.removeprefix("persistent://")
        return list(self.request("GET", f"persistent/{path}/subscriptions") or [])

    def topic_stats(self, topic: str) -> dict[str, Any]:
        """``stats`` of a non-partitioned ``topic``: its subscriptions, their type and backlog."""
        path = topic.removeprefix("persistent://")
        stats: dict[str, Any] = self.request("GET", f"persistent/{path}/stats")
        return stats

    def topics(self, namespace: str) -> list[str]:
        """Every topic of ``tenant/namespace``, partitions included."""
        return list(self.request("GET", f"namespaces/{namespace}/topics") or [])

    def partitions(self, topic_path: str) -> int:
        """Partition count of ``tenant/namespace/topic`` (0 for a non-partitioned topic)."""
        return self.request("GET", f"persistent/{topic_path}/partitions")["partitions"]

    def backlog(self, topic: str, subscription: str) -> int:
        """Unacknowledged messages of ``subscription`` on the partitioned ``topic``."""
        path = topic.removeprefix("persistent://")
        stats = self.request("GET", f"persistent/{path}/partitioned-stats")
        return stats["subscriptions"][subscription]["msgBacklog"]
