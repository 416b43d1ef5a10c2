"""TLS to the broker is verified by default: the official samples' habit of turning it off is
not copied. The test broker's TLS port has a certificate only a throwaway CA vouches for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.e2e_handlers import read_records
from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import interleaved_stream

pytestmark = pytest.mark.broker


def run_until_handled(daemon: DaemonProcess, publisher: TuyaPublisher, records: Path) -> None:
    import time

    daemon.start().wait_ready()
    stream = interleaved_stream(messages=50, devices=5)
    publisher.publish_all(stream)
    deadline = time.monotonic() + 60
    while len(read_records(records)) < len(stream):
        assert time.monotonic() < deadline, daemon.log_tail()
        time.sleep(0.1)
    assert daemon.stop() == 0, daemon.log_tail()


def test_tls_with_the_ca_file_is_verified_and_works(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    daemon = DaemonProcess(
        tmp_path,
        tuya_tenant,
        "tls-ca",
        records,
        pulsar_url=pulsar_broker.broker_tls_url,
        tls={"ca_file": str(pulsar_broker.tls.ca_cert)},
    )
    try:
        run_until_handled(daemon, tuya_publisher, records)
    finally:
        daemon.close()
    assert "verification is OFF" not in daemon.log_path.read_text()


def test_an_untrusted_certificate_is_refused_by_default(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant, tmp_path: Path
) -> None:
    daemon = DaemonProcess(
        tmp_path,
        tuya_tenant,
        "tls-default",
        tmp_path / "handled.jsonl",
        consumer={"operation_timeout": "5s"},
        pulsar_url=pulsar_broker.broker_tls_url,
    )
    try:
        daemon.start()
        assert daemon.wait(90) == 69
    finally:
        daemon.close()
    log = daemon.log_path.read_text()
    assert "tls.ca_file" in log and pulsar_broker.broker_tls_url in log


def test_insecure_must_be_asked_for_and_is_logged_loudly(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tmp_path: Path,
) -> None:
    records = tmp_path / "handled.jsonl"
    daemon = DaemonProcess(
        tmp_path,
        tuya_tenant,
        "tls-insecure",
        records,
        pulsar_url=pulsar_broker.broker_tls_url,
        tls={"insecure": True},
    )
    try:
        run_until_handled(daemon, tuya_publisher, records)
    finally:
        daemon.close()
    warnings = [
        line for line in daemon.log_path.read_text().splitlines() if "verification is OFF" in line
    ]
    assert warnings and '"level": "warning"' in warnings[0]
