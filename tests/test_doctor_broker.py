"""``tuya-events doctor`` on the real Pulsar broker: the message service checks, for real.

- the happy path with traffic: every check passes, the message the doctor saw is not
  acknowledged, and a daemon started afterwards receives it;
- beside a running daemon the doctor is a standby (Failover, lower priority): it is given
  nothing, the daemon everything, once, and the doctor reads the daemon's metrics instead;
- a tenant that refuses a wrong secret; a tenant with no traffic (the console checklist); a
  GCM message whose em property says ECB.

The OpenAPI is the project's fake (tuya.openapi_url), since the broker has none.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.pulsar.broker import PulsarBroker
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import interleaved_stream, status_report
from tests.support.cli import run_cli
from tests.support.daemon import BrokerRun
from tests.support.paths import TUYA_EVENTS, importable_tests_env
from tests.support.producer import raw_producer
from tests.support.servers import serving
from tests.support.waiting import wait_for
from tests.webhook_receiver import WebhookReceiver
from tuya_events.doctor.message_checks import CONSUMER_NAME
from tuya_events.tuya.auth import pulsar_password
from tuya_events.tuya.codec import EM_GCM, TuyaEncoder

pytestmark = pytest.mark.broker

WRONG_SECRET = "wrongsecretwrongsecretwrongsecr1"


def config_for(
    tmp_path: Path, tenant: TuyaTenant, secret: str | None = None, **sections: Any
) -> Path:
    tree: dict[str, Any] = {
        "tuya": {
            "access_id": tenant.access_id,
            "access_secret": secret or tenant.access_secret,
            "pulsar_url": tenant.broker_url,
            **sections.pop("tuya", {}),
        },
        "consumer": {"operation_timeout": "4s"},
        "dead_letter": {"path": str(tmp_path / "doctor-dead-letters.sqlite3")},
        "http": {"enabled": False},
        **sections,
    }
    path = tmp_path / "doctor.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def doctor(config: Path, tenant: TuyaTenant, *args: str) -> tuple[int, dict[str, Any], str]:
    result = run_cli(
        "doctor", "-c", config, "--json", "--websocket-url", tenant.websocket_url, *args
    )
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), output  # never a crash
    for secret in (tenant.access_secret, pulsar_password(tenant.access_id, tenant.access_secret)):
        assert secret not in output
    return result.returncode, json.loads(result.stdout), output


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["check"]: check for check in report["checks"]}


def test_the_happy_path_passes_and_leaves_the_message_to_the_daemon(
    broker_run: BrokerRun, pulsar_broker: PulsarBroker, tmp_path: Path
) -> None:
    tenant = broker_run.tenant
    with serving() as start:
        cloud = start(FakeTuyaOpenApi(tenant.access_id, tenant.access_secret))
        cloud.add_device("doctor-device-1", name="Kitchen sensor")
        receiver = start(WebhookReceiver())
        config = config_for(
            tmp_path,
            tenant,
            tuya={"openapi_url": cloud.url},
            enrichment={"enabled": True},
            handlers=[
                {"type": "log"},
                {"type": "webhook", "name": "hook", "url": receiver.url},
                {"type": "database", "name": "db", "path": str(tmp_path / "events.sqlite3")},
                {
                    "type": "pulsar",
                    "name": "forward",
                    "service_url": pulsar_broker.broker_url,
                    "topic": "persistent://public/default/doctor-forward",
                    "token": pulsar_broker.make_token("forwarder"),
                },
                {
                    "type": "action",
                    "name": "lights",
                    "rules": [
                        {
                            "when": {"status_code": "never_sent"},
                            "then": {"command": {"code": "switch_1", "value": True}},
                        }
                    ],
                },
            ],
        )
        broker_run.subscribe_ahead()
        (message,) = interleaved_stream(messages=1, devices=1)
        broker_run.publish([message])

        code, report, output = doctor(config, tenant, "--wait", "30s")

        marks = {check: result["mark"] for check, result in checks(report).items()}
        assert code == 0, output
        assert set(marks.values()) == {"passed"}, marks
        found = checks(report)
        assert "11 partitions" in found["message-login"]["detail"]
        assert "aes_" in found["message-decrypts"]["detail"]
        assert message.device_id in found["message-decrypts"]["detail"]
        assert cloud.commands() == [] and receiver.accepted == []

    # Not acknowledged: the message is still the subscription's, and the next consumer gets it.
    assert pulsar_broker.settled_backlog(tenant, 1, timeout=5) == 1
    daemon = broker_run.start("after-doctor")
    broker_run.wait_handled(1, 60, "the daemon to get the message the doctor saw", daemon)
    broker_run.wait_backlog(0, 30, daemon)


def _consumer_names(broker: PulsarBroker, tenant: TuyaTenant) -> set[str]:
    """The consumers of the tenant's subscription, by name, over every partition."""
    path = tenant.topic().removeprefix("persistent://")
    stats = broker.admin.request("GET", f"persistent/{path}/partitioned-stats?perPartition=true")
    names: set[str] = set()
    for partition in stats.get("partitions", {}).values():
        subscription = partition.get("subscriptions", {}).get(tenant.subscription, {})
        names.update(
            consumer.get("consumerName", "") for consumer in subscription.get("consumers", [])
        )
    return names


