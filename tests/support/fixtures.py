"""Pytest fixtures shared by several test modules (a plugin listed in tests/conftest.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.support import logs
from tests.support.daemon import BrokerRun


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The daemon's real logging (JSON lines, redaction) into a buffer for one test."""
    with logs.captured_logs() as buffer:
        yield buffer


@pytest.fixture
def broker_run(
    pulsar_broker: PulsarBroker,
    tuya_tenant: TuyaTenant,
    tuya_publisher: TuyaPublisher,
    tmp_path: Path,
) -> Iterator[BrokerRun]:
    """Daemon processes on a fresh tenant of the test broker; all closed after the test."""
    run = BrokerRun(pulsar_broker, tuya_tenant, tuya_publisher, tmp_path)
    try:
        yield run
    finally:
        run.close()


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Every test leaves logging as it found it: a command run in this process (``main([...])``,
    a reload) configures it for itself, and its level or structlog's caching would otherwise
    reach the tests after it (their captured logs came back empty)."""
    with logs.logging_restored():
        yield
