"""``tuya-events devices sync|list|show`` and ``decrypt --event`` as a user runs them, against the
fake Tuya OpenAPI (signatures, tokens and every call counted)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi, data_point
from tests.pipeline_support import ENCODER
from tests.support.cli import run_cli
from tests.support.servers import serving
from tests.support.settings import settings_tree

SENSOR = "bfsensor00000000000001"
PLUG = "bfplug0000000000000002"
SECOND_SENSOR = "bfsensor00000000000003"
TEMPERATURE = data_point("va_temperature", "Integer", 1, unit="℃", min=-200, max=600, scale=1)
MODE = data_point("mode", "Enum", 2, range=["auto", "eco"])
POWER = data_point("cur_power", "Integer", 19, unit="W", scale=1)


@pytest.fixture
def cloud() -> Iterator[FakeTuyaOpenApi]:
    with serving() as start:
        server = start(FakeTuyaOpenApi(v.ACCESS_ID, v.ACCESS_SECRET))
        server.add_device(SENSOR, name="Kitchen sensor", product_id="th", category="wsdcg",
                          status_spec=[TEMPERATURE, MODE])  # fmt: skip
        server.add_device(SECOND_SENSOR, name="Cellar sensor", product_id="th", category="wsdcg",
                          status_spec=[TEMPERATURE, MODE])  # fmt: skip
        server.add_device(PLUG, name="Desk plug", product_id="plug", category="cz",
                          status_spec=[POWER])  # fmt: skip
        yield server


def config(
    tmp_path: Path, cloud: FakeTuyaOpenApi, handlers: list[dict] | None = None, **sections: dict
) -> Path:
    tree = settings_tree(
        tmp_path,
        handlers,
        tuya={"openapi_url": cloud.url},
        enrichment={"enabled": True},
        **sections,
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_sync_fills_the_catalogue_sharing_a_product_specification_then_list_and_show_read_it(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    path = config(tmp_path, cloud)
    result = run_cli("devices", "sync", "-c", path, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["devices"], summary["new"], summary["failures"]) == (3, 3, {})
    # Two sensors of one product share one specification call.
    assert (summary["specifications_fetched"], summary["specifications_shared"]) == (2, 1)
    specifications = cloud.requests("/specification")
    assert len(specifications) == 2
    business = [r for r in cloud.requests() if not r.path.startswith("/v1.0/token")]
    assert summary["calls"] == len(business)
    cloud.clear()

    listed = run_cli("devices", "list", "-c", path)
    assert listed.returncode == 0, listed.stderr
    assert "Kitchen sensor" in listed.stdout and "Desk plug" in listed.stdout
    assert "wsdcg" in listed.stdout
    as_json = run_cli("devices", "list", "-c", path, "--json")
    names = sorted(json.loads(line)["name"] for line in as_json.stdout.splitlines())
    assert names == ["Cellar sensor", "Desk plug", "Kitchen sensor"]

    shown = run_cli("devices", "show", SENSOR, "-c", path)
    assert shown.returncode == 0, shown.stderr
    assert "va_temperature" in shown.stdout and "℃" in shown.stdout
    assert "auto, eco" in shown.stdout
    detail = json.loads(run_cli("devices", "show", SENSOR, "-c", path, "--json").stdout)
    points = {p["code"]: p for p in detail["points"]}
    assert points["va_temperature"]["scale"] == 1 and points["mode"]["range"] == ["auto", "eco"]
    for record in cloud.devices.values():  # no local_key anywhere the user can see
        assert record["local_key"] not in listed.stdout + as_json.stdout + shown.stdout
    assert cloud.requests() == [], "list and show make no OpenAPI call"


def test_sync_of_one_device_and_a_missing_one_exits_1_naming_it(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    path = config(tmp_path, cloud)
    result = run_cli("devices", "sync", "-c", path, "--device", PLUG, "--device", "bfnothere")
    assert result.returncode == 1
    assert "failed: bfnothere: not_found" in result.stderr
    assert "1 devices" in result.stderr
    missing = run_cli("devices", "show", "bfnothere", "-c", path)
    assert missing.returncode == 1 and "not in the catalogue" in missing.stderr


def test_a_quota_error_pauses_sync_until_forced(tmp_path: Path, cloud: FakeTuyaOpenApi) -> None:
    path = config(tmp_path, cloud)
    cloud.answer(28841004, times=1, path="/devices")
    paused = run_cli("devices", "sync", "-c", path)
    assert paused.returncode == 75, paused.stderr
    calls = len(cloud.requests("/devices"))
    again = run_cli("devices", "sync", "-c", path)
    assert again.returncode == 75 and "paused until" in again.stderr
    assert len(cloud.requests("/devices")) == calls, "no call while paused"
    forced = run_cli("devices", "sync", "-c", path, "--force")
    assert forced.returncode == 0, forced.stderr


def test_list_without_a_catalogue_says_how_to_make_one(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    result = run_cli("devices", "list", "-c", config(tmp_path, cloud))
    assert result.returncode == 66
    assert "devices sync" in result.stderr


def test_decrypt_event_is_enriched_from_the_local_catalogue(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    path = config(tmp_path, cloud)
    assert run_cli("devices", "sync", "-c", path).returncode == 0
    cloud.clear()
    document = {"devId": SENSOR, "status": [{"code": "va_temperature", "value": 235, "t": 1}]}
    body, _ = ENCODER.encode(document, em="aes_ecb", protocol=4)
    result = run_cli("decrypt", "--event", "-c", path, body.decode())
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["device"]["name"] == "Kitchen sensor"
    assert event["statuses"][0]["scaled"] == 23.5 and event["statuses"][0]["unit"] == "℃"
    assert cloud.requests() == []
    unknown = {"devId": "bfstranger", "status": [{"code": "x", "value": 1}]}
    body, _ = ENCODER.encode(unknown, em="aes_ecb", protocol=4)
    result = run_cli("decrypt", "--event", "-c", path, body.decode())
    assert json.loads(result.stdout)["device"] == {"known": False}


def test_resync_runs_every_device_s_status_through_the_handlers(
    tmp_path: Path, cloud: FakeTuyaOpenApi
) -> None:
    cloud.state[SENSOR] = {"va_temperature": 198, "mode": "eco"}
    cloud.state[PLUG] = {"cur_power": 1234}
    database = tmp_path / "events.sqlite3"
    path = config(tmp_path, cloud, handlers=[{"type": "database", "path": str(database)}])
    result = run_cli("resync", "-c", path, "--json")  # an empty catalogue is synced first
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["devices"], summary["resynced"], summary["handled"]) == (3, 3, 3)
    assert summary["failures"] == {}
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT device_id, code, value, scaled, unit FROM tuya_latest_status")
        latest = {(row[0], row[1]): row[2:] for row in rows}
    assert latest[(SENSOR, "va_temperature")] == ("198", "19.8", "℃")
    assert latest[(PLUG, "cur_power")] == ("1234", "123.4", "W")
    one = run_cli("resync", "-c", path, "--device", PLUG, "--device", "bfnothere")
    assert one.returncode == 1
    assert "failed: bfnothere: not_found" in one.stderr
    assert "1 of 2 devices resynced" in one.stderr
