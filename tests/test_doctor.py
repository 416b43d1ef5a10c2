"""``tuya-events doctor`` without the Pulsar broker: each failure provoked for real.

Tuya's OpenAPI is the project's fake (it checks signatures, tokens and the clock), one per data
center when a test needs several: ``--openapi-urls`` (hidden from the help) replaces the region
table with them, so no test reaches for Tuya's cloud. Webhook receivers, PostgreSQL and
Mosquitto are real servers on loopback; the read-only directory is read-only for the doctor's
process (as root, the process runs without the capability that ignores file modes). The message
service checks are skipped here (``--skip messages``); tests/test_doctor_broker.py has them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.pg.cluster import PostgresCluster
from tests.support.cli import run_cli
from tests.support.paths import TUYA_EVENTS
from tests.support.ports import free_port, is_free
from tests.support.servers import StatusServer, serving
from tests.support.settings import settings_tree
from tests.support.waiting import wait_for
from tests.webhook_receiver import WebhookReceiver
from tuya_events.cli.main import main
from tuya_events.deadletter import DeadLetterStore
from tuya_events.delivery import Delivery, Failure
from tuya_events.doctor import target_checks
from tuya_events.doctor.report import Report, failed, format_duration, passed
from tuya_events.handlers.database.sqlite import SQLiteBackend
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.auth import pulsar_password

WRONG_SECRET = "wrongsecretwrongsecretwrongsecr1"
SECRETS = (v.ACCESS_SECRET, pulsar_password(v.ACCESS_ID, v.ACCESS_SECRET))
DOOR_LIGHT = {
    "name": "hall-light",
    "when": {"status_code": "doorcontact_state"},
    "then": {"command": {"device_id": "dev000", "code": "switch_1", "value": True}},
}


@dataclass
class Outcome:
    code: int
    output: str
    report: dict[str, Any]

    def result(self, check: str) -> dict[str, Any]:
        for result in self.report["checks"]:
            if result["check"] == check:
                return result
        raise AssertionError(f"no {check} in {[r['check'] for r in self.report['checks']]}")

    def mark(self, check: str) -> str:
        return str(self.result(check)["mark"])

    def marks(self) -> dict[str, str]:
        return {result["check"]: result["mark"] for result in self.report["checks"]}

    def fix(self, check: str) -> str:
        return "\n".join(self.result(check)["fix"])


def no_secrets(text: str, *more: str) -> None:
    for secret in (*SECRETS, *more):
        assert secret not in text


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    """``doctor(config_tree, *args)``: the command in this process, its JSON read back."""

    def run(tree: dict[str, Any], *args: str, regions: dict[str, str] | None = None) -> Outcome:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(tree))
        extra: list[str] = []
        if regions is not None:
            table = tmp_path / "regions.json"
            table.write_text(json.dumps(regions))
            extra = ["--openapi-urls", str(table)]
        capsys.readouterr()
        code = main(["doctor", "-c", str(config), "--json", *extra, *args])
        output = capsys.readouterr().out
        no_secrets(output)
        return Outcome(code, output, json.loads(output))

    return run


@pytest.fixture
def servers() -> Iterator[Any]:
    with serving() as start:
        yield start


def cloud(servers: Any, secret: str = v.ACCESS_SECRET, devices: int = 3, **options: Any) -> Any:
    fake = servers(FakeTuyaOpenApi(v.ACCESS_ID, secret, **options))
    for index in range(devices):
        fake.add_device(f"dev{index:03d}", name=f"Lamp {index}", status={"switch_1": False})
    return fake


def tree(tmp_path: Path, handlers: list[dict[str, Any]] | None = None, **sections: Any) -> Any:
    """The vectors' project in eu, the catalogue and resync on (so their APIs are checked)."""
    return settings_tree(tmp_path, handlers, enrichment={"enabled": True}, **sections)


OPENAPI_ONLY = ("--skip", "messages", "--skip", "handlers", "--skip", "local")


