"""Tuya's notice channel: the settings, the ``NoticeWatcher`` on a real metrics registry and the
daemon's real logging, and ``PulsarSource`` consuming the notice topic on the real test broker.

The notices are built as Tuya's "Manage Pulsar Notifications" page shows them (protocol 10000,
bizCode ``HighPriorityNotice``, ``eventData`` a JSON document in a string) and go through the
real codec, encrypted as Tuya sends them.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests import vectors as v
from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import interleaved_stream
from tests.support.metrics import metric_value
from tests.support.sources import receive
from tuya_events.config.errors import ConfigError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import Settings
from tuya_events.delivery import Delivery
from tuya_events.observability.metrics import Metrics
from tuya_events.observability.notices import (
    BACKLOG_MESSAGE,
    MAX_EVENT_TYPES,
    OTHER_MESSAGE,
    NoticeWatcher,
)
from tuya_events.transport.pulsar import NoticeDelivery, PulsarSource
from tuya_events.tuya.codec import TuyaCodec, TuyaEncoder
from tuya_events.tuya.events import Event, build_event
from tuya_events.tuya.regions import notice_topic

NOTICE_PROTOCOL = 10000
SENT_MS = 1_722_432_061_033  # the ts of Tuya's sample
RECEIVE_DEADLINE_S = 30.0
QUIET_S = 2.0  # longer than the notice poll interval: a notice that was coming would have come


def notice_document(
    event_type: str = "pulsar_backlog_notice",
    ts: int | None = SENT_MS,
    event_data: Any = None,
    backlog: Any = 2004,
) -> dict[str, Any]:
    """A notice as Tuya documents it; ``event_data`` replaces the backlog's when given."""
    if event_data is None:
        event_data = orjson.dumps(
            {
                "dataCenter": "AY",
                "topic": f"{v.ACCESS_ID}/out/event",
                "subscription": f"{v.ACCESS_ID}-sub",
                "backLogNum": backlog,
            }
        ).decode()
    document: dict[str, Any] = {
        "bizCode": "HighPriorityNotice",
        "bizData": {"eventData": event_data, "eventType": event_type},
    }
    if ts is not None:
        document["ts"] = ts
    return document


def decoded(
    document: dict[str, Any], protocol: int = NOTICE_PROTOCOL, t_ms: int | None = None
) -> Event:
    """Encrypted as Tuya sends it and decoded by the codec, as the pipeline does."""
    encoder = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
    body, properties = encoder.encode(document, protocol=protocol, t_ms=t_ms)
    return TuyaCodec(v.ACCESS_SECRET, sign_check="enforce").decode(body, properties)


def warnings(logs: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("level") == "warning"]


def settings_for(
    tenant: TuyaTenant | None = None, acknowledgement: str = "individual", **tuya: Any
) -> Settings:
    """The daemon's settings for the vectors' project, or for a test broker's tenant."""
    options: dict[str, Any] = {
        "access_id": v.ACCESS_ID,
        "access_secret": v.ACCESS_SECRET,
        "region": "eu",
    }
    if tenant is not None:
        options = {
            "access_id": tenant.access_id,
            "access_secret": tenant.access_secret,
            "pulsar_url": tenant.broker_url,
        }
    return settings_from_mapping(
        {
            "tuya": {**options, **tuya},
            "consumer": {"acknowledgement": acknowledgement},
            "handlers": [{"type": "log"}],
        }
    )


# -- settings ---------------------------------------------------------------------------------


def test_notices_are_on_by_default_on_the_topic_tuya_documents() -> None:
    tuya = settings_for().tuya
    assert tuya.notices is True
    assert tuya.resolved_notice_topic == f"persistent://{v.ACCESS_ID}/out/notice"
    assert tuya.resolved_notice_topic == notice_topic(v.ACCESS_ID)
    test_environment = settings_for(environment="test").tuya
    assert test_environment.resolved_notice_topic == f"persistent://{v.ACCESS_ID}/out/notice"


def test_the_notice_topic_can_be_named_and_notices_turned_off() -> None:
    named = settings_for(notice_topic="persistent://other/out/alarms").tuya
    assert named.resolved_notice_topic == "persistent://other/out/alarms"
    assert settings_for(notices=False).tuya.notices is False


def test_a_notice_topic_that_is_the_event_topic_is_refused() -> None:
    with pytest.raises(ConfigError, match="notice_topic must not be the event topic"):
        settings_for(notice_topic=f"persistent://{v.ACCESS_ID}/out/event")
    with pytest.raises(ConfigError):
        settings_for(notice_topic="")


# -- NoticeWatcher ----------------------------------------------------------------------------


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(auto_describe=True))


def notices_total(metrics: Metrics, event_type: str = "pulsar_backlog_notice") -> float:
    return metric_value(metrics.registry, "tuya_events_notices_total", event_type=event_type)


