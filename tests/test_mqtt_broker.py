"""The MQTT bridge end to end: Pulsar (the real test broker) -> ``tuya-events run`` -> a real
Mosquitto. Every device's retained state is its newest report, every message acknowledged, and
the last will says ``offline`` when the daemon is killed."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from tests.fake_tuya_openapi import FakeTuyaOpenApi, data_point
from tests.pulsar.traffic import SEQ_CODE, device_ids, interleaved_stream
from tests.support.daemon import BrokerRun
from tests.support.mosquitto import Watcher, running_mosquitto
from tests.support.servers import serving
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

DEVICES = 8


def test_pulsar_to_mosquitto_retained_state_acks_and_the_last_will(
    broker_run: BrokerRun, tmp_path: Path
) -> None:
    tenant = broker_run.tenant
    devices = device_ids(DEVICES)
    stream = interleaved_stream(messages=400, devices=DEVICES)
    newest = {o.device_id: o.seq for o in stream}  # the stream is in order per device
    with serving() as start, running_mosquitto(tmp_path / "mosquitto") as mosquitto:
        cloud = start(FakeTuyaOpenApi(tenant.access_id, tenant.access_secret))
        spec = [data_point(SEQ_CODE, "Integer", 1, unit="n")]
        for index, device in enumerate(devices):
            cloud.add_device(device, name=f"Counter {index}", product_id="c", status_spec=spec)
        daemon = broker_run.start(
            "bridge",
            tuya={"openapi_url": cloud.url},
            sections={"enrichment": {"enabled": True}, "resync": {"enabled": False}},
            handlers=[{"type": "mqtt", "url": mosquitto.url, "prefix": "tuya"}],
        )
        broker_run.publish(stream)
        broker_run.wait_handled(len(stream), 120, "every message handled", daemon)
        daemon.wait_metric("tuya_events_messages_acked_total", len(stream), 30, "acks")
        assert daemon.metric("tuya_events_dead_letters_total") == 0

        async def watch() -> tuple[dict[str, int], dict[str, str], bytes | None, bytes | None]:
            async with Watcher(mosquitto, ("tuya/#",)) as watcher:  # retained: what HA sees
                await wait_until(
                    lambda: all(watcher.last(f"tuya/{d}/state") for d in devices), timeout=20
                )
                before = watcher.last("tuya/bridge/availability")
                states = {d: json.loads(watcher.last(f"tuya/{d}/state") or b"{}") for d in devices}
                daemon.signal(signal.SIGKILL)
                await wait_until(
                    lambda: watcher.last("tuya/bridge/availability") == b"offline", timeout=30
                )
                after = watcher.last("tuya/bridge/availability")
            seqs = {d: state["values"][SEQ_CODE] for d, state in states.items()}
            names = {d: state["name"] for d, state in states.items()}
            return seqs, names, before, after

        seqs, names, before, after = asyncio.run(watch())
        daemon.wait(30)
    assert seqs == newest, "the retained state is each device's newest report"
    assert names == {d: f"Counter {i}" for i, d in enumerate(devices)}
    assert (before, after) == (b"online", b"offline"), "the last will after SIGKILL"
    report = broker_run.report(stream)
    assert report.perfect, report
