"""Duplicates when a second instance joins a Failover subscription mid-backlog (issue 14).

Run from the project root: ``.venv/bin/python benchmarks/handover.py`` (about 1 minute per
run plus the broker's start). It starts its own test broker (tests/pulsar) and, per run, a fresh
Tuya-shaped tenant (11 partitions) whose subscription holds ``--messages`` encrypted status reports
from ``--devices`` devices (partition key = device). Then, as real ``tuya-events run`` processes
with the test FileRecorder handler (``--delay`` seconds per event, a webhook's latency):

1. instance A (consumer name ``instance-a``) starts and drains the backlog;
2. when A has handled ``--join-at`` of it, instance B (``instance-b``) starts: the broker moves the
   odd partitions to B (consumers sorted by name, partition % 2);
3. when every message has been handled and the backlog is 0, both stop, and the shared records
   file is counted: duplicates, per moved partition, by the instance that handled the later
   copy, and how many were *stale* (a newer report of the device had already been handled).

``--probe`` first runs the raw pulsar-client experiment behind the README's description: what
the old consumer still holds after the move, when the new one gets its first message, what the
broker redelivers to it, and whether the old consumer's acknowledgements still count.

Each ``--config NAME=key=value,key=value`` is a set of ``consumer:`` settings; the defaults
compare the current defaults with smaller receiver queues and a lower ``max_in_flight``.
It is a benchmark: it prints figures and exits 0; 1 only when a run lost messages.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from benchmarks.machine import describe_machine  # noqa: E402

A, B = "instance-a", "instance-b"
PARTITIONS = 11

# Explicit values, so a changed default does not change what a name means.
DEFAULT_CONFIGS = [
    "rq1000=receiver_queue_size=1000,max_in_flight=1000",  # the defaults before issue 14
    "rq100=receiver_queue_size=100,max_in_flight=1000",  # the defaults since
    "rq20=receiver_queue_size=20,max_in_flight=1000",
    "rq20-mif100=receiver_queue_size=20,max_in_flight=100",
]


@dataclass
class RunResult:
    config: str
    seconds: float  # A's start to the last record
    counts: Any  # tests.support.daemon.HandoverCount
    moved: list[int]
    lost: int

    @property
    def rate(self) -> float:
        return float(self.counts.unique / self.seconds)


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition("=")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value) if value.isdigit() else value
    return name, options


def records_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def unique_handled(path: Path) -> int:
    """Distinct (device, seq) in the complete lines (a line being written is not read)."""
    from tests.support.recorder import read_records

    return len({(r["device"], r["seq"]) for r in read_records(path)})


@contextlib.contextmanager
def backlog_run(broker: Any, args: argparse.Namespace) -> Iterator[tuple[Any, list[Any]]]:
    """A fresh tenant whose subscription holds the whole stream before any instance starts:
    the BrokerRun and the stream; its instances and files are gone afterwards."""
    from tests.pulsar.publisher import TuyaPublisher
    from tests.pulsar.traffic import interleaved_stream
    from tests.support.daemon import BrokerRun

    tenant = broker.create_tenant()
    workdir = Path(tempfile.mkdtemp(prefix="tuya-handover-"))
    stream = interleaved_stream(messages=args.messages, devices=args.devices, seed=args.seed)
    with TuyaPublisher(broker.broker_url, broker.service_credentials, tenant) as publisher:
        run = BrokerRun(broker, tenant, publisher, workdir)
        try:
            run.subscribe_ahead()
            run.publish(stream)
            run.wait_backlog(args.messages, timeout=60)
            yield run, stream
        finally:
            run.close()
            shutil.rmtree(workdir, ignore_errors=True)


def run_once(broker: Any, args: argparse.Namespace, name: str, consumer: dict[str, Any]) -> Any:
    from tests.support.daemon import HandoverCount, failover_owner
    from tests.support.recorder import read_records
    from tests.support.waiting import wait_for

    with backlog_run(broker, args) as (run, stream):
        recorder = {"delay": args.delay} if args.delay else None
        a = run.daemon(A, consumer=consumer, recorder=recorder)
        b = run.daemon(B, consumer=consumer, recorder=recorder)
        started = time.monotonic()
        a.start().wait_ready()
        join_at = int(args.messages * args.join_at)
        wait_for(lambda: records_count(run.records) >= join_at, 120, "A to reach join point")
        at_join = records_count(run.records)
        b.start().wait_ready()
        wait_for(
            lambda: unique_handled(run.records) == args.messages,
            args.timeout,
            "every message handled",
            a.log_tail,
        )
        seconds = time.monotonic() - started
        run.wait_backlog(0, timeout=60)
        wait_quiet(run.records, args.settle)  # A's late copies land before we count
        for daemon in (a, b):
            daemon.stop()
        records = read_records(run.records)
        report = run.report(stream)
    counts = HandoverCount.of(records)
    moved = [p for p in range(PARTITIONS) if failover_owner(p, [A, B]) == B]
    result = RunResult(name, seconds, counts, moved, report.lost)
    pid_note = ", ".join(
        f"pid {pid}: {len(parts)} partitions" for pid, parts in sorted(counts.partitions_of.items())
    )
    print(
        f"  {name:<14} A had handled {at_join:>6,} when B started; {counts.unique:,} unique, "
        f"{counts.duplicates:>5,} duplicates ({counts.stale:,} stale), lost {report.lost}, "
        f"{result.rate:,.0f} msgs/s; {pid_note}",
        flush=True,
    )
    return result


def wait_quiet(path: Path, quiet: float, limit: float = 60.0) -> None:
    """Until no record has been added for ``quiet`` seconds (or ``limit`` has passed)."""
    deadline = time.monotonic() + limit
    last, since = records_count(path), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.2)
        now = records_count(path)
        if now != last:
            last, since = now, time.monotonic()


def run_alone(broker: Any, args: argparse.Namespace, name: str, consumer: dict[str, Any]) -> float:
    """One instance on a fresh backlog, no handover: msgs/s from ready to the last record."""
    from tests.support.waiting import wait_for

    with backlog_run(broker, args) as (run, _stream):
        a = run.daemon(A, consumer=consumer)
        a.start().wait_ready()
        started = time.monotonic()
        wait_for(
            lambda: records_count(run.records) >= args.messages,
            args.timeout,
            "every message handled",
            a.log_tail,
            interval=0.05,
        )
        seconds = time.monotonic() - started
        run.wait_backlog(0, timeout=60)
        a.stop()
    rate = float(args.messages / seconds)
    print(
        f"  {name:<14} alone: {args.messages:,} in {seconds:5.2f} s = {rate:,.0f} msgs/s",
        flush=True,
    )
    return rate


# --- the raw experiment ------------------------------------------------------------------------


def probe(broker: Any, messages: int, devices: int) -> None:
    """Two raw Failover consumers: what moves, when, what is redelivered, whose acks count."""
    import pulsar

    from tests.pulsar.publisher import TuyaPublisher
    from tests.pulsar.traffic import interleaved_stream

    tenant = broker.create_tenant()
    topic, sub = tenant.topic(), tenant.subscription
    path = topic.removeprefix("persistent://")
    broker.admin.request("PUT", f"/persistent/{path}/subscription/{sub}")
    with TuyaPublisher(broker.broker_url, broker.service_credentials, tenant) as publisher:
        publisher.publish_all(interleaved_stream(messages=messages, devices=devices, seed=5))

    def subscribe(client: Any, name: str) -> Any:
        return client.subscribe(
            topic,
            sub,
            consumer_type=pulsar.ConsumerType.Failover,
            consumer_name=name,
            receiver_queue_size=1000,
        )

    def stats() -> dict[int, tuple[str | None, int]]:
        data = broker.admin.request(
            "GET", f"/persistent/{path}/partitioned-stats?perPartition=true"
        )
        out = {}
        for name, part in data["partitions"].items():
            s = part["subscriptions"][sub]
            out[int(name.rsplit("-", 1)[1])] = (s.get("activeConsumerName"), s["msgBacklog"])
        return out

    auth = tenant.authentication()
    client_a = pulsar.Client(broker.broker_url, authentication=auth, logger=_quiet())
    client_b = pulsar.Client(broker.broker_url, authentication=auth, logger=_quiet())
    try:
        consumer_a = subscribe(client_a, A)
        held: list[Any] = []
        for _ in range(1000):  # A takes 1,000 and acknowledges none of them yet
            held.append(consumer_a.receive(5000))
        time.sleep(1.0)  # A's receiver queues refill
        print(f"probe: A received {len(held)} (unacknowledged); backlog {sum_backlog(stats())}")
        b_got: list[tuple[float, Any]] = []
        stop = threading.Event()
        consumer_b = subscribe(client_b, B)
        joined = time.monotonic()

        def b_loop() -> None:
            while not stop.is_set():
                try:
                    b_got.append((time.monotonic() - joined, consumer_b.receive(200)))
                except pulsar.Timeout:
                    continue

        thread = threading.Thread(target=b_loop, daemon=True)
        thread.start()
        moved = {p for p, (owner, _) in stats().items() if owner == B}
        # A keeps receiving from what its client already holds, acknowledging nothing.
        a_after: list[Any] = []
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            try:
                a_after.append(consumer_a.receive(200))
            except pulsar.Timeout:
                continue
        a_after_moved = [m for m in a_after if m.message_id().partition() in moved]
        print(
            f"probe: B joined; active consumer per partition says B owns {sorted(moved)} "
            f"(sorted names, partition % 2)"
        )
        print(
            f"probe: in the 4 s after B joined, A still received {len(a_after)} messages, "
            f"{len(a_after_moved)} of them from partitions that moved (its client's receiver "
            "queues are not cleared)"
        )
        first = min((t for t, _ in b_got), default=None)
        print(
            f"probe: B's first message {first:.2f} s after its subscribe returned"
            if first is not None
            else "probe: B got nothing in 4 s"
        )
        ids_a = {
            (str(m.message_id())) for m in held + a_after if m.message_id().partition() in moved
        }
        ids_b = {str(m.message_id()) for _, m in b_got}
        print(
            f"probe: B received {len(ids_b)}; {len(ids_a & ids_b)} of them A had received and "
            "not acknowledged (the broker rewound to the first unacknowledged message)"
        )
        stop.set()
        thread.join()
        before = stats()
        for m in held + a_after:
            consumer_a.acknowledge(m)
        time.sleep(1.5)  # the client groups acks for 100 ms
        after = stats()
        moved_before = sum(before[p][1] for p in moved)
        moved_after = sum(after[p][1] for p in moved)
        a_moved_acks = sum(1 for m in held + a_after if m.message_id().partition() in moved)
        print(
            f"probe: A acknowledged {a_moved_acks} messages of moved partitions after losing them: "
            f"their backlog went {moved_before} -> {moved_after} (B acknowledged nothing), so an "
            "inactive consumer's acknowledgements are "
            + ("accepted" if moved_before - moved_after == a_moved_acks else "NOT all accepted")
        )
        consumer_a.close()
        consumer_b.close()
    finally:
        client_a.close()
        client_b.close()


def sum_backlog(stats: dict[int, tuple[str | None, int]]) -> int:
    return sum(backlog for _, backlog in stats.values())


def _quiet() -> Any:
    import logging

    logger = logging.getLogger("handover.pulsar")
    logger.setLevel(logging.WARNING)
    return logger


# --- reporting ---------------------------------------------------------------------------------


def print_table(results: dict[str, list[RunResult]], configs: dict[str, dict[str, Any]]) -> None:
    print()
    print(
        "| config | consumer settings | runs | duplicates (median, range) | stale | "
        "on moved partitions | later copy by A / B | msgs/s (median) | lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        dups = [r.counts.duplicates for r in runs]
        stale = [r.counts.stale for r in runs]
        on_moved = [sum(v for p, v in r.counts.per_partition.items() if p in r.moved) for r in runs]
        by_a = [
            r.counts.by_pid.get(min(r.counts.partitions_of, key=_first_pid(r)), 0) for r in runs
        ]
        settings = ", ".join(f"{k}={v}" for k, v in configs[name].items()) or "(defaults)"
        print(
            f"| {name} | {settings} | {len(runs)} | {statistics.median(dups):,.0f} "
            f"({min(dups):,}-{max(dups):,}) | {statistics.median(stale):,.0f} | "
            f"{sum(on_moved):,} of {sum(dups):,} | {sum(by_a):,} / {sum(dups) - sum(by_a):,} | "
            f"{statistics.median(r.rate for r in runs):,.0f} | {sum(r.lost for r in runs)} |"
        )
    print()
    for name, runs in results.items():
        for index, r in enumerate(runs):
            per = ", ".join(f"{p}: {r.counts.per_partition.get(p, 0)}" for p in r.moved)
            print(f"{name} run {index + 1}: duplicates on moved partitions {{{per}}}")


def _first_pid(result: RunResult) -> Any:
    """A is the instance that handled all 11 partitions."""
    return lambda pid: -len(result.counts.partitions_of[pid])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("-r", "--repeat", type=int, default=2, help="runs per config")
    parser.add_argument("--delay", type=float, default=0.02, help="handler seconds per event")
    parser.add_argument("--join-at", type=float, default=0.2, help="share A has handled")
    parser.add_argument("--config", action="append", help="NAME=key=value,... (repeatable)")
    parser.add_argument("--probe", action="store_true", help="run the raw experiment first")
    parser.add_argument("--no-runs", action="store_true", help="only the probe")
    parser.add_argument(
        "--alone",
        action="store_true",
        help="instead: one instance per run, no handler delay, no handover (throughput)",
    )
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=3)
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tests.pulsar.broker import PulsarBroker, log_to_stderr
    from tests.pulsar.build import prepare

    print(describe_machine("pulsar-client", note=" (the broker JVM runs on the same CPUs)"))
    configs = dict(parse_config(text) for text in (args.config or DEFAULT_CONFIGS))
    signal.signal(signal.SIGTERM, _interrupt)
    broker = PulsarBroker(prepare(log_to_stderr), log=log_to_stderr)
    lost = 0
    try:
        broker.start()
        if args.probe:
            probe(broker, 5000, args.devices)
        if args.no_runs:
            return 0
        what = (
            "one instance, no handler delay"
            if args.alone
            else f"handler delay {args.delay}s, B joins at {args.join_at:.0%}"
        )
        print(
            f"{args.messages:,} messages, {args.devices} devices, {what}; "
            f"{args.repeat} runs per config, interleaved",
            flush=True,
        )
        if args.alone:
            rates: dict[str, list[float]] = {name: [] for name in configs}
            for round_ in range(args.repeat):
                order = list(configs.items())
                for name, consumer in order if round_ % 2 == 0 else order[::-1]:
                    rates[name].append(run_alone(broker, args, name, consumer))
            print()
            print("| config | consumer settings | runs | msgs/s median (range) |")
            print("|---|---|---|---|")
            for name, values in rates.items():
                settings = ", ".join(f"{k}={v}" for k, v in configs[name].items()) or "(defaults)"
                print(
                    f"| {name} | {settings} | {len(values)} | {statistics.median(values):,.0f} "
                    f"({min(values):,.0f}-{max(values):,.0f}) |"
                )
            return 0
        results: dict[str, list[RunResult]] = {name: [] for name in configs}
        for round_ in range(args.repeat):
            order = list(configs.items())
            for name, consumer in order if round_ % 2 == 0 else order[::-1]:
                result = run_once(broker, args, name, consumer)
                results[name].append(result)
                lost += result.lost
        print_table(results, configs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        broker.close()
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