def gauge(metrics: Metrics, name: str) -> float:
    return metric_value(metrics.registry, name)


def test_a_backlog_notice_is_logged_once_at_warning_and_sets_the_metrics(
    metrics: Metrics, captured_logs: io.StringIO
) -> None:
    event = decoded(notice_document())
    assert event.kind == "notice"
    NoticeWatcher(metrics).observe(event)

    assert notices_total(metrics) == 1
    assert gauge(metrics, "tuya_events_notice_backlog") == 2004
    assert gauge(metrics, "tuya_events_notice_last_timestamp_seconds") == SENT_MS / 1000
    [line] = warnings(captured_logs)
    assert line["event"] == BACKLOG_MESSAGE
    assert line["event_type"] == "pulsar_backlog_notice"
    assert line["data_center"] == "AY"
    assert line["topic"] == f"{v.ACCESS_ID}/out/event"
    assert line["subscription"] == f"{v.ACCESS_ID}-sub"
    assert line["backlog"] == 2004
    assert line["sent_at_ms"] == SENT_MS


def test_the_backlog_may_come_as_a_string_as_on_tuyas_chinese_page(metrics: Metrics) -> None:
    NoticeWatcher(metrics).observe(decoded(notice_document(backlog="2500")))
    assert gauge(metrics, "tuya_events_notice_backlog") == 2500


def test_a_notice_delivered_again_is_reported_once(
    metrics: Metrics, captured_logs: io.StringIO
) -> None:
    watcher = NoticeWatcher(metrics)
    watcher.observe(decoded(notice_document()))
    watcher.observe(decoded(notice_document()))  # the same notice: a redelivery
    watcher.observe(decoded(notice_document(ts=SENT_MS + 900_000)))  # 15 minutes later: a new one
    assert notices_total(metrics) == 2
    assert len(warnings(captured_logs)) == 2


def test_an_older_notice_arriving_late_does_not_move_the_gauges_back(metrics: Metrics) -> None:
    watcher = NoticeWatcher(metrics)
    watcher.observe(decoded(notice_document(ts=SENT_MS + 900_000, backlog=3100)))
    watcher.observe(decoded(notice_document(ts=SENT_MS, backlog=2004)))
    assert notices_total(metrics) == 2
    assert gauge(metrics, "tuya_events_notice_backlog") == 3100
    assert gauge(metrics, "tuya_events_notice_last_timestamp_seconds") == SENT_MS / 1000 + 900


def test_a_notice_without_ts_is_timed_by_its_envelope_else_when_it_arrives(
    metrics: Metrics,
) -> None:
    watcher = NoticeWatcher(metrics, clock=lambda: 1_800_000_000.0)
    watcher.observe(decoded(notice_document(ts=None), t_ms=SENT_MS))
    assert gauge(metrics, "tuya_events_notice_last_timestamp_seconds") == SENT_MS / 1000
    untimed = build_event(notice_document(ts=None, backlog=2600), NOTICE_PROTOCOL)
    assert untimed.kind == "notice" and untimed.timestamp_ms is None
    watcher.observe(untimed)
    assert gauge(metrics, "tuya_events_notice_last_timestamp_seconds") == 1_800_000_000.0
    assert gauge(metrics, "tuya_events_notice_backlog") == 2600


def test_another_notice_type_is_counted_and_logged_but_reports_no_backlog(
    metrics: Metrics, captured_logs: io.StringIO
) -> None:
    data = orjson.dumps({"reason": "maintenance", "backLogNum": 99}).decode()
    NoticeWatcher(metrics).observe(decoded(notice_document("broker_maintenance", event_data=data)))
    assert notices_total(metrics, "broker_maintenance") == 1
    assert notices_total(metrics) == 0
    assert gauge(metrics, "tuya_events_notice_backlog") == 0
    [line] = warnings(captured_logs)
    assert line["event"] == OTHER_MESSAGE
    assert line["event_type"] == "broker_maintenance"
    assert line["event_data"] == {"reason": "maintenance"}
    assert line["backlog"] == 99


def test_event_data_that_is_not_json_is_logged_as_it_came(
    metrics: Metrics, captured_logs: io.StringIO
) -> None:
    NoticeWatcher(metrics).observe(decoded(notice_document(event_data="backlog: lots")))
    assert notices_total(metrics) == 1
    assert gauge(metrics, "tuya_events_notice_backlog") == 0
    [line] = warnings(captured_logs)
    assert line["event_data_unparsed"] == "backlog: lots"