# -- the OpenAPI ----------------------------------------------------------------------------


def test_a_healthy_project_passes_in_a_handful_of_calls(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    """Clock, key pair, devices and the three services pass; 30 devices cost no more calls than
    3 would, and no command is sent to find out whether commands work."""
    fake = cloud(servers, devices=30)
    receiver = servers(WebhookReceiver())
    store = tmp_path / "events.sqlite3"
    backend = SQLiteBackend(str(store), "tuya_")
    asyncio.run(backend.open())
    asyncio.run(backend.close())
    handlers = [
        {"type": "log"},
        {"type": "webhook", "name": "hook", "url": receiver.url},
        {"type": "database", "name": "db", "path": str(store)},
        {"type": "action", "name": "lights", "rules": [DOOR_LIGHT]},
    ]
    outcome = doctor(tree(tmp_path, handlers), "--skip", "messages", regions={"eu": fake.url})

    assert outcome.code == 0, outcome.output
    marks = outcome.marks()
    for check in ("config", "clock", "openapi-keys", "project-devices", "api-details"):
        assert marks[check] == "passed", outcome.result(check)
    assert marks["api-status"] == marks["api-control"] == "passed"
    assert marks["handler:log"] == marks["handler:hook"] == marks["handler:db"] == "passed"
    assert marks["handler:lights"] == "passed"  # its target is the device control API, above
    assert marks["dead-letters"] == marks["state-directory"] == "passed"
    assert "20 or more devices" in outcome.result("project-devices")["detail"]
    assert "schema version 3 (current)" in outcome.result("handler:db")["detail"]
    # token, first page, details, status, specification: what a doctor run costs
    assert len(fake.received) == outcome.report["openapi_calls"] == 5
    assert fake.commands() == []
    assert receiver.accepted == [] and receiver.requests == []  # OPTIONS delivers nothing


def test_a_key_pair_refused_here_and_accepted_in_another_data_center(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    """1004 on the configured data center, a token on another: the project lives there."""
    eu = cloud(servers, secret=WRONG_SECRET, devices=0)  # another project's data center
    us = cloud(servers)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": eu.url, "us": us.url})

    assert outcome.code == 1
    keys = outcome.result("openapi-keys")
    assert keys["mark"] == "failed"
    assert "this project lives in us, not eu" in keys["detail"]
    assert keys["fix"][0].startswith("set tuya.region: us")
    assert eu.codes() == [1004]
    # The project is still looked at, where the key pair works.
    assert outcome.mark("project-devices") == "passed"
    assert "(on us" in outcome.result("project-devices")["detail"]


def test_a_project_signing_the_old_way_is_told_to_set_legacy_signing(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    old = cloud(servers, legacy=True)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": old.url})

    assert outcome.mark("openapi-keys") == "failed"
    assert outcome.fix("openapi-keys") == "set openapi.legacy_signing: true"
    assert outcome.mark("project-devices") == "passed"


def test_a_key_pair_no_data_center_accepts(doctor: Any, servers: Any, tmp_path: Path) -> None:
    eu = cloud(servers, secret=WRONG_SECRET)
    us = cloud(servers, secret=WRONG_SECRET)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": eu.url, "us": us.url})

    keys = outcome.result("openapi-keys")
    assert keys["mark"] == "failed" and "no other data center" in keys["detail"]
    assert "Access Secret" in outcome.fix("openapi-keys")
    for check in ("project-devices", "api-details", "api-status", "api-control"):
        assert outcome.mark(check) == "skipped"
    assert outcome.code == 1


def test_a_skewed_clock_is_named_before_the_keys(doctor: Any, servers: Any, tmp_path: Path) -> None:
    """Tuya's clock 15 minutes ahead of ours: 1013, and the keys are not blamed."""
    fake = cloud(servers, clock_offset=900)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": fake.url})

    clock = outcome.result("clock")
    assert clock["mark"] == "failed"
    assert "1013" in clock["detail"] and "15 min" in clock["detail"] and "behind" in clock["detail"]
    assert "NTP" in outcome.fix("clock") or "ntp" in outcome.fix("clock")
    assert 890 < clock["facts"]["skew_seconds"] < 910
    assert outcome.mark("openapi-keys") == "skipped"
    assert "clock" in outcome.result("openapi-keys")["detail"]


def test_permission_deny_says_to_link_the_app_account(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    fake = cloud(servers)
    fake.answer(1106, times=None)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": fake.url})

    devices = outcome.result("project-devices")
    assert devices["mark"] == "failed" and "1106" in devices["detail"]
    assert "Link App Account" in outcome.fix("project-devices")
    assert "data center" in outcome.fix("project-devices")


def test_a_project_without_devices_says_to_link_the_app_account(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    fake = cloud(servers, devices=0)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": fake.url})

    devices = outcome.result("project-devices")
    assert devices["mark"] == "failed" and "no devices" in devices["detail"]
    assert "Add App Account" in outcome.fix("project-devices")
    assert outcome.mark("api-details") == "skipped"


def test_an_unsubscribed_api_names_the_services_to_subscribe(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    fake = cloud(servers)
    fake.answer(28841105, times=None, path="/status")
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": fake.url})

    assert outcome.mark("api-details") == "passed"
    status = outcome.result("api-status")
    assert status["mark"] == "failed" and "28841105" in status["detail"]
    assert "Service API" in outcome.fix("api-status") and "IoT Core" in outcome.fix("api-status")


def test_an_expired_trial_says_to_extend_it(doctor: Any, servers: Any, tmp_path: Path) -> None:
    fake = cloud(servers)
    fake.answer(28841002, times=None)
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": fake.url})

    assert outcome.mark("openapi-keys") == "passed"  # the token call is not a service call
    devices = outcome.result("project-devices")
    assert devices["mark"] == "failed" and "28841002" in devices["detail"]
    assert "extend the trial" in outcome.fix("project-devices")


def test_an_unreachable_openapi(doctor: Any, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    outcome = doctor(tree(tmp_path), *OPENAPI_ONLY, regions={"eu": nowhere})

    assert outcome.mark("clock") == "skipped"
    keys = outcome.result("openapi-keys")
    assert keys["mark"] == "failed" and "cannot reach" in keys["detail"]
    assert "firewall" in outcome.fix("openapi-keys")


def test_an_invalid_configuration_fails_first_and_skips_the_rest(
    doctor: Any, tmp_path: Path
) -> None:
    broken = tree(tmp_path, consumer={"max_in_flight": 0})
    del broken["tuya"]["access_secret"]
    outcome = doctor(broken)

    assert outcome.code == 1
    config = outcome.result("config")
    assert config["mark"] == "failed" and config["detail"].startswith("2 problems")
    assert any(line.startswith("tuya.access_secret") for line in config["fix"])
    assert any(line.startswith("consumer.max_in_flight") for line in config["fix"])
    assert {mark for check, mark in outcome.marks().items() if check != "config"} == {"skipped"}

    # A handler's own options are checked too, as check-config builds the handlers.
    bad_handler = doctor(tree(tmp_path, [{"type": "webhook", "url": "ftp://nowhere"}]))
    assert bad_handler.mark("config") == "failed"
    assert any(line.startswith("handlers[0].url") for line in bad_handler.result("config")["fix"])


# -- the handlers' targets ------------------------------------------------------------------


def test_an_unreachable_webhook_fails_and_its_credentials_stay_masked(
    doctor: Any, tmp_path: Path
) -> None:
    token, bearer = "querytoken-0123456789", "bearer-secret-0123456789"
    url = f"http://127.0.0.1:{free_port()}/hook?token={token}"
    hook = {"type": "webhook", "name": "hook", "url": url}
    hook["headers"] = {"Authorization": f"Bearer {bearer}"}
    outcome = doctor(tree(tmp_path, [hook]), "--skip", "openapi", "--skip", "messages")

    result = outcome.result("handler:hook")
    assert result["mark"] == "failed"
    assert "Connection refused" in result["detail"]
    assert "start the target" in outcome.fix("handler:hook")
    no_secrets(outcome.output, token, bearer)
    assert outcome.code == 1


def test_a_webhook_answering_5xx_fails_a_4xx_passes(
    doctor: Any, servers: Any, tmp_path: Path
) -> None:
    broken, picky = servers(StatusServer(503)), servers(StatusServer(401))
    handlers = [
        {"type": "webhook", "name": "broken", "url": f"http://127.0.0.1:{broken.port}/h"},
        {"type": "webhook", "name": "picky", "url": f"http://127.0.0.1:{picky.port}/h"},
    ]
    outcome = doctor(tree(tmp_path, handlers), "--skip", "openapi", "--skip", "messages")

    assert outcome.mark("handler:broken") == "failed"
    assert "HTTP 503" in outcome.result("handler:broken")["detail"]
    assert outcome.mark("handler:picky") == "passed"
    assert "wants credentials" in outcome.result("handler:picky")["detail"]


def test_a_database_running_then_stopped(
    doctor: Any, tmp_path: Path, postgres_cluster: PostgresCluster, postgres_dsn: str
) -> None:
    db = {"type": "database", "name": "db", "dsn": postgres_dsn}
    config = tree(tmp_path, [db])
    running = doctor(config, "--skip", "openapi", "--skip", "messages")
    assert running.mark("handler:db") == "passed"
    assert "no tables yet" in running.result("handler:db")["detail"]

    postgres_cluster.stop()
    stopped = doctor(config, "--skip", "openapi", "--skip", "messages")
    result = stopped.result("handler:db")
    assert result["mark"] == "failed" and "cannot connect" in result["detail"]
    assert "start PostgreSQL" in stopped.fix("handler:db")
    assert stopped.code == 1


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """Mosquitto on a free loopback port, user ``bridge`` with password ``bridge-password``."""
    binary, passwd = shutil.which("mosquitto"), shutil.which("mosquitto_passwd")
    assert binary and passwd, "Mosquitto comes from Debian's mosquitto package"
    port = free_port()
    passwords = tmp_path / "mosquitto.passwd"
    subprocess.run([passwd, "-c", "-b", str(passwords), "bridge", "bridge-password"], check=True)
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"user {'root' if os.geteuid() == 0 else os.environ.get('USER', 'nobody')}\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: not is_free(port), 10, "mosquitto to listen")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def test_mqtt_connect_is_accepted_and_a_wrong_password_refused(mosquitto: int) -> None:
    """The MQTT probe on a real broker: CONNECT, CONNACK, DISCONNECT."""
    url = f"mqtt://127.0.0.1:{mosquitto}"
    good = {"url": url, "username": "bridge", "password": "bridge-password"}
    assert "CONNACK 0" in asyncio.run(target_checks.mqtt(good, "handlers[0]"))
    with pytest.raises(target_checks.TargetProblem) as refused:
        asyncio.run(target_checks.mqtt({**good, "password": "not-it"}, "handlers[0]"))
    assert "not authorized" in refused.value.detail or "bad user name" in refused.value.detail
    with pytest.raises(target_checks.TargetProblem) as closed:
        asyncio.run(target_checks.mqtt({"url": f"mqtt://127.0.0.1:{free_port()}"}, "handlers[0]"))
    assert "Connection refused" in closed.value.detail


# -- local state ----------------------------------------------------------------------------


def _dead_letters(path: Path, count: int) -> None:
    with DeadLetterStore(path) as store:
        for index in range(count):
            delivery = Delivery(
                body=b"{}",
                properties={},
                message_id=f"m-{index}",
                topic=f"persistent://{v.ACCESS_ID}/out/event",
                partition=0,
                publish_time_ms=0,
            )
            when = time.time() - 3600 * (index + 1)
            failure = Failure("decode", "bad_padding", "bad padding", None, 1, when, when)
            store.put(delivery, failure)


def test_dead_letters_are_counted_with_the_oldest(doctor: Any, tmp_path: Path) -> None:
    config = tree(tmp_path)
    _dead_letters(Path(config["dead_letter"]["path"]), 2)
    outcome = doctor(config, "--skip", "openapi", "--skip", "messages")

    result = outcome.result("dead-letters")
    assert result["mark"] == "passed"
    assert "2 dead letters" in result["detail"] and "(2 h ago)" in result["detail"]
    assert "dlq list" in result["detail"]
    assert result["facts"]["dead_letters"] == 2


def test_a_read_only_dead_letter_directory_fails(tmp_path: Path) -> None:
    """The real command, in a process that file modes bind (as root: without the capability
    CAP_DAC_OVERRIDE, which otherwise ignores them)."""
    store_dir, state_dir = tmp_path / "dead", tmp_path / "state"
    store_dir.mkdir()
    state_dir.mkdir()
    config_tree = tree(tmp_path, dead_letter={"path": str(store_dir / "dlq.sqlite3")})
    config_tree["state"] = {"directory": str(state_dir)}
    _dead_letters(store_dir / "dlq.sqlite3", 1)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_tree))
    store_dir.chmod(0o555)
    (store_dir / "dlq.sqlite3").chmod(0o444)
    try:
        command = [str(TUYA_EVENTS), "doctor", "-c", str(config), "--json"]
        command += ["--skip", "openapi", "--skip", "messages", "--skip", "handlers"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            assert setpriv, "setpriv (util-linux) drops root's file-mode override"
            command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    finally:
        store_dir.chmod(0o755)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["dead-letters"]["mark"] == "failed"
    assert "Permission denied" in checks["dead-letters"]["detail"]
    assert "dead_letter.path" in "\n".join(checks["dead-letters"]["fix"])
    assert checks["state-directory"]["mark"] == "passed"


# -- the command ----------------------------------------------------------------------------


def test_the_command_prints_one_line_per_check_and_exits_by_the_outcome(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tree(tmp_path)))
    skip = ["--skip", "openapi", "--skip", "messages"]
    good = run_cli("doctor", "-c", config, *skip)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert lines[0] == f"tuya-events doctor: {config}"
    assert "[ ok ] configuration is valid (as check-config)" in lines[1]
    assert any(line.startswith("[skip] clock agrees with Tuya's: --skip openapi") for line in lines)
    assert lines[-1].endswith("nothing failed")
    no_secrets(good.stdout + good.stderr)

    broken = tree(tmp_path, [{"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/"}])
    config.write_text(yaml.safe_dump(broken))
    bad = run_cli("doctor", "-c", config, *skip)
    assert bad.returncode == 1
    assert "[FAIL] handler webhook (webhook)" in bad.stdout
    assert "         fix: start the target" in bad.stdout
    assert "--openapi-urls" not in run_cli("doctor", "--help").stdout  # for tests only


def test_the_report_masks_secrets_in_text_and_json() -> None:
    secret = "a-secret-that-leaked-0123"
    REDACTOR.add([secret])
    report = Report("config.yaml")
    report.add(passed("one", "first", f"detail with {secret}"))
    report.add(failed("two", "second", "broken", [f"fix with {secret}"]))
    assert secret not in report.to_text() and secret not in report.to_json()
    assert "[REDACTED]" in report.to_text()
    assert json.loads(report.to_json())["exit_code"] == 1


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.26, "0.3 s"), (42, "42 s"), (902, "15 min 2 s"), (7200, "2 h"), (90061, "1 d 1 h")],
)
def test_durations_read_as_a_person_says_them(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
