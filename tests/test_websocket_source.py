"""The WebSocket source (tuya_events/transport/websocket.py) against Pulsar's WebSocket API on
loopback (tests/support/websocket_api.py: a real WebSocket server that behaves as the proxy
does): frames, the subscription Tuya's SDKs make, the receive window, acknowledgement only after
settling, reconnects, keepalive, refusals with hints, TLS, notices, and the daemon running with
no pulsar-client at all, its connection state in the metric and ``/readyz``. The Source
contract and the daemon's broker scenarios run on the real broker's WebSocket API too
(tests/test_source_contract.py, tests/test_daemon_broker.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import vectors as v
from tests.support.http import http_get
from tests.support.paths import importable_tests_env
from tests.support.pki import make_pki
from tests.support.ports import free_port
from tests.support.servers import serving
from tests.support.sources import receive
from tests.support.waiting import wait_for, wait_until
from tests.support.websocket_api import (
    LoopbackWebSocketApi,
    message_id_bytes,
    websocket_source_for,
)
from tuya_events.config.errors import ConfigError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.delivery import Delivery
from tuya_events.transport.websocket import (
    PublishTimes,
    SourceUnavailable,
    WebSocketSource,
    partition_of,
)
from tuya_events.tuya.codec import TuyaEncoder

DEADLINE_S = 20.0
QUIET_S = 0.5  # several poll intervals: what was coming would have come
KEYS = ("vdev-a", "vdev-b", "vdev-c", "vdev-d")

# pulsar-client made unimportable, as on a machine it has no wheel for.
NO_PULSAR = textwrap.dedent(
    """
    import importlib.abc, sys
    class NoPulsar(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("pulsar", "_pulsar"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, NoPulsar())
    """
)


@pytest.fixture
def api() -> Iterator[LoopbackWebSocketApi]:
    with serving() as start:
        yield start(LoopbackWebSocketApi(v.ACCESS_ID, v.ACCESS_SECRET))


def source_on(api: LoopbackWebSocketApi, **options: Any) -> WebSocketSource:
    return websocket_source_for(api.url, v.ACCESS_ID, v.ACCESS_SECRET, **options)


@asynccontextmanager
async def started(source: WebSocketSource) -> AsyncIterator[WebSocketSource]:
    await source.start()
    try:
        yield source
    finally:
        await source.close()


def publish(api: LoopbackWebSocketApi, count: int, start: int = 0) -> list[str]:
    return [
        api.publish(b"\x00\xff body %d" % n, {"em": "aes_gcm", "n": str(n)}, KEYS[n % len(KEYS)])
        for n in range(start, start + count)
    ]


def number(delivery: Delivery) -> int:
    return int(delivery.properties["n"])


async def acknowledged(api: LoopbackWebSocketApi, ids: set[str], topic: str = "event") -> None:
    await wait_until(lambda: ids <= api.acked(topic), DEADLINE_S)


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "partition"),
    [
        (message_id_bytes(17, 1, 0), 0),
        (message_id_bytes(2**40, 2**33, 10), 10),
        (message_id_bytes(17, 1, 300), 300),  # two bytes: past the common layout
        (message_id_bytes(17, 300, -1), -1),  # a topic without partitions: the field left out
        (b"\x08\x11\x10\x01\x18" + b"\xff" * 9 + b"\x01", -1),  # int32 -1 written explicitly
        (message_id_bytes(17, 1, 3) + b"\x20\x05\x2a\x02\x01\x02", 3),  # batch index, ack set
        (b"\x08\x11\x10\x05\x22\x00", -1),  # a length-delimited field before any partition
        (b"", -1),
    ],
)
def test_the_partition_is_read_from_the_message_id(raw: bytes, partition: int) -> None:
    assert partition_of(raw) == partition


def test_publish_times_in_the_proxys_format_become_epoch_milliseconds() -> None:
    times = PublishTimes()
    assert times("2024-05-01T12:20:30.123+0200") == 1_714_558_830_123
    assert times("2024-05-01T12:20:30.999+0200") == 1_714_558_830_999  # same second, remembered
    assert times("2024-05-01T10:20:30.123Z") == 1_714_558_830_123
    assert times("2024-05-01T10:20:30Z") == 1_714_558_830_000
    assert times("not a time") == 0
    assert times(None) == 0


def test_frames_become_deliveries_as_the_broker_stored_them(api: LoopbackWebSocketApi) -> None:
    ids = publish(api, 12)
    stored = {m.message_id: m for m in api.topics[f"persistent://{v.ACCESS_ID}/out/event"].messages}

    async def scenario() -> list[Delivery]:
        async with started(source_on(api)) as source:
            return await receive(source, 12, DEADLINE_S)

    deliveries = asyncio.run(scenario())
    assert [d.message_id for d in sorted(deliveries, key=number)] == ids
    partitions = set()
    for delivery in deliveries:
        message = stored[delivery.message_id]
        assert delivery.body == message.body
        assert delivery.properties == message.properties
        assert delivery.key == message.key
        assert delivery.partition == message.partition
        assert (
            delivery.topic == f"persistent://{v.ACCESS_ID}/out/event-partition-{message.partition}"
        )
        assert delivery.redelivery_count == 0
        assert proxy_time_ms(message.publish_time) == delivery.publish_time_ms
        partitions.add(delivery.partition)
    assert len(partitions) > 1  # the keys spread over partitions, each read back from its id


def proxy_time_ms(text: str) -> int:
    from datetime import datetime

    return round(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


def test_subscribes_as_tuyas_sdks_do_with_a_window_and_no_ack_timeout(
    api: LoopbackWebSocketApi,
) -> None:
    async def scenario() -> None:
        source = source_on(api, consumer={"max_in_flight": 250}, consumer_name="daemon-1")
        async with started(source):
            pass

    asyncio.run(scenario())
    events, notices = api.handshakes
    assert events["topic"] == f"persistent://{v.ACCESS_ID}/out/event"
    assert events["subscription"] == f"{v.ACCESS_ID}-sub"
    assert events["query"] == {
        "subscriptionType": "Failover",
        "receiverQueueSize": "250",
        "consumerName": "daemon-1",
    }
    assert {"username", "password"} <= set(events["headers"])  # checked by the server: 101
    assert notices["topic"] == f"persistent://{v.ACCESS_ID}/out/notice"
    assert notices["query"]["receiverQueueSize"] == "10"


# -- the window, and acknowledgement after settling ------------------------------------------


def test_the_window_bounds_what_is_held_and_each_acknowledgement_opens_it(
    api: LoopbackWebSocketApi,
) -> None:
    ids = publish(api, 35)

    async def scenario() -> list[list[Delivery]]:
        rounds = []
        async with started(source_on(api, consumer={"max_in_flight": 10})) as source:
            while sum(map(len, rounds)) < 35:
                held = await receive(source, min(10, 35 - sum(map(len, rounds))), DEADLINE_S)
                held += await receive(source, 1, QUIET_S)  # nothing beyond the window comes
                rounds.append(held)
                for delivery in held:
                    source.acknowledge(delivery)
            await acknowledged(api, set(ids))
        return rounds

    rounds = asyncio.run(scenario())
    assert [len(held) for held in rounds] == [10, 10, 10, 5]
    assert api.max_pending == 10
    assert sorted(number(d) for held in rounds for d in held) == list(range(35))


def test_nothing_is_acknowledged_before_the_source_is_told(api: LoopbackWebSocketApi) -> None:
    publish(api, 6)

    async def scenario() -> tuple[set[str], set[str], set[str]]:
        async with started(source_on(api)) as source:
            deliveries = await receive(source, 6, DEADLINE_S)
            await asyncio.sleep(QUIET_S)
            before = api.acked()
            chosen = {d.message_id for d in deliveries if number(d) in (1, 4)}
            for delivery in deliveries:
                if delivery.message_id in chosen:
                    source.acknowledge(delivery)
            await acknowledged(api, chosen)
            await asyncio.sleep(QUIET_S)
            return before, chosen, api.acked()

    before, chosen, after = asyncio.run(scenario())
    assert before == set()
    assert after == chosen


# -- reconnects and keepalive -----------------------------------------------------------------


def test_a_dropped_connection_comes_back_with_only_the_unacknowledged_again(
    api: LoopbackWebSocketApi,
) -> None:
    publish(api, 10)

    async def scenario() -> tuple[list[Delivery], list[Delivery], list[Delivery], bool]:
        async with started(source_on(api)) as source:
            first = await receive(source, 10, DEADLINE_S)
            even = [d for d in first if number(d) % 2 == 0]
            for delivery in even:
                source.acknowledge(delivery)
            await acknowledged(api, {d.message_id for d in even})
            assert source.events is not None
            await asyncio.to_thread(api.drop)
            await wait_until(lambda: source.events.connections == 2 and source.connected())
            again = await receive(source, 5, DEADLINE_S)
            more = await receive(source, 1, QUIET_S)
            for delivery in first:  # received before the drop, finished after it
                if number(delivery) % 2:
                    source.acknowledge(delivery)
            await acknowledged(api, {d.message_id for d in first})
            return first, again, more, source.connected()

    first, again, more, connected = asyncio.run(scenario())
    odd = {d.message_id: number(d) for d in first if number(d) % 2}
    assert {d.message_id: number(d) for d in again} == odd
    assert all(d.redelivery_count == 1 for d in again)
    assert more == [] and connected


def test_while_the_service_is_down_it_is_not_connected_and_acks_wait_for_it(
    api: LoopbackWebSocketApi,
) -> None:
    publish(api, 4)

    async def scenario() -> tuple[bool, bool, bool]:
        async with started(source_on(api)) as source:
            deliveries = await receive(source, 4, DEADLINE_S)
            up = source.connected()
            await asyncio.to_thread(api.stop)
            await wait_until(lambda: not source.connected(), DEADLINE_S)
            for delivery in deliveries:
                source.acknowledge(delivery)
            await asyncio.sleep(QUIET_S)
            down = source.connected()
            await asyncio.to_thread(api.start)
            await acknowledged(api, {d.message_id for d in deliveries})
            return up, down, source.connected()

    assert asyncio.run(scenario()) == (True, False, True)


def test_unanswered_pings_close_the_connection_and_it_reconnects(
    api: LoopbackWebSocketApi,
) -> None:
    async def scenario() -> int:
        async with started(source_on(api, heartbeat=0.2)) as source:
            assert source.events is not None
            await wait_until(lambda: api.pings >= 2)  # pings while pongs come: no reconnect
            assert source.events.connections == 1
            api.answer_pings = False
            await wait_until(lambda: source.events.connections >= 2, DEADLINE_S)
            api.answer_pings = True
            await wait_until(source.connected, DEADLINE_S)
            publish(api, 1)
            return len(await receive(source, 1, DEADLINE_S))

    assert asyncio.run(scenario()) == 1


# -- refusals, with what to check ---------------------------------------------------------------


def unavailable(source: WebSocketSource) -> str:
    async def scenario() -> str:
        with pytest.raises(SourceUnavailable) as refused:
            await source.start()
        assert not source.connected()
        await source.close()  # again, as the daemon does
        return str(refused.value)

    return asyncio.run(scenario())


def test_a_refused_login_says_what_to_check_without_the_secret(
    api: LoopbackWebSocketApi,
) -> None:
    wrong = "W" * 32
    message = unavailable(websocket_source_for(api.url, v.ACCESS_ID, wrong))
    assert api.refused == [401]
    for what in (v.ACCESS_ID, "tuya.access_secret", "tuya.region", "tuya.websocket_url"):
        assert what in message
    assert wrong not in message and v.PULSAR_PASSWORD not in message


def test_a_refused_subscription_and_an_unreachable_service_say_so(
    api: LoopbackWebSocketApi,
) -> None:
    api.refuse["/out/event"] = 500
    message = unavailable(source_on(api))
    assert "did not accept the subscription" in message and "HTTP 500" in message
    api.stop()
    message = unavailable(source_on(api))
    assert "cannot reach" in message and api.url in message


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[LoopbackWebSocketApi, Path]]:
    pki = make_pki(tmp_path, "127.0.0.1", "websocket")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    with serving() as start:
        yield start(LoopbackWebSocketApi(v.ACCESS_ID, v.ACCESS_SECRET, ssl_context=context)), pki.ca


def test_tls_is_verified_by_default_against_the_ca_given(
    tls_api: tuple[LoopbackWebSocketApi, Path],
) -> None:
    api, ca = tls_api
    message = unavailable(source_on(api))
    assert "could not be verified" in message and "tls.ca_file" in message
    publish(api, 1)

    async def consume(tls: dict[str, Any]) -> int:
        async with started(source_on(api, tls=tls)) as source:
            return len(await receive(source, 1, DEADLINE_S))

    assert asyncio.run(consume({"ca_file": str(ca)})) == 1
    assert asyncio.run(consume({"insecure": True})) == 1  # unchecked, only when told


# -- notices ----------------------------------------------------------------------------------


def test_notices_come_first_and_are_acknowledged_on_their_own_subscription(
    api: LoopbackWebSocketApi,
) -> None:
    publish(api, 5)
    notice = api.publish(b"a notice", {"em": "aes_gcm"}, topic="notice")

    async def scenario() -> list[Delivery]:
        async with started(source_on(api)) as source:
            await wait_until(lambda: len(source._events) == 5 and len(source._notices) == 1)
            batch = await source.receive_batch()
            for delivery in batch:
                source.acknowledge(delivery)
            await acknowledged(api, {notice}, "notice")
            await acknowledged(api, {d.message_id for d in batch[1:]})
            return batch

    batch = asyncio.run(scenario())
    assert batch[0].message_id == notice and batch[0].partition == -1
    assert batch[0].topic == f"persistent://{v.ACCESS_ID}/out/notice"
    assert len(batch) == 6
    assert notice not in api.acked("event")


def test_a_refused_notice_topic_costs_the_notices_only(
    api: LoopbackWebSocketApi, captured_logs: Any
) -> None:
    api.refuse["/out/notice"] = 403
    publish(api, 3)

    async def scenario() -> tuple[int, bool]:
        async with started(source_on(api)) as source:
            return len(await receive(source, 3, DEADLINE_S)), source.notices_subscribed

    assert asyncio.run(scenario()) == (3, False)
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    [warning] = [line for line in lines if line.get("level") == "warning"]
    assert "notice topic" in warning["event"] and "403" in warning["error"]


# -- settings ---------------------------------------------------------------------------------


def tuya_settings(**tuya: Any) -> Any:
    base = {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET}
    return settings_from_mapping({"tuya": {**base, **tuya}}).tuya


def test_the_websocket_url_comes_from_the_region_or_the_documented_pulsar_url() -> None:
    assert tuya_settings(region="us").transport == "native"
    assert tuya_settings(region="us").resolved_websocket_url == "wss://mqe.tuyaus.com:8285/"
    in_india = tuya_settings(pulsar_url="pulsar+ssl://mqe.tuyain.com:7285", transport="websocket")
    assert in_india.resolved_websocket_url == "wss://mqe.tuyain.com:8285/"
    given = tuya_settings(region="eu", transport="websocket", websocket_url="ws://10.1.2.3:8080")
    assert given.resolved_websocket_url == "ws://10.1.2.3:8080"


def test_another_brokers_pulsar_url_needs_its_websocket_url() -> None:
    with pytest.raises(ConfigError) as error:
        tuya_settings(pulsar_url="pulsar://broker.example:6650", transport="websocket")
    assert "websocket_url" in str(error.value)
    with pytest.raises(ConfigError):
        tuya_settings(region="eu", transport="mqtt")


# -- no pulsar-client -------------------------------------------------------------------------


def run_without_pulsar(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", NO_PULSAR + textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=importable_tests_env(),
    )


def test_the_daemon_runs_on_the_websocket_transport_without_pulsar_client(
    api: LoopbackWebSocketApi, tmp_path: Path
) -> None:
    encoder = TuyaEncoder(v.ACCESS_ID, v.ACCESS_SECRET)
    ids = set()
    for n in range(20):
        document = {
            "devId": KEYS[n % 4],
            "dataId": f"d{n}",
            "status": [{"code": "seq", "value": n}],
        }
        ids.add(api.publish(*encoder.encode(document, "aes_gcm"), KEYS[n % 4]))
    config, port = tmp_path / "config.yaml", free_port()
    config.write_text(
        yaml.safe_dump(
            {
                "tuya": {
                    "access_id": v.ACCESS_ID,
                    "access_secret": v.ACCESS_SECRET,
                    "region": "eu",
                    "transport": "websocket",
                    "websocket_url": api.url,
                },
                "http": {"listen": f"127.0.0.1:{port}"},
                "enrichment": {"enabled": False},
                "dead_letter": {"path": str(tmp_path / "dead-letters.sqlite3")},
                "handlers": [{"type": "log"}],
            }
        )
    )
    daemon = run_without_pulsar(
        """
        import argparse
        from tuya_events.cli.run import run
        code = run(argparse.Namespace(config=sys.argv[1], consumer_name="no-pulsar"))
        print("pulsar modules:", sorted(m for m in sys.modules if "pulsar" in m.split(".")[0]))
        sys.exit(code)
        """,
        str(config),
    )

    def state() -> tuple[int, float | None]:
        ready = http_get(port, "/readyz")[0]
        return ready, metric_of(http_get(port, "/metrics")[1], "tuya_events_broker_connected")

    try:
        wait_for(lambda: ids <= api.acked(), 60, "every message acknowledged")
        wait_for(lambda: state() == (200, 1.0), 30, "ready and connected")
        api.stop()  # the service goes away: the metric and /readyz say so, then it comes back
        wait_for(lambda: state() == (503, 0.0), 30, "not ready, not connected")
        api.start()
        wait_for(lambda: state() == (200, 1.0), 60, "ready and connected again")
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, out
    assert "pulsar modules: []" in out
    assert api.handshakes[0]["query"]["consumerName"] == "no-pulsar"


def metric_of(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_the_native_transport_without_pulsar_client_is_a_configuration_error() -> None:
    check = run_without_pulsar(
        """
        from tuya_events.cli.run import source_for
        from tuya_events.config.errors import ConfigError
        from tuya_events.config.loader import settings_from_mapping
        settings = settings_from_mapping(
            {"tuya": {"access_id": "a" * 20, "access_secret": "s" * 32, "region": "eu"}}
        )
        try:
            source_for(settings, None)
        except ConfigError as error:
            print(error.render())
        """
    )
    out, _ = check.communicate(timeout=60)
    assert "tuya.transport" in out and "tuya-events[native]" in out, out


def test_the_transport_setting_chooses_the_source() -> None:
    from tuya_events.cli.run import source_for
    from tuya_events.transport.pulsar import PulsarSource
    from tuya_events.transport.pulsar import SourceUnavailable as PulsarUnavailable

    base: dict[str, Any] = {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET}
    choose: Callable[[dict[str, Any]], Any] = lambda tuya: source_for(  # noqa: E731
        settings_from_mapping({"tuya": {**base, "region": "eu", **tuya}}), None
    )
    native, native_unavailable = choose({})
    websocket, websocket_unavailable = choose({"transport": "websocket"})
    assert (type(native), native_unavailable) == (PulsarSource, PulsarUnavailable)
    assert (type(websocket), websocket_unavailable) == (WebSocketSource, SourceUnavailable)
    assert websocket.base_url == "wss://mqe.tuyaeu.com:8285"
