"""Pytest fixtures for the real Apache Pulsar test broker (a plugin listed in tests/conftest.py).

- ``pulsar_broker`` (session): a running :class:`PulsarBroker`; ``restart()``/``stop()``/``start()``
  keep its ports and data. A broker that cannot start fails every test that asks for it.
- ``tuya_tenant`` (function): fresh credentials registered with the broker, and their tenant
  ``{ACCESS_ID}``, namespace ``{ACCESS_ID}/out`` and topics ``event`` (11 partitions),
  ``event-test`` (1) and ``notice`` (not partitioned) — so no test sees another's messages.
- ``tuya_credentials`` (function): that tenant's :class:`TuyaCredentials`.
- ``tuya_publisher`` (function): a :class:`TuyaPublisher` on the tenant's ``event`` topic;
  ``tuya_notice_publisher``: one on its ``notice`` topic.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .broker import PulsarBroker, log_to_stderr
from .build import prepare
from .credentials import TuyaCredentials
from .publisher import TuyaPublisher
from .tenant import TuyaTenant

_brokers: list[PulsarBroker] = []


@pytest.fixture(scope="session")
def pulsar_broker() -> Iterator[PulsarBroker]:
    broker = PulsarBroker(prepare(log_to_stderr), log=log_to_stderr)
    _brokers.append(broker)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


@pytest.fixture
def tuya_tenant(pulsar_broker: PulsarBroker) -> TuyaTenant:
    return pulsar_broker.create_tenant()


@pytest.fixture
def tuya_credentials(tuya_tenant: TuyaTenant) -> TuyaCredentials:
    return tuya_tenant.credentials


@pytest.fixture
def tuya_publisher(pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant) -> Iterator[TuyaPublisher]:
    with TuyaPublisher(
        pulsar_broker.broker_url, pulsar_broker.service_credentials, tuya_tenant
    ) as publisher:
        yield publisher


@pytest.fixture
def tuya_notice_publisher(
    pulsar_broker: PulsarBroker, tuya_tenant: TuyaTenant
) -> Iterator[TuyaPublisher]:
    with TuyaPublisher(
        pulsar_broker.broker_url, pulsar_broker.service_credentials, tuya_tenant, "notice"
    ) as publisher:
        yield publisher


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how long the broker took to start: the number that decides the suite's budget."""
    for broker in _brokers:
        if broker.start_durations:
            times = ", ".join(f"{seconds:.1f} s" for seconds in broker.start_durations)
            terminalreporter.write_line(f"pulsar test broker start-up: {times}")
