"""Resync against the real broker and the fake OpenAPI: a restart after a gap longer than
``resync.after`` (the missed messages deleted meanwhile, as Tuya does after two hours) leaves
the database with the devices' current status; a broker outage longer than it resyncs on
reconnecting."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fake_tuya_openapi import FakeTuyaOpenApi, data_point
from tests.pulsar.traffic import SEQ_CODE, Outgoing, device_ids, interleaved_stream, status_report
from tests.support.daemon import BrokerRun
from tests.support.recorder import read_records
from tests.support.servers import serving
from tests.support.waiting import wait_for

pytestmark = pytest.mark.broker

DEVICES = 10
CURRENT = 5000  # the fake OpenAPI's current seq of device i is CURRENT + i


def latest_seq(database: Path) -> dict[str, int]:
    if not database.exists():
        return {}
    with sqlite3.connect(database) as db:
        try:
            rows = db.execute(
                "SELECT device_id, value FROM tuya_latest_status WHERE code = ?", (SEQ_CODE,)
            ).fetchall()
        except sqlite3.OperationalError:  # not migrated yet
            return {}
    return {device: int(value) for device, value in rows}


def test_a_gap_longer_than_resync_after_is_filled_from_the_openapi(
    broker_run: BrokerRun, tmp_path: Path
) -> None:
    tenant = broker_run.tenant
    devices = device_ids(DEVICES)
    database = tmp_path / "events.sqlite3"
    with serving() as start:
        cloud = start(FakeTuyaOpenApi(tenant.access_id, tenant.access_secret))
        for index, device in enumerate(devices):
            cloud.add_device(device, name=f"Meter {index}", product_id="meter",
                             status_spec=[data_point(SEQ_CODE, "Integer", 1)])  # fmt: skip
        options: dict[str, Any] = {
            "tuya": {"openapi_url": cloud.url},
            "sections": {
                "enrichment": {"enabled": True},
                "resync": {"after": "2s", "retry_delays": ["200ms"], "record_interval": "200ms"},
            },
            "handlers": [{"type": "database", "path": str(database)}],
        }
        first = broker_run.start("first", **options)
        stream = interleaved_stream(messages=200, devices=DEVICES)
        broker_run.publish(stream)
        broker_run.wait_handled(len(stream), 120, "the live stream handled", first)
        assert first.stop() == 0, first.log_tail()

        # Away: reports published meanwhile are deleted before we come back (Tuya's retention).
        missed = [Outgoing(status_report(d, 1000 + i), "aes_ecb", d, 1000 + i)
                  for i, d in enumerate(devices)]  # fmt: skip
        broker_run.publish(missed)
        wait_for(lambda: broker_run.backlog() == len(missed), 30, "the missed reports queued")
        path = f"persistent/{tenant.access_id}/out/event/subscription/{tenant.subscription}"
        broker_run.broker.admin.request("POST", f"{path}/skip_all")
        wait_for(lambda: broker_run.backlog() == 0, 30, "the missed reports deleted")
        for index, device in enumerate(devices):
            cloud.state[device] = {SEQ_CODE: CURRENT + index}
        time.sleep(2.5)  # longer than resync.after

        second = broker_run.start("second", **options)
        want = {device: CURRENT + index for index, device in enumerate(devices)}
        wait_for(lambda: latest_seq(database) == want, 60, "the database resynced", None)
        second.wait_metric("tuya_events_resync_devices_total", DEVICES, 30, "devices resynced")
        assert second.metric("tuya_events_consumption_gap_seconds") >= 2.5
        assert second.log().count("resyncing 10 devices") == 1

        # A broker outage longer than resync.after resyncs again once it is back.
        for index, device in enumerate(devices):
            cloud.state[device] = {SEQ_CODE: CURRENT + 100 + index}
        broker_run.broker.restart()
        want = {device: CURRENT + 100 + index for index, device in enumerate(devices)}
        wait_for(lambda: latest_seq(database) == want, 120, "the database resynced again", None)
        assert "lost the connection to the message service" in second.log()
        assert second.stop() == 0, second.log_tail()

    records = read_records(broker_run.records)
    assert not [r for r in records if r["seq"] is not None and 1000 <= r["seq"] < CURRENT], (
        "the deleted reports never came"
    )
    resynced = [r for r in records if r.get("resync")]
    assert len(resynced) == 2 * DEVICES
    assert all(r["name"] == f"Meter {devices.index(r['device'])}" for r in resynced)