def test_beside_a_running_daemon_the_doctor_is_a_standby_that_takes_nothing(
    broker_run: BrokerRun, pulsar_broker: PulsarBroker
) -> None:
    """The daemon keeps every partition while the doctor is connected: it handles every message
    once (the doctor's joining and leaving moved nothing), the doctor gets none and reads the
    daemon's metrics to say messages arrive."""
    tenant = broker_run.tenant
    broker_run.subscribe_ahead()
    daemon = broker_run.start("active")
    command = [str(TUYA_EVENTS), "doctor", "-c", str(daemon.config_path), "--json"]
    command += ["--websocket-url", tenant.websocket_url, "--wait", "12s"]
    command += ["--skip", "openapi", "--skip", "handlers", "--skip", "local"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=importable_tests_env(),
    )
    try:
        # The doctor's standby consumer is on the subscription before anything is published.
        wait_for(
            lambda: CONSUMER_NAME in _consumer_names(pulsar_broker, tenant),
            30,
            "the doctor's standby consumer on the subscription",
        )
        stream = interleaved_stream(messages=60, devices=12)
        broker_run.publish(stream)
        broker_run.wait_handled(len(stream), 60, "the daemon to handle everything", daemon)
        assert CONSUMER_NAME in _consumer_names(pulsar_broker, tenant)  # still there meanwhile
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    report = checks(json.loads(stdout))
    assert process.returncode == 0, stdout + stderr
    assert report["message-subscription"]["mark"] == "passed"
    arrives = report["message-arrives"]
    assert arrives["mark"] == "passed"
    assert "the running daemon" in arrives["detail"] and "standby" in arrives["detail"]
    assert report["message-decrypts"]["mark"] == "skipped"  # the doctor was given nothing
    time.sleep(1.0)  # anything moved by the doctor's leaving would arrive now
    assert broker_run.handled() == len(stream)  # once each: nothing was redelivered
    assert broker_run.report(stream).perfect


def test_a_wrong_secret_is_refused_on_both_endpoints(
    tuya_tenant: TuyaTenant, tmp_path: Path
) -> None:
    config = config_for(tmp_path, tuya_tenant, secret=WRONG_SECRET)
    code, report, output = doctor(
        config, tuya_tenant, "--wait", "1s", "--skip", "openapi", "--skip", "handlers"
    )
    assert (
        WRONG_SECRET not in output
        and pulsar_password(tuya_tenant.access_id, WRONG_SECRET) not in output
    )
    found = checks(report)
    assert code == 1
    login = found["message-login"]
    assert login["mark"] == "failed" and "did not accept the login" in login["detail"]
    assert any("Access Secret" in line for line in login["fix"])
    subscription = found["message-subscription"]
    assert subscription["mark"] == "failed" and "HTTP 401" in subscription["detail"]
    assert found["message-arrives"]["mark"] == "skipped"


def test_a_silent_tenant_then_a_gcm_message_labelled_ecb(
    tuya_tenant: TuyaTenant, pulsar_broker: PulsarBroker, tmp_path: Path
) -> None:
    """No traffic: the console checklist. Then a message encrypted with AES-GCM whose em
    property is missing (which means ECB): the doctor says it decrypts as GCM only."""
    config = config_for(tmp_path, tuya_tenant)
    skip = ("--skip", "openapi", "--skip", "handlers", "--skip", "local")
    pulsar_broker.admin.request(
        "PUT",
        f"/persistent/{tuya_tenant.access_id}/out/event/subscription/{tuya_tenant.subscription}",
    )
    code, report, _ = doctor(config, tuya_tenant, "--wait", "2s", *skip)
    silent = checks(report)["message-arrives"]
    assert code == 1 and silent["mark"] == "failed"
    assert "no message within 2.0 s" in silent["detail"]
    fix = "\n".join(silent["fix"])
    assert "Production environment" in fix and "Subscription Management" in fix
    assert "starts disabled" in fix

    encoder = TuyaEncoder(tuya_tenant.access_id, tuya_tenant.access_secret)
    body, _ = encoder.encode(status_report("gcm-device-1", 0), EM_GCM)
    with raw_producer(pulsar_broker, tuya_tenant.topic()) as producer:
        producer.send(body, properties={}, partition_key="gcm-device-1")
    code, report, _ = doctor(config, tuya_tenant, "--wait", "20s", *skip)
    found = checks(report)
    assert found["message-arrives"]["mark"] == "passed"
    decrypts = found["message-decrypts"]
    assert code == 1 and decrypts["mark"] == "failed"
    assert "aes_gcm data" in decrypts["detail"] and "no em property" in decrypts["detail"]
    assert found["message-age"]["mark"] == "passed"
