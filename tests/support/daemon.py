"""``tuya-events run`` as a real process on the test broker, and the scenarios built from it.

:class:`DaemonProcess` is one instance, configured for a test tenant, its events going to a
records file through the test FileRecorder handler. :class:`BrokerRun` is what a scenario of
tests/test_daemon_broker.py (and of the other daemon-on-the-broker tests) is made of: start
instances, publish a stream, wait for it to be handled, read the delivery ledger; the
``broker_run`` fixture (tests/support/fixtures.py) hands one out and closes its instances.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.pulsar.broker import PulsarBroker
from tests.pulsar.publisher import TuyaPublisher
from tests.pulsar.tenant import TuyaTenant
from tests.pulsar.traffic import DeliveryLedger, DeliveryReport, Outgoing
from tests.support.http import http_get
from tests.support.paths import TUYA_EVENTS, importable_tests_env
from tests.support.ports import free_port
from tests.support.recorder import RECORDER, read_records
from tests.support.waiting import wait_for


class DaemonProcess:
    """One daemon instance; its events go to ``records`` through the test FileRecorder handler."""

    def __init__(
        self,
        workdir: Path,
        tenant: TuyaTenant,
        name: str,
        records: Path,
        recorder: dict[str, Any] | None = None,
        consumer: dict[str, Any] | None = None,
        pulsar_url: str | None = None,
        tls: dict[str, Any] | None = None,
        handlers: list[dict[str, Any]] | None = None,
        sections: dict[str, Any] | None = None,
        tuya: dict[str, Any] | None = None,
        transport: str = "native",
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.dead_letter_path = workdir / f"{name}-dead-letters.sqlite3"
        # websocket: the broker's WebSocket API, with Tuya's headers (tests/pulsar/tenant.py)
        websocket = {"transport": "websocket", "websocket_url": tenant.websocket_url}
        if transport != "websocket":
            websocket = {}
        config = {
            "tuya": {
                "access_id": tenant.access_id,
                "access_secret": tenant.access_secret,
                "pulsar_url": pulsar_url or tenant.broker_url,
                **websocket,
                **(tuya or {}),  # more keys of tuya: (an openapi_url, say)
            },
            "tls": tls or {},
            "http": {"listen": f"127.0.0.1:{self.port}"},
            "dead_letter": {"path": str(self.dead_letter_path)},
            "logging": {"format": "json"},
            "retry": {"initial_backoff": "20ms", "max_backoff": "200ms", "max_attempts": 3},
            "consumer": {"shutdown_timeout": "20s", **(consumer or {})},
            "enrichment": {"enabled": False},  # sections may turn it on, with a fake OpenAPI
            "handlers": [
                {"type": RECORDER, "name": "recorder", "path": str(records), **(recorder or {})},
                *(handlers or []),
            ],
        }
        config.update(sections or {})  # more top-level sections (a ledger, say)
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        command = [str(TUYA_EVENTS), "run", "-c", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--consumer-name", self.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=importable_tests_env(),
            )
        return self

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.port, path)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited {self.process.returncode}:\n{self.log_tail()}"
                )
            return self.get("/readyz")[0] == 200

        wait_for(ready, timeout, f"{self.name} to be ready within {timeout}s", self.log_tail)

    def metric(self, name: str) -> float:
        """Sum of every series of one metric, from the live /metrics page."""
        status, text = self.get("/metrics")
        assert status == 200, text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_metric(self, name: str, value: float, timeout: float, what: str) -> None:
        """Until :meth:`metric` of ``name`` is ``value``."""
        wait_for(lambda: self.metric(name) == value, timeout, what, self.log_tail)

    def rewrite(self, handlers: list[dict[str, Any]]) -> None:
        """The file with these handlers after the recorder (read again on SIGHUP)."""
        self.config["handlers"] = [self.config["handlers"][0], *handlers]
        self.config_path.write_text(yaml.safe_dump(self.config))

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def run_to_exit(self, timeout: float) -> int:
        """Start, and return the exit code of an instance that is expected to give up."""
        try:
            self.start()
            return self.wait(timeout)
        finally:
            self.close()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class BrokerRun:
    """Daemon instances on one test tenant, sharing one records file, and the traffic sent.

    Every instance started here is closed by the fixture that made the run.
    """

    broker: PulsarBroker
    tenant: TuyaTenant
    publisher: TuyaPublisher
    workdir: Path
    daemons: list[DaemonProcess] = field(default_factory=list)

    @property
    def records(self) -> Path:
        return self.workdir / "handled.jsonl"

    def daemon(self, name: str, tenant: TuyaTenant | None = None, **options: Any) -> DaemonProcess:
        """An instance not started yet (``options`` as :class:`DaemonProcess` takes them)."""
        daemon = DaemonProcess(self.workdir, tenant or self.tenant, name, self.records, **options)
        self.daemons.append(daemon)
        return daemon

    def start(self, name: str, **options: Any) -> DaemonProcess:
        """An instance started and ready (subscribed, serving /readyz)."""
        daemon = self.daemon(name, **options)
        daemon.start().wait_ready()
        return daemon

    def subscribe_ahead(self) -> None:
        """Tuya's subscription exists before any message: the broker keeps messages only for
        one, so a stream published before the first instance starts waits for it."""
        self.broker.admin.request(
            "PUT",
            f"/persistent/{self.tenant.access_id}/out/event/subscription/"
            f"{self.tenant.subscription}",
        )

    def publish(self, stream: list[Outgoing]) -> None:
        self.publisher.publish_all(stream)

    def handled(self) -> int:
        """Lines recorded, a redelivered event counting again."""
        return len(read_records(self.records))

    def unique_handled(self) -> int:
        """Distinct (device, seq) recorded."""
        return len({(line["device"], line["seq"]) for line in read_records(self.records)})

    def wait_progress(
        self, count: int, timeout: float, what: str, daemon: DaemonProcess | None = None
    ) -> None:
        """Until at least ``count`` lines are recorded."""
        wait_for(lambda: self.handled() >= count, timeout, what, _tail_of(daemon))

    def wait_handled(
        self, count: int, timeout: float, what: str, daemon: DaemonProcess | None = None
    ) -> None:
        """Until exactly ``count`` distinct events are recorded."""
        wait_for(lambda: self.unique_handled() == count, timeout, what, _tail_of(daemon))

    def backlog(self) -> int:
        return self.broker.admin.backlog(self.tenant.topic(), self.tenant.subscription)

    def wait_backlog(
        self, expected: int = 0, timeout: float = 30, daemon: DaemonProcess | None = None
    ) -> None:
        """Until the subscription's backlog is ``expected`` (0: everything acknowledged)."""
        what = (
            "the subscription backlog to reach 0 (everything acknowledged)"
            if expected == 0
            else f"the subscription backlog to be {expected}"
        )
        wait_for(lambda: self.backlog() == expected, timeout, what, _tail_of(daemon))

    def report(self, published: list[Outgoing]) -> DeliveryReport:
        """What the records say of ``published``: lost, duplicated, out of order, partitions."""
        ledger = DeliveryLedger(published)
        for line in read_records(self.records):
            ledger.record(line["device"], line["seq"], str(line["partition"]))
        return ledger.report()

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()