def test_event_types_are_bounded_labels(metrics: Metrics) -> None:
    watcher = NoticeWatcher(metrics)
    for n in range(MAX_EVENT_TYPES + 5):
        watcher.observe(decoded(notice_document(f"type_{n}", ts=SENT_MS + n)))
    types = {
        sample.labels["event_type"]
        for family in metrics.registry.collect()
        if family.name == "tuya_events_notices"
        for sample in family.samples
        if sample.name == "tuya_events_notices_total"
    }
    assert len(types) == MAX_EVENT_TYPES + 1  # the first ones, and "other"
    assert notices_total(metrics, "other") == 6  # the backlog type holds one label of its own


def test_other_events_are_left_alone(metrics: Metrics, captured_logs: io.StringIO) -> None:
    status = {"devId": "vdev1", "status": [{"code": "switch", "value": True, "t": SENT_MS}]}
    NoticeWatcher(metrics).observe(decoded(status, protocol=4))
    assert notices_total(metrics) == 0
    assert gauge(metrics, "tuya_events_notice_last_timestamp_seconds") == 0
    assert warnings(captured_logs) == []


# -- PulsarSource on the real broker ----------------------------------------------------------


def settle(read: Any, expected: Any, timeout: float = 15.0) -> Any:
    """What ``read()`` returns once it equals ``expected``, or when ``timeout`` runs out
    (acknowledgements reach the broker's statistics a moment later)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def notice_backlog(broker: PulsarBroker, tenant: TuyaTenant) -> int:
    stats = broker.admin.topic_stats(tenant.topic("notice"))
    backlog: int = stats["subscriptions"][tenant.subscription]["msgBacklog"]
    return backlog


def source_for(
    tenant: TuyaTenant, acknowledgement: str = "individual", **tuya: Any
) -> PulsarSource:
    return PulsarSource(settings_for(tenant, acknowledgement, **tuya), consumer_name="notices")


async def finish(source: PulsarSource, deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        source.acknowledge(delivery)
    await asyncio.sleep(0)  # cumulative acks go out at the end of the loop's turn


@pytest.mark.broker
@pytest.mark.parametrize("acknowledgement", ["individual", "cumulative"])
def test_a_notice_arrives_with_the_events_and_is_acknowledged_on_its_own_topic(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tuya_notice_publisher: TuyaPublisher,
    acknowledgement: str,
) -> None:
    events = 40

    async def scenario() -> list[Delivery]:
        source = source_for(tuya_tenant, acknowledgement)
        await source.start()
        try:
            assert source.notices_subscribed
            tuya_publisher.publish_all(interleaved_stream(events, 4, seed=5))
            tuya_notice_publisher.publish(notice_document(), protocol=NOTICE_PROTOCOL)
            deliveries = await receive(source, events + 1, RECEIVE_DEADLINE_S)
            deliveries += await receive(source, 1, QUIET_S)
            await finish(source, deliveries)
            return deliveries
        finally:
            await source.close()

    deliveries = asyncio.run(scenario())
    assert len(deliveries) == events + 1
    [notice] = [d for d in deliveries if isinstance(d, NoticeDelivery)]
    assert notice.topic == tuya_tenant.topic("notice")
    event = TuyaCodec(tuya_tenant.access_secret, sign_check="enforce").decode(
        notice.body, notice.properties
    )
    assert (event.kind, event.protocol, event.biz_code) == ("notice", 10000, "HighPriorityNotice")
    metrics = Metrics(CollectorRegistry(auto_describe=True))
    NoticeWatcher(metrics).observe(event)
    assert gauge(metrics, "tuya_events_notice_backlog") == 2004
    others = [d for d in deliveries if d is not notice]
    assert all(d.topic.startswith(tuya_tenant.topic() + "-partition-") for d in others)
    # The same Failover subscription name on both topics; both backlogs emptied by the acks.
    stats = pulsar_broker.admin.topic_stats(tuya_tenant.topic("notice"))
    assert stats["subscriptions"][tuya_tenant.subscription]["type"] == "Failover"
    assert settle(lambda: notice_backlog(pulsar_broker, tuya_tenant), 0) == 0
    assert pulsar_broker.settled_backlog(tuya_tenant, 0) == 0


@pytest.mark.broker
def test_an_unacknowledged_notice_comes_again_an_acknowledged_one_does_not(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tuya_notice_publisher: TuyaPublisher
) -> None:
    async def scenario() -> tuple[list[Delivery], list[Delivery]]:
        source = source_for(tuya_tenant)
        await source.start()
        try:
            for ts in (SENT_MS, SENT_MS + 900_000):
                tuya_notice_publisher.publish(notice_document(ts=ts), protocol=NOTICE_PROTOCOL)
            first = await receive(source, 2, RECEIVE_DEADLINE_S)
            await finish(source, first[:1])
        finally:
            await source.close()
        again = source_for(tuya_tenant)
        await again.start()
        try:
            return first, await receive(again, 1, RECEIVE_DEADLINE_S) + await receive(
                again, 1, QUIET_S
            )
        finally:
            await again.close()

    first, again = asyncio.run(scenario())
    assert len(first) == 2 and all(isinstance(d, NoticeDelivery) for d in first)
    assert [d.message_id for d in again] == [first[1].message_id]


@pytest.mark.broker
def test_with_notices_off_the_notice_topic_is_not_subscribed(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tuya_notice_publisher: TuyaPublisher,
) -> None:
    async def scenario() -> tuple[bool, list[Delivery]]:
        source = source_for(tuya_tenant, notices=False)
        await source.start()
        try:
            tuya_notice_publisher.publish(notice_document(), protocol=NOTICE_PROTOCOL)
            tuya_publisher.publish_all(interleaved_stream(10, 2, seed=7))
            deliveries = await receive(source, 10, RECEIVE_DEADLINE_S)
            deliveries += await receive(source, 1, QUIET_S)
            await finish(source, deliveries)
            return source.notices_subscribed, deliveries
        finally:
            await source.close()

    subscribed, deliveries = asyncio.run(scenario())
    assert subscribed is False
    assert len(deliveries) == 10
    assert not any(isinstance(d, NoticeDelivery) for d in deliveries)
    assert pulsar_broker.admin.subscriptions(tuya_tenant.topic("notice")) == []


@pytest.mark.broker
def test_a_broker_without_the_notice_topic_still_consumes_events(
    pulsar_broker: PulsarBroker, captured_logs: io.StringIO
) -> None:
    tenant = pulsar_broker.create_tenant(notice_topic=False)
    events = 20

    async def scenario() -> tuple[bool, bool, list[Delivery]]:
        source = source_for(tenant)
        await source.start()
        try:
            with TuyaPublisher(
                pulsar_broker.broker_url, pulsar_broker.service_credentials, tenant
            ) as publisher:
                publisher.publish_all(interleaved_stream(events, 3, seed=9))
            deliveries = await receive(source, events, RECEIVE_DEADLINE_S)
            await finish(source, deliveries)
            return source.connected(), source.notices_subscribed, deliveries
        finally:
            await source.close()

    connected, subscribed, deliveries = asyncio.run(scenario())
    assert connected and not subscribed
    assert len(deliveries) == events
    assert pulsar_broker.settled_backlog(tenant, 0) == 0
    [warning] = [
        w
        for w in warnings(captured_logs)
        if w["event"].startswith("cannot subscribe to Tuya's notice topic")
    ]
    assert warning["topic"] == tenant.topic("notice")
    assert warning["subscription"] == tenant.subscription
    assert tenant.access_secret not in captured_logs.getvalue()
    # Refused, not created on demand: the tenant still has no notice topic.
    assert tenant.topic("notice") not in pulsar_broker.admin.topics(f"{tenant.access_id}/out")


# -- through the daemon -------------------------------------------------------------------------


def test_the_daemon_logs_counts_and_routes_a_notice_as_an_event_of_kind_notice(
    tmp_path: Any, captured_logs: io.StringIO
) -> None:
    from tests.pipeline_support import Harness
    from tests.support.settings import make_settings
    from tests.support.waiting import wait_until
    from tuya_events.handlers.base import BaseHandler
    from tuya_events.matching import compile_match
    from tuya_events.pipeline.routes import Route

    class Kinds(BaseHandler):
        def __init__(self) -> None:
            super().__init__("pager")
            self.seen: list[tuple[str, Any]] = []

        def handle(self, event: Event, delivery: Delivery) -> None:
            self.seen.append((event.kind, getattr(event, "event_type", None)))

    pager = Kinds()
    settings = make_settings(tmp_path)

    async def scenario() -> Any:
        route = Route(pager, compile_match({"kind": "notice"}))
        async with Harness(settings, [route]) as harness:
            encoder = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
            body, properties = encoder.encode(notice_document(), protocol=NOTICE_PROTOCOL)
            harness.source.publish(body, properties, partition=0)
            for event in interleaved_stream(messages=5, devices=2):
                body, properties = encoder.encode(event.document, em=event.em, protocol=4)
                harness.source.publish(body, properties, partition=1, key=event.device_id)
            await wait_until(lambda: len(harness.source.acknowledged) == 6, timeout=20)
            return harness.daemon.metrics.registry

    registry = asyncio.run(scenario())
    assert pager.seen == [("notice", "pulsar_backlog_notice")], "only the notice matched"
    assert (
        metric_value(registry, "tuya_events_notices_total", event_type="pulsar_backlog_notice") == 1
    )
    assert metric_value(registry, "tuya_events_notice_backlog") == 2004
    assert [w["event"] for w in warnings(captured_logs)].count(BACKLOG_MESSAGE) == 1
