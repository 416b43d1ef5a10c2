"""TLS to the broker is verified by default: the official samples' habit of turning it off is
not copied. The test broker's TLS port has a certificate only a throwaway CA vouches for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.traffic import interleaved_stream
from tests.support.daemon import BrokerRun

pytestmark = pytest.mark.broker


def says_nothing_of_verification(log: str) -> None:
    assert "verification is OFF" not in log


def warns_that_verification_is_off(log: str) -> None:
    warnings = [line for line in log.splitlines() if "verification is OFF" in line]
    assert warnings and '"level": "warning"' in warnings[0]


@pytest.mark.parametrize(
    ("tls", "check_log"),
    [
        pytest.param(
            lambda broker: {"ca_file": str(broker.tls.ca_cert)},
            says_nothing_of_verification,
            id="the-ca-file-is-verified-and-works",
        ),
        pytest.param(
            lambda broker: {"insecure": True},
            warns_that_verification_is_off,
            id="insecure-must-be-asked-for-and-is-logged-loudly",
        ),
    ],
)
def test_tls_to_the_broker_handles_a_stream(
    broker_run: BrokerRun,
    tls: Callable[[PulsarBroker], dict[str, Any]],
    check_log: Callable[[str], None],
) -> None:
    broker = broker_run.broker
    daemon = broker_run.start("tls", pulsar_url=broker.broker_tls_url, tls=tls(broker))
    stream = interleaved_stream(messages=50, devices=5)
    broker_run.publish(stream)
    broker_run.wait_progress(len(stream), 60, "the stream handled over TLS", daemon)
    assert daemon.stop() == 0, daemon.log_tail()
    check_log(daemon.log())


def test_an_untrusted_certificate_is_refused_by_default(broker_run: BrokerRun) -> None:
    broker = broker_run.broker
    daemon = broker_run.daemon(
        "tls-default", consumer={"operation_timeout": "5s"}, pulsar_url=broker.broker_tls_url
    )
    assert daemon.run_to_exit(90) == 69, daemon.log_tail()
    log = daemon.log()
    assert "tls.ca_file" in log and broker.broker_tls_url in log