def _tail_of(daemon: DaemonProcess | None) -> Any:
    return daemon.log_tail if daemon is not None else None


@dataclass
class HandoverCount:
    """What the shared records say after an instance joined mid-backlog (issue 14).

    ``records`` are in the order they were appended (one O_APPEND write per handled event, so
    the file order is the order in which the instances handled them). A *duplicate* is every
    copy of a (device, seq) after its first; it is *stale* when a newer report of the same
    device had already been handled (by either instance) before it: a receiver that does not
    compare event times would then go back to an older state.
    """

    handled: int
    unique: int
    duplicates: int
    stale: int
    per_partition: dict[int, int]  # partition -> duplicates
    by_pid: dict[int, int]  # pid of the instance that handled the later copy -> duplicates
    partitions_of: dict[int, set[int]]  # pid -> partitions it handled
    out_of_order_within_pid: int  # an instance handled a device's seq after a higher one

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> HandoverCount:
        seen: set[tuple[str, int]] = set()
        newest: dict[str, int] = {}
        newest_of_pid: dict[tuple[int, str], int] = {}
        duplicates = stale = out_of_order = 0
        per_partition: dict[int, int] = {}
        by_pid: dict[int, int] = {}
        partitions_of: dict[int, set[int]] = {}
        for line in records:
            device, seq, pid, partition = (
                line["device"],
                line["seq"],
                line["pid"],
                line["partition"],
            )
            partitions_of.setdefault(pid, set()).add(partition)
            key = (device, seq)
            if key in seen:
                duplicates += 1
                per_partition[partition] = per_partition.get(partition, 0) + 1
                by_pid[pid] = by_pid.get(pid, 0) + 1
                if newest.get(device, -1) > seq:
                    stale += 1
            else:
                seen.add(key)
            if newest_of_pid.get((pid, device), -1) > seq:
                out_of_order += 1
            newest[device] = max(newest.get(device, -1), seq)
            newest_of_pid[(pid, device)] = max(newest_of_pid.get((pid, device), -1), seq)
        return cls(
            handled=len(records),
            unique=len(seen),
            duplicates=duplicates,
            stale=stale,
            per_partition=per_partition,
            by_pid=by_pid,
            partitions_of=partitions_of,
            out_of_order_within_pid=out_of_order,
        )


def failover_owner(partition: int, consumer_names: list[str]) -> str:
    """Which consumer the broker makes active for ``partition`` of a Failover subscription.

    Pulsar's ``AbstractDispatcherSingleActiveConsumer.pickAndScheduleActiveConsumer`` sorts the
    consumers by priority level, then by consumer name, and picks ``partition % count`` (unless
    the broker sets ``activeConsumerFailoverConsistentHashing``).
    """
    ordered = sorted(consumer_names)
    return ordered[partition % len(ordered)]
