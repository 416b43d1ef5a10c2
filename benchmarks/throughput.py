"""Messages/s from a real Pulsar backlog: the raw pulsar-client loop against the daemon's path.

Run from the project root: ``.venv/bin/python benchmarks/throughput.py`` (about 4 minutes with
the defaults). ``--profile --profile proposals --experiment all -r 5`` adds the breakdown and the
measured proposals (about 20 minutes).

It starts its own test broker (tests/pulsar, a real standalone Pulsar in a JVM), creates one
Tuya-shaped tenant (topic with 11 partitions), pre-creates one subscription per measured run and
publishes ``--messages`` encrypted status reports once (ECB and GCM alternating, ``--devices``
devices, partition key = device). Every run then consumes the same backlog on its own
subscription, in a fresh process of its own, one run after the other:

- **raw**: what a user writes with ``pulsar-client``: ``consumer.receive()`` +
  ``consumer.acknowledge(msg)`` in a tight loop, Failover, same ``receiver_queue_size``.
- **raw+decode**: the same loop plus ``TuyaCodec.decode`` per message.
- **daemon**: ``Daemon`` in-process (HTTP off) on ``PulsarSource`` and ``Pipeline`` with a no-op
  handler: everything decrypted, ordered per device, acknowledged individually. Enrichment is
  off (``enrichment.enabled: false``), so its figures compare with those before issue 16.
- **daemon+enrichment**: the same with enrichment on and the catalogue warm: the worker writes
  the backlog's devices into the catalogue file first, and the OpenAPI URL is a loopback port
  nobody listens on, so a miss would show (the run fails unless every message was a hit).
- **daemon+websocket**: the daemon path on ``WebSocketSource`` (``tuya.transport: websocket``):
  the broker's WebSocket API with Tuya's headers, window ``min(max_in_flight, 1000)``.
- **tuya-connector** (when the ``bench`` extra installed it; ``--no-tuya-connector`` skips it):
  Tuya's own WebSocket consumer, ``tuya-connector-python``'s ``TuyaOpenPulsar`` as its README
  shows it (a listener per message), on a backlog of its own, ECB only (it cannot decrypt GCM),
  beside daemon+websocket and daemon on that same ECB backlog. Only its URL is patched, to this
  run's subscription; everything else (``ackTimeoutMillis=3000``, ack after the listener) is its
  own.

A run's clock starts when its first receive returns and stops at its last acknowledgement; every
run must count the whole backlog, and the subscription's backlog must then reach 0. An unmeasured
raw run goes first (the first consumer after publishing is slower); rounds alternate their order
(raw, raw+decode, daemon, daemon+enrichment, then back) so drifting load hits them alike.
CPU seconds per thread, of the broker JVM and of the whole machine come from /proc. The memory run
consumes a separate ``--memory-messages`` backlog (second tenant) with the daemon and samples
VmRSS every ``--rss-every`` acknowledgements. ``--profile`` adds a cProfile'd daemon run;
``--experiment NAME`` adds daemon runs with a prototype change (monkeypatched in the worker
process only: nothing under tuya_events/ is changed), and ``--micro`` times the changed pieces
alone. See benchmarks/README.md.

It is a benchmark, not a test: it prints figures and exits 0 whether or not the goal is met; it
exits 1 only when a run did not consume its whole backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import importlib.util
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.pulsar and benchmarks.machine

import _pulsar  # noqa: E402
import pulsar  # noqa: E402

from benchmarks.machine import describe_machine  # noqa: E402
from tuya_events.catalogue.enrich import OUTCOMES  # noqa: E402
from tuya_events.catalogue.store import CatalogueStore  # noqa: E402
from tuya_events.config.loader import settings_from_mapping  # noqa: E402
from tuya_events.config.settings import catalogue_path  # noqa: E402
from tuya_events.daemon import Daemon, Stopped  # noqa: E402
from tuya_events.deadletter.store import DeadLetterStore  # noqa: E402
from tuya_events.delivery import Delivery  # noqa: E402
from tuya_events.handlers.base import BaseHandler  # noqa: E402
from tuya_events.observability import metrics as metrics_module  # noqa: E402
from tuya_events.observability.logging import configure_logging  # noqa: E402
from tuya_events.pipeline.pipeline import Pipeline  # noqa: E402
from tuya_events.pipeline.routes import Route  # noqa: E402
from tuya_events.transport import pulsar as transport  # noqa: E402
from tuya_events.transport.acks import PrefixAcks  # noqa: E402
from tuya_events.transport.pulsar import PulsarSource  # noqa: E402
from tuya_events.transport.websocket import WebSocketSource  # noqa: E402
from tuya_events.tuya.auth import pulsar_authentication  # noqa: E402
from tuya_events.tuya.codec import TuyaCodec  # noqa: E402
from tuya_events.tuya.devices import make_device, parse_specification  # noqa: E402
from tuya_events.tuya.events import Event  # noqa: E402

GOAL_RATIO = 0.8
# Issue 16: with enrichment on and the catalogue warm, within 5% of the daemon's msgs/s.
GOAL_ENRICHED = 0.95
# The raw loop and the daemon with the same receiver queue, so the ratio measures the daemon's
# own cost. 1000 was the daemon's default until session 5; the default is now 100 (handover
# duplicates: benchmarks/README.md "Handover"), which a busy project may raise back.
RECEIVER_QUEUE_SIZE = 1000
CHECKPOINT = 50_000  # the memory run compares RSS here with RSS at the end
RAW, RAW_DECODE, DAEMON, MICRO = "raw", "raw+decode", "daemon", "micro"
ENRICHED = "daemon+enrichment"
WEBSOCKET = "daemon+websocket"
TUYA_CONNECTOR = "tuya-connector"
DAEMONS = (DAEMON, ENRICHED, WEBSOCKET)
HIT_SAMPLE = "tuya_events_enrichment_total"
CLK_TCK = os.sysconf("SC_CLK_TCK")
RESULT_PREFIX = "RESULT "


# --- what a worker is told and what it answers ------------------------------------------------


@dataclass
class WorkerSpec:
    """Everything a worker process needs; passed as JSON on its command line."""

    kind: str
    broker_url: str
    access_id: str
    access_secret: str
    subscription: str
    expected: int
    broker_pid: int | None
    rss_every: int
    experiments: list[str] = field(default_factory=list)
    profile_path: str | None = None
    devices: int = 0  # the backlog's devices: daemon+enrichment puts them in the catalogue
    websocket_url: str = ""  # the broker's WebSocket API: daemon+websocket, tuya-connector


@dataclass
class Snapshot:
    """CPU seconds at one instant: this process, each of its threads, the broker, the machine."""

    wall: float
    process: float
    threads: dict[int, tuple[str, float]]
    broker: float
    machine_busy: float


@dataclass
class WorkerResult:
    kind: str
    experiments: list[str]
    consumed: int
    setup_seconds: float  # process start -> subscribed
    seconds: float  # first receive returned -> last acknowledgement
    untimed: int  # messages that came with the first receive, before the clock started
    cpu: float  # this process, all threads, over `seconds`
    main_thread_cpu: float
    threads: dict[str, float]  # CPU seconds by thread group over `seconds`
    broker_cpu: float
    machine_cpu: float  # every process on the machine, CPU seconds
    rss_start_kb: int  # after subscribing, before the first message
    rss_samples: list[tuple[int, int]]  # (messages consumed, VmRSS kB)
    vm_hwm_kb: int
    batches: int = 0  # daemon: non-empty receive_batch calls
    empty_batches: int = 0
    gc_collections: list[int] = field(default_factory=list)
    tasks: int = 0  # daemon: tasks the pipeline spawned
    ack_seconds: float = 0.0  # daemon: wall time inside PulsarSource.acknowledge
    # daemon+enrichment: tuya_events_enrichment_total by outcome, and the catalogue's calls.
    enrichment: dict[str, float] = field(default_factory=dict)
    catalogue_calls: int = 0
    duplicates: int = 0  # tuya-connector: reports that came again (its 3 s ack timeout)

    @property
    def rate(self) -> float:
        return (self.consumed - self.untimed) / self.seconds

    def per_message_us(self, seconds: float) -> float:
        return seconds / self.consumed * 1e6

    @property
    def label(self) -> str:
        return "+".join([self.kind, *self.experiments])


def read_status_kb(field_name: str) -> int:
    """VmRSS / VmHWM of this process, in kB (the kernel's figures, no sampling thread)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name):
                return int(line.split()[1])
    return 0


def _stat_cpu(path: str) -> tuple[str, float]:
    """(comm, utime + stime seconds) from a /proc/.../stat file."""
    with open(path) as stat:
        text = stat.read()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / CLK_TCK


def snapshot(broker_pid: int | None) -> Snapshot:
    threads: dict[int, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            threads[int(tid)] = _stat_cpu(f"/proc/self/task/{tid}/stat")
    broker = 0.0
    if broker_pid is not None:
        with contextlib.suppress(OSError):
            broker = _stat_cpu(f"/proc/{broker_pid}/stat")[1]
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    busy = sum(values) - values[3] - values[4]  # minus idle and iowait
    times = os.times()
    return Snapshot(time.perf_counter(), times.user + times.system, threads, broker, busy / CLK_TCK)


def thread_cpu(
    first: Snapshot, last: Snapshot, names: dict[int, str]
) -> tuple[float, dict[str, float]]:
    """CPU of the main thread, and of every thread grouped by name, between two snapshots."""
    groups: dict[str, float] = defaultdict(float)
    main = 0.0
    for tid, (comm, seconds) in last.threads.items():
        used = seconds - first.threads.get(tid, (comm, 0.0))[1]
        if tid == os.getpid():
            main = used
            name = "main (event loop / receive loop)"
        else:
            name = names.get(tid, f"{comm} (pulsar-client C++)")
        groups[name] += used
    return main, dict(groups)


def finish(
    spec: WorkerSpec,
    started: float,
    subscribed: float,
    first: Snapshot,
    last: Snapshot,
    consumed: int,
    rss_start: int,
    samples: list[tuple[int, int]],
    names: dict[int, str],
    untimed: int,
    **extra: Any,
) -> WorkerResult:
    main, groups = thread_cpu(first, last, names)
    return WorkerResult(
        kind=spec.kind,
        experiments=spec.experiments,
        consumed=consumed,
        setup_seconds=subscribed - started,
        seconds=last.wall - first.wall,
        untimed=untimed,
        cpu=last.process - first.process,
        main_thread_cpu=main,
        threads=groups,
        broker_cpu=last.broker - first.broker,
        machine_cpu=last.machine_busy - first.machine_busy,
        rss_start_kb=rss_start,
        rss_samples=samples,
        vm_hwm_kb=read_status_kb("VmHWM"),
        gc_collections=[generation["collections"] for generation in gc.get_stats()],
        **extra,
    )


# --- (a) the raw pulsar-client loop -----------------------------------------------------------


def run_raw(spec: WorkerSpec, decode: bool) -> WorkerResult:
    """The loop a user writes: receive, (decode), acknowledge. Nothing else in the loop."""
    started = time.perf_counter()
    # No ``logger=``: what users write. The default is the C++ console logger (INFO, stdout).
    client = pulsar.Client(
        spec.broker_url,
        authentication=pulsar_authentication(spec.access_id, spec.access_secret),
        operation_timeout_seconds=30,
    )
    try:
        consumer = client.subscribe(
            f"persistent://{spec.access_id}/out/event",
            spec.subscription,
            consumer_type=pulsar.ConsumerType.Failover,
            receiver_queue_size=RECEIVER_QUEUE_SIZE,
        )
        subscribed = time.perf_counter()
        rss_start = read_status_kb("VmRSS")
        # The daemon's codec settings (sign_check "log" is its default).
        codec = TuyaCodec(spec.access_secret, sign_check="log", on_sign_mismatch=lambda _: None)
        expected, every = spec.expected, spec.rss_every
        samples: list[tuple[int, int]] = []
        message = consumer.receive()
        first = snapshot(spec.broker_pid)
        count = 0
        while True:
            if decode:
                codec.decode(message.data(), message.properties())
            consumer.acknowledge(message)
            count += 1
            if count % every == 0:
                samples.append((count, read_status_kb("VmRSS")))
            if count == expected:
                break
            message = consumer.receive()
        last = snapshot(spec.broker_pid)
        consumer.close()  # flushes the grouped acknowledgements
    finally:
        client.close()
    return finish(spec, started, subscribed, first, last, count, rss_start, samples, {}, 1)


# --- (a') Tuya's own WebSocket consumer ------------------------------------------------------


def run_tuya_connector(spec: WorkerSpec) -> WorkerResult:
    """``TuyaOpenPulsar`` with a listener, as tuya-connector-python's README shows it; the clock
    stops when the last distinct report has been through the listener (its ack follows)."""
    from tuya_connector import TuyaOpenPulsar
    from tuya_connector import openpulsar as connector

    started = time.perf_counter()
    url = (
        f"{spec.websocket_url.rstrip('/')}/ws/v2/consumer/persistent/{spec.access_id}/out/event/"
        f"{spec.subscription}{connector.WEB_SOCKET_QUERY_PARAMS}"
    )
    # Its URL names {access_id}-sub; this run's subscription instead, nothing else changed.
    TuyaOpenPulsar._TuyaOpenPulsar__get_topic_url = lambda self: url  # type: ignore[attr-defined]
    consumer = TuyaOpenPulsar(spec.access_id, spec.access_secret, spec.websocket_url, "event")
    seen: set[str] = set()
    state: dict[str, Any] = {"first": None, "last": None, "duplicates": 0}
    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def listener(decrypted: str) -> None:
        if state["first"] is None:
            state["first"] = snapshot(spec.broker_pid)
        data_id = json.loads(decrypted)["dataId"]
        if data_id in seen:
            state["duplicates"] += 1
            return
        seen.add(data_id)
        if len(seen) % spec.rss_every == 0:
            samples.append((len(seen), read_status_kb("VmRSS")))
        if len(seen) == spec.expected:
            state["last"] = snapshot(spec.broker_pid)
            done.set()

    consumer.add_message_listener(listener)
    consumer.start()
    subscribed = time.perf_counter()  # its thread connects on its own: as close as it gets
    rss_start = read_status_kb("VmRSS")
    if not done.wait(max(300.0, spec.expected / 200)):
        raise RuntimeError(f"tuya-connector consumed {len(seen)} of {spec.expected}")
    time.sleep(1.0)  # its acknowledgement of the last report, sent after the listener returns
    consumer.stop()
    return finish(
        spec,
        started,
        subscribed,
        state["first"],
        state["last"],
        len(seen),
        rss_start,
        samples,
        {},
        1,
        duplicates=state["duplicates"],
    )


# --- (b) the daemon's path ---------------------------------------------------------------------


class NoopHandler(BaseHandler):
    """Does nothing, so that what is measured is the daemon's own cost per message.

    A plain ``def``, the contract's form for work that never waits (as the log handler is):
    ``--experiment async-handler`` measures the same no-op as an ``async def``.
    """

    def handle(self, event: Event, delivery: Delivery) -> None:
        return None


class Measured:
    """What the measured sources note: the first batch, acknowledgements counted (with the wall
    time they took) and RSS sampled. On the per-message path: a counter, a comparison and two
    clock reads (about 0.2 us). Mixed in before the source class, whose methods it wraps."""

    def _measure(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.acked = self.batches = self.empty_batches = self.first_batch = 0
        self.ack_seconds = 0.0
        self.first: Snapshot | None = None
        self.last: Snapshot | None = None
        self.samples: list[tuple[int, int]] = []
        self.done = asyncio.Event()
        self.on_first: Callable[[], None] | None = None
        self.on_last: Callable[[], None] | None = None

    async def receive_batch(self) -> list[Delivery]:
        batch: list[Delivery] = await super().receive_batch()  # type: ignore[misc]
        if not batch:
            self.empty_batches += self.first is not None
            return batch
        self.batches += 1
        if self.first is None:
            self.first = snapshot(self.spec.broker_pid)
            self.first_batch = len(batch)
            if self.on_first is not None:
                self.on_first()
        return batch

    def acknowledge(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        super().acknowledge(delivery)  # type: ignore[misc]
        self.ack_seconds += time.perf_counter() - started
        self.acked += 1
        if self.acked % self.spec.rss_every == 0:
            self.samples.append((self.acked, read_status_kb("VmRSS")))
        if self.acked == self.spec.expected:
            if self.on_last is not None:
                self.on_last()
            self.last = snapshot(self.spec.broker_pid)
            self.done.set()


class MeasuredSource(Measured, PulsarSource):
    """``PulsarSource`` with :class:`Measured`'s notes."""

    def __init__(self, settings: Any, spec: WorkerSpec) -> None:
        PulsarSource.__init__(self, settings, consumer_name="benchmark")
        self._measure(spec)


class MeasuredWebSocketSource(Measured, WebSocketSource):
    """``WebSocketSource`` with :class:`Measured`'s notes."""

    def __init__(self, settings: Any, spec: WorkerSpec) -> None:
        WebSocketSource.__init__(self, settings, consumer_name="benchmark")
        self._measure(spec)


def daemon_settings(spec: WorkerSpec, workdir: Path, sign_check: str = "log") -> Any:
    """The daemon's defaults but for the broker, the queue, HTTP and enrichment (explicitly off
    on the daemon path, so its figures stay comparable with those from before issue 16)."""
    enriched = spec.kind == ENRICHED
    tuya: dict[str, Any] = {
        "access_id": spec.access_id,
        "access_secret": spec.access_secret,
        "pulsar_url": spec.broker_url,
        "subscription_suffix": spec.subscription.removeprefix(f"{spec.access_id}-"),
        "sign_check": sign_check,
    }
    if enriched:
        # Nobody listens there: a catalogue miss fails its lookup at once and is counted
        # as such, instead of being answered from anywhere.
        tuya["openapi_url"] = f"http://127.0.0.1:{unused_port()}"
    if spec.kind == WEBSOCKET:
        tuya["transport"], tuya["websocket_url"] = "websocket", spec.websocket_url
    return settings_from_mapping(
        {
            "tuya": tuya,
            "consumer": {"receiver_queue_size": RECEIVER_QUEUE_SIZE},
            "dead_letter": {"path": str(workdir / "dead-letters.sqlite3")},
            "http": {"enabled": False},
            "enrichment": {"enabled": enriched},
        },
        {},
    )


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# A plug's specification as the OpenAPI gives it, plus the traffic's ``seq`` (dp 1).
SPECIFICATION = {
    "category": "cz",
    "status": [
        {"code": "seq", "dp_id": 1, "type": "Integer", "values": '{"min":0,"scale":0,"step":1}'},
        {"code": "switch_1", "dp_id": 2, "type": "Boolean", "values": "{}"},
        {
            "code": "cur_power",
            "dp_id": 19,
            "type": "Integer",
            "values": '{"unit":"W","min":0,"max":50000,"scale":1,"step":1}',
        },
        {
            "code": "cur_voltage",
            "dp_id": 20,
            "type": "Integer",
            "values": '{"unit":"V","min":0,"max":5000,"scale":1,"step":1}',
        },
    ],
}


def warm_catalogue(settings: Any, devices: int) -> None:
    """Every device of the backlog in the catalogue file, fresh, before the daemon starts:
    the catalogue loads it and makes no call."""
    from tests.pulsar.traffic import PRODUCT_KEY, device_ids

    now_ms = int(time.time() * 1000)
    points = list(parse_specification(SPECIFICATION).values())
    known = [
        make_device(
            {"id": device_id, "name": f"Plug {index}", "product_id": PRODUCT_KEY, "online": True},
            points,
            now_ms,
            now_ms,
        )
        for index, device_id in enumerate(device_ids(devices))
    ]
    with CatalogueStore(catalogue_path(settings)) as store:
        store.save(known)


async def run_daemon(spec: WorkerSpec) -> WorkerResult:
    started = time.perf_counter()
    sign_check = "log"
    for name in spec.experiments:
        sign_check = EXPERIMENTS[name].apply() or sign_check
    tasks = count_spawned_tasks()
    with tempfile.TemporaryDirectory(prefix="tuya-bench-") as tmp:
        settings = daemon_settings(spec, Path(tmp), sign_check)
        if spec.kind == ENRICHED:
            warm_catalogue(settings, spec.devices)
        websocket = spec.kind == WEBSOCKET
        source: Any = (
            MeasuredWebSocketSource(settings, spec) if websocket else MeasuredSource(settings, spec)
        )
        store = DeadLetterStore(settings.dead_letter.path).open()
        try:
            daemon = Daemon(settings, source, [Route(NoopHandler("noop"))], store, http=False)
            profiler = cProfile.Profile() if spec.profile_path else None
            if profiler is not None:
                source.on_first, source.on_last = profiler.enable, profiler.disable
            run = asyncio.get_running_loop().create_task(daemon.run())
            while (source.events if websocket else source._consumer) is None and not run.done():
                await asyncio.sleep(0.005)
            subscribed = time.perf_counter()
            rss_start = read_status_kb("VmRSS")
            threads: dict[int, str] = {}
            if not websocket:  # the WebSocket source has no thread of its own
                receiver = source._executor.submit(threading.get_native_id).result()
                threads[receiver] = "receive worker (batch_receive)"
            waiter = asyncio.ensure_future(source.done.wait())
            await asyncio.wait({waiter, run}, return_when=asyncio.FIRST_COMPLETED)
            if run.done():  # it ended before consuming everything: show why
                waiter.cancel()
                raise RuntimeError(f"the daemon stopped early ({run.result()})")
            daemon.request_stop()
            stopped = await run
            if stopped is not Stopped.DRAINED or store.count() != 0:
                raise RuntimeError(f"the daemon stopped {stopped}, {store.count()} dead letters")
            enrichment = enrichment_counts(daemon)
        finally:
            store.close()
        if profiler is not None and spec.profile_path:
            profiler.dump_stats(spec.profile_path)
    assert source.first is not None and source.last is not None
    return finish(
        spec,
        started,
        subscribed,
        source.first,
        source.last,
        source.acked,
        rss_start,
        source.samples,
        threads,
        source.first_batch,
        batches=source.batches,
        empty_batches=source.empty_batches,
        tasks=tasks[0],
        ack_seconds=source.ack_seconds,
        enrichment=enrichment,
        catalogue_calls=daemon.catalogue.calls if daemon.catalogue is not None else 0,
    )


def enrichment_counts(daemon: Daemon) -> dict[str, float]:
    """``tuya_events_enrichment_total`` by outcome, as the daemon's /metrics would show it."""
    registry = daemon.metrics.registry
    counts = {}
    for outcome in OUTCOMES:
        value = registry.get_sample_value(HIT_SAMPLE, {"outcome": outcome})
        if value is not None:
            counts[outcome] = value
    return counts


def count_spawned_tasks() -> list[int]:
    """Count the pipeline's tasks (one list cell, so the caller reads the final figure)."""
    counter = [0]
    original = Pipeline._spawn

    def spawn(self: Pipeline, coro: Any) -> None:
        counter[0] += 1
        original(self, coro)

    Pipeline._spawn = spawn  # type: ignore[method-assign]
    return counter


# --- experiments: prototypes of proposed changes, monkeypatched in the worker only -------------


@dataclass
class Experiment:
    """A proposed change, applied by patching in the worker process (never in tuya_events/)."""

    summary: str
    patch: Callable[[], str | None]  # returns a sign_check override, if any

    def apply(self) -> str | None:
        return self.patch()


def _sign_off() -> str:
    """A setting, not a code change: what the default ``sign_check: log`` costs per message."""
    return "off"


def _no_metrics() -> None:
    """Upper bound: no per-message metric at all (not a proposal: the metrics are needed)."""

    def nothing(*_: Any, **__: Any) -> None:
        return None

    metrics_module.Metrics.received = nothing  # type: ignore[method-assign]
    metrics_module.Metrics.decoded = nothing  # type: ignore[method-assign]
    metrics_module.Metrics.handler_outcome = nothing  # type: ignore[method-assign]
    metrics_module.Metrics.acked = nothing  # type: ignore[method-assign]


def _cumulative_acks() -> None:
    """``consumer.acknowledgement: cumulative``: one ack per partition and turn (a setting)."""
    original = PulsarSource.__init__

    def init(self: PulsarSource, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._prefix_acks = PrefixAcks(
            self._acknowledge_cumulative,
            self._acknowledge_one,
            max_waiting=self.settings.consumer.max_in_flight,
        )

    PulsarSource.__init__ = init  # type: ignore[method-assign]


def _blocking_acks() -> None:
    """The blocking ``acknowledge`` the daemon used before ``acknowledge_async`` (a reference:
    what the change saved)."""

    def acknowledge_one(self: PulsarSource, message: Any) -> None:
        if self._binding is not None:
            self._binding.acknowledge(message)

    PulsarSource._acknowledge_one = acknowledge_one  # type: ignore[method-assign]


def _async_handler() -> None:
    """The no-op as ``async def``: what a handler that may wait costs (a task per device)."""

    async def handle(self: NoopHandler, event: Event, delivery: Delivery) -> None:
        return None

    NoopHandler.handle = handle  # type: ignore[assignment,method-assign]


EXPERIMENTS: dict[str, Experiment] = {
    "cumulative-acks": Experiment(
        "consumer.acknowledgement: cumulative (one ack per partition and turn; config, not code)",
        _cumulative_acks,
    ),
    "sign-off": Experiment(
        "sign_check: off instead of the default log (no MD5 per message; config, not code)",
        _sign_off,
    ),
    "no-metrics": Experiment("no per-message metrics (upper bound, not a proposal)", _no_metrics),
    "blocking-acks": Experiment(
        "the blocking acknowledge the daemon used before acknowledge_async (a reference)",
        _blocking_acks,
    ),
    "async-handler": Experiment(
        "the no-op handler as async def (a reference: the task path, not a proposal)",
        _async_handler,
    ),
}
# cpp-logger, fast-sign, gc-freeze, lean-handle and lean-metrics were measured here and are now
# in the daemon (benchmarks/README.md, "After the changes"); their prototypes are gone, as are
# the rejected direct-pulsar, convert-in-thread and drain-on-loop. New proposals go here.
PROPOSALS: tuple[str, ...] = ()


# --- micro: the changed pieces alone, before and after, in one process --------------------------

MICRO_CALLS = 20_000
MICRO_PASSES = 7


def compare(
    calls: int, before: Callable[[], object], after: Callable[[], object]
) -> tuple[float, float]:
    """us per call of two versions, passes alternating, fastest pass of each: end-to-end runs
    cannot resolve changes of 1-5 us, and alternating cancels drifting load."""
    best = [float("inf"), float("inf")]
    for _ in range(MICRO_PASSES):
        for index, work in enumerate((before, after)):
            started = time.perf_counter()
            work()
            best[index] = min(best[index], time.perf_counter() - started)
    return best[0] / calls * 1e6, best[1] / calls * 1e6


def _eager_delivery(message: pulsar.Message) -> Delivery:
    """How deliveries were built before PulsarDelivery: all nine accessors for every message."""
    message_id = message.message_id()
    return Delivery(
        body=message.data(),
        properties=message.properties(),
        message_id=str(message_id),
        topic=message.topic_name(),
        partition=message_id.partition(),
        publish_time_ms=message.publish_timestamp(),
        redelivery_count=message.redelivery_count(),
        key=message.partition_key() or None,
        handle=message,
    )


def run_micro(spec: WorkerSpec) -> dict[str, tuple[float, float]]:
    """us per message of each proposal's piece, original against patched, on the same messages."""
    from tests.pulsar.traffic import interleaved_stream
    from tuya_events.tuya.codec import TuyaEncoder

    n = MICRO_CALLS
    secret = spec.access_secret
    encoder = TuyaEncoder(spec.access_id, secret)
    encoded = [encoder.encode(o.document, o.em) for o in interleaved_stream(n, 200, seed=5)]
    out: dict[str, tuple[float, float]] = {}

    messages = []
    for index, (body, properties) in enumerate(encoded):
        builder = _pulsar.MessageBuilder()
        builder.content(body)
        for key, value in properties.items():
            builder.property(key, value)
        builder.partition_key(f"device-{index % 200}")
        messages.append(builder.build())
    wrapped = []  # what pulsar.Consumer.batch_receive returns
    for message in messages:
        wrapper = pulsar.Message()
        wrapper._message = message
        wrapped.append(wrapper)
    out["Delivery per message: every field at once (before) / PulsarDelivery"] = compare(
        n,
        lambda: [_eager_delivery(message) for message in wrapped],
        lambda: [transport.PulsarDelivery(message) for message in wrapped],
    )
    out["PulsarDelivery per message: of a pulsar.Message wrapper / of the _pulsar.Message"] = (
        compare(
            n,
            lambda: [transport.PulsarDelivery(message) for message in wrapped],
            lambda: [transport.PulsarDelivery(message) for message in messages],
        )
    )
    return out


# --- the worker process -----------------------------------------------------------------------


def worker_main(encoded: str) -> int:
    spec = WorkerSpec(**json.loads(encoded))
    configure_logging("warning", "console")  # the daemon's and pulsar-client's warnings only
    result: Any
    if spec.kind in DAEMONS:
        result = asyncio.run(run_daemon(spec))
    elif spec.kind == TUYA_CONNECTOR:
        result = run_tuya_connector(spec)
    elif spec.kind == MICRO:
        result = run_micro(spec)
    else:
        result = run_raw(spec, decode=spec.kind == RAW_DECODE)
    print(RESULT_PREFIX + json.dumps(result if spec.kind == MICRO else asdict(result)), flush=True)
    sys.stderr.flush()
    # Everything is closed; skip interpreter teardown, where pulsar-client's C++ threads and
    # static destructors have been seen to abort ("terminate called without an active exception").
    os._exit(0)


# --- the orchestrator -------------------------------------------------------------------------


@dataclass
class Target:
    """Where workers connect: the broker, the tenant, and the broker JVM's pid (for its CPU)."""

    broker_url: str
    admin: Any  # tests.pulsar.admin.PulsarAdmin
    access_id: str
    access_secret: str
    broker_pid: int | None
    websocket_url: str = ""

    @property
    def topic(self) -> str:
        return f"persistent://{self.access_id}/out/event"

    def subscription(self, suffix: str) -> str:
        return f"{self.access_id}-{suffix}"

    def create_subscription(self, name: str) -> None:
        """The broker keeps messages only for subscriptions that exist before they are sent."""
        self.admin.request("PUT", f"/persistent/{self.access_id}/out/event/subscription/{name}")

    def backlog(self, subscription: str) -> int:
        return self.admin.backlog(self.topic, subscription)

    def wait_backlog(self, subscription: str, expected: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            left = self.backlog(subscription)
            if left == expected or time.monotonic() > deadline:
                return left
            time.sleep(0.2)


class Worker:
    """One run in a process of its own, killed by pid if it outlives its timeout."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen[str] | None = None

    def run(self, timeout: float) -> Any:
        """The worker's RESULT, decoded from JSON."""
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(asdict(self.spec))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            out, _ = self.process.communicate(timeout=timeout)
        finally:
            self.kill()
        lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
        if self.process.returncode != 0 or not lines:
            raise RuntimeError(f"{self.spec.kind} worker failed (exit {self.process.returncode})")
        return json.loads(lines[-1].removeprefix(RESULT_PREFIX))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_worker(
    target: Target,
    kind: str,
    suffix: str,
    expected: int,
    rss_every: int,
    experiments: Sequence[str] = (),
    profile_path: str | None = None,
    devices: int = 0,
) -> WorkerResult:
    """Consume the whole backlog of one subscription; check the count and that it reaches 0
    (and, with enrichment, that every message was a catalogue hit and no call was made)."""
    subscription = target.subscription(suffix)
    spec = WorkerSpec(
        kind=kind,
        broker_url=target.broker_url,
        access_id=target.access_id,
        access_secret=target.access_secret,
        subscription=subscription,
        expected=expected,
        broker_pid=target.broker_pid,
        rss_every=rss_every,
        experiments=list(experiments),
        profile_path=profile_path,
        devices=devices,
        websocket_url=target.websocket_url,
    )
    data = Worker(spec).run(timeout=max(300.0, expected / 500))
    data["rss_samples"] = [tuple(sample) for sample in data["rss_samples"]]
    result = WorkerResult(**data)
    left = target.wait_backlog(subscription, 0)
    if result.consumed != expected or left != 0:
        raise SystemExit(
            f"{result.label}: consumed {result.consumed} of {expected}, backlog left {left}"
        )
    hits = ""
    if kind == ENRICHED:
        hit = result.enrichment.get("hit", 0.0)
        if hit != result.consumed or result.catalogue_calls:
            raise SystemExit(
                f"{result.label}: {HIT_SAMPLE} {result.enrichment} for {result.consumed} "
                f"messages, {result.catalogue_calls} catalogue calls: the catalogue was not warm"
            )
        hits = f'; {HIT_SAMPLE}{{outcome="hit"}} {hit:,.0f}'
    label = result.label + (" (profiled)" if profile_path else "")
    print(
        f"  {label:<28} {result.consumed:>8,} msgs in {result.seconds:6.2f} s = "
        f"{result.rate:>8,.0f} msgs/s   (consumer CPU {result.cpu / result.seconds:4.2f} cores, "
        f"broker {result.broker_cpu / result.seconds:4.2f}, machine "
        f"{result.machine_cpu / result.seconds:4.2f}; backlog now 0{hits})",
        flush=True,
    )
    return result


def run_micro_worker() -> dict[str, tuple[float, float]]:
    """The micro measurements in a fresh process (they patch classes), no broker needed."""
    spec = WorkerSpec(
        MICRO, "", "micro000000000000000", "microsecret0000000000000000000000", "", 0, None, 1
    )
    return {name: (before, after) for name, (before, after) in Worker(spec).run(300.0).items()}


def publish(
    broker: Any, tenant: Any, messages: int, devices: int, seed: int, modes: Sequence[str] = ()
) -> float:
    """Publish ``messages`` Tuya-encrypted reports once (``modes``: ECB and GCM alternating
    unless given); returns the seconds it took."""
    from tests.pulsar.publisher import TuyaPublisher
    from tests.pulsar.traffic import interleaved_stream

    chosen: dict[str, Any] = {"modes": modes} if modes else {}
    stream = interleaved_stream(messages=messages, devices=devices, seed=seed, **chosen)
    started = time.perf_counter()
    with TuyaPublisher(broker.broker_url, broker.service_credentials, tenant) as publisher:
        published = publisher.publish_all(stream)
    assert published == messages
    return time.perf_counter() - started


def prepare_backlog(
    broker: Any,
    messages: int,
    devices: int,
    seed: int,
    suffixes: Sequence[str],
    modes: Sequence[str] = (),
) -> Target:
    """A fresh tenant whose subscriptions ``suffixes`` each hold the same ``messages`` backlog."""
    tenant = broker.create_tenant()
    target = Target(
        broker.broker_url,
        broker.admin,
        tenant.access_id,
        tenant.access_secret,
        broker.pid,
        websocket_url=tenant.websocket_url,
    )
    for suffix in suffixes:
        target.create_subscription(target.subscription(suffix))
    seconds = publish(broker, tenant, messages, devices, seed, modes)
    encryption = "/".join(modes).upper().replace("AES_", "") if modes else "ECB/GCM alternating"
    print(
        f"published {messages:,} messages ({devices} devices, {encryption}, 11 partitions) "
        f"in {seconds:.1f} s into {len(suffixes)} subscriptions",
        flush=True,
    )
    for suffix in suffixes:
        left = target.wait_backlog(target.subscription(suffix), messages)
        if left != messages:
            raise SystemExit(f"subscription {suffix}: backlog {left}, expected {messages}")
    return target


# --- reporting ----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_throughput(results: dict[str, list[WorkerResult]]) -> None:
    print()
    print(
        "| path | runs | msgs/s (median) | min - max | vs raw | main thread us/msg "
        "| process CPU us/msg | broker CPU us/msg | other processes, cores | peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    raw_rate = median([r.rate for r in results[RAW]]) if results.get(RAW) else None
    for label, runs in results.items():
        rates = [r.rate for r in runs]
        rate = median(rates)
        versus = f"{rate / raw_rate:.2f}" if raw_rate else "-"
        others = median([(r.machine_cpu - r.cpu - r.broker_cpu) / r.seconds for r in runs])
        print(
            f"| {label} | {len(runs)} | {rate:,.0f} | {min(rates):,.0f} - {max(rates):,.0f} "
            f"| {versus} "
            f"| {median([r.per_message_us(r.main_thread_cpu) for r in runs]):.1f} "
            f"| {median([r.per_message_us(r.cpu) for r in runs]):.1f} "
            f"| {median([r.per_message_us(r.broker_cpu) for r in runs]):.1f} "
            f"| {max(others, 0.0):.2f} | {mb(median([r.vm_hwm_kb for r in runs]))} |"
        )


def print_ratio(results: dict[str, list[WorkerResult]]) -> None:
    raw, daemon = results.get(RAW), results.get(DAEMON)
    if not raw or not daemon:
        return
    ratio = median([r.rate for r in daemon]) / median([r.rate for r in raw])
    pairs = ", ".join(f"{d.rate / r.rate:.2f}" for r, d in zip(raw, daemon, strict=False))
    verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
    print(
        f"\nGoal: daemon >= {GOAL_RATIO:.0%} of the raw loop's msgs/s: {verdict} "
        f"(ratio of medians {ratio:.2f}; per round {pairs})"
    )


def print_enrichment(results: dict[str, list[WorkerResult]]) -> None:
    """Issue 16: the daemon with enrichment on (catalogue warm) against the same daemon
    without, in the same rounds; every enriched run was checked to be all hits."""
    plain, enriched = results.get(DAEMON), results.get(ENRICHED)
    if not plain or not enriched:
        return
    ratio = median([r.rate for r in enriched]) / median([r.rate for r in plain])
    pairs = ", ".join(f"{e.rate / d.rate:.2f}" for d, e in zip(plain, enriched, strict=False))
    main, main_enriched = (
        median([r.per_message_us(r.main_thread_cpu) for r in runs]) for runs in (plain, enriched)
    )
    cpu, cpu_enriched = (
        median([r.per_message_us(r.cpu) for r in runs]) for runs in (plain, enriched)
    )
    hits = sum(r.enrichment.get("hit", 0.0) for r in enriched)
    messages = sum(r.consumed for r in enriched)
    verdict = "met" if ratio >= GOAL_ENRICHED else "NOT met"
    print(
        f"\nGoal (issue 16): daemon+enrichment >= {GOAL_ENRICHED:.0%} of the daemon's msgs/s: "
        f"{verdict} (ratio of medians {ratio:.2f}; per round {pairs}). Main thread "
        f"{main_enriched - main:+.1f} us/msg, process CPU {cpu_enriched - cpu:+.1f} us/msg; "
        f'{HIT_SAMPLE}{{outcome="hit"}} {hits:,.0f} of {messages:,} messages, '
        f"catalogue calls {sum(r.catalogue_calls for r in enriched)}"
    )


def print_threads(results: dict[str, list[WorkerResult]]) -> None:
    print("\nCPU by thread, us per message (median over runs):")
    for label, runs in results.items():
        names = sorted({name for r in runs for name in r.threads})
        parts = []
        for name in names:
            us = median([r.per_message_us(r.threads.get(name, 0.0)) for r in runs])
            if us >= 0.05:
                parts.append(f"{name} {us:.1f}")
        extra = ""
        if runs[0].batches:
            sizes = median([r.consumed / r.batches for r in runs])
            tasks = median([r.tasks / r.consumed for r in runs])
            ack = median([r.per_message_us(r.ack_seconds) for r in runs])
            extra = f"; mean batch {sizes:.0f} msgs, {tasks:.2f} tasks/msg, ack {ack:.1f} us wall"
        gcs = median([r.gc_collections[0] / r.consumed * 1000 for r in runs])
        print(f"  {label}: {'; '.join(parts)}{extra}; gen-0 collections/1k msgs {gcs:.0f}")


def print_experiments(results: dict[str, list[WorkerResult]]) -> None:
    """Each experiment against its base: the same run without its last change (or the daemon)."""
    rows = [(label, runs) for label, runs in results.items() if runs[0].kind == DAEMON]
    rows = [(label, runs) for label, runs in rows if runs[0].experiments]
    if DAEMON not in results or not rows:
        return
    raw_rate = median([r.rate for r in results[RAW]]) if results.get(RAW) else None
    print("\nExperiments (prototypes patched into the worker process only):")
    print(
        "| run | change measured | base | msgs/s | vs base | main thread us/msg | saved "
        "| process CPU us/msg | saved | peak RSS MB | vs raw |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, runs in rows:
        names = label.split("+")[1:]
        base_label = "+".join([DAEMON, *names[:-1]])
        if base_label not in results or len(names) > 2:
            base_label = DAEMON
        base = results[base_label]
        what = EXPERIMENTS[names[-1]].summary if len(names) <= 2 else "all proposals together"
        rate, base_rate = median([r.rate for r in runs]), median([r.rate for r in base])
        main, base_main = (
            median([r.per_message_us(r.main_thread_cpu) for r in group]) for group in (runs, base)
        )
        cpu, base_cpu = (median([r.per_message_us(r.cpu) for r in group]) for group in (runs, base))
        peak = median([r.vm_hwm_kb for r in runs])
        versus = f"{rate / raw_rate:.2f}" if raw_rate else "-"
        print(
            f"| {label} | {what} | {base_label} | {rate:,.0f} | {rate / base_rate - 1:+.0%} "
            f"| {main:.1f} | {base_main - main:+.1f} | {cpu:.1f} | {base_cpu - cpu:+.1f} "
            f"| {mb(peak)} | {versus} |"
        )


def print_micro(results: dict[str, tuple[float, float]]) -> None:
    print(
        f"\nThe changed pieces alone (us per message, fastest of {MICRO_PASSES} alternating "
        f"passes over {MICRO_CALLS:,} messages, one process, no broker):"
    )
    print("| piece | original | patched | saved |")
    print("|---|---:|---:|---:|")
    for name, (before, after) in results.items():
        print(f"| {name} | {before:.2f} | {after:.2f} | {before - after:+.2f} |")


def print_memory(result: WorkerResult) -> None:
    """RSS along the run: it must level off once the bounded caches are full, not follow the
    backlog (the dedupe cache holds 100,000 keys, two per message: full at 50,000 messages)."""
    samples = result.rss_samples
    if not samples:
        return
    step = max(1, len(samples) // 8)
    shown = samples[step - 1 :: step]
    if shown[-1] != samples[-1]:
        shown.append(samples[-1])
    checkpoint, at_checkpoint = max(
        (sample for sample in samples if sample[0] <= CHECKPOINT), default=samples[0]
    )
    end_count, end_rss = samples[-1]
    steady = [rss for count, rss in samples if count >= checkpoint]
    print(f"\nMemory, daemon path over a {result.consumed:,}-message backlog (VmRSS, MB):")
    print(
        "| subscribed | "
        + " | ".join(f"{count // 1000}k consumed" for count, _ in shown)
        + " | peak (VmHWM) |"
    )
    print("|" + "---:|" * (len(shown) + 2))
    print(
        f"| {mb(result.rss_start_kb)} | "
        + " | ".join(mb(rss) for _, rss in shown)
        + f" | {mb(result.vm_hwm_kb)} |"
    )
    growth = end_rss - at_checkpoint
    print(
        f"steady (from {checkpoint:,} on): median {mb(median(steady))} MB, range "
        f"{mb(min(steady))} - {mb(max(steady))} MB; {checkpoint:,} -> {end_count:,} consumed: "
        f"{growth / 1024:+.1f} MB ({growth / at_checkpoint:+.1%}); {result.rate:,.0f} msgs/s"
    )


def mb(kilobytes: float) -> str:
    return f"{kilobytes / 1024:.1f}"


PROFILE_ROWS: tuple[tuple[str, str, str], ...] = (
    # label, file suffix, function: cumulative time of these (they nest; the tree is shown).
    ("receive loop (Daemon._receive_until_stopped)", "daemon.py", "_receive_until_stopped"),
    ("  PulsarSource.receive_batch", "transport/pulsar.py", "receive_batch"),
    ("    PulsarDelivery (batch conversion)", "transport/pulsar.py", "__init__"),
    ("    run_in_executor (thread hop, loop side)", "asyncio/base_events.py", "run_in_executor"),
    ("  Pipeline.submit", "pipeline/pipeline.py", "submit"),
    ("    TuyaCodec.decode", "tuya/codec.py", "decode"),
    ("      _check_sign (sign_check log)", "tuya/codec.py", "_check_sign"),
    ("      build_event", "tuya/events.py", "build_event"),
    ("    Metrics.received", "observability/metrics.py", "received"),
    ("    Metrics.decoded", "observability/metrics.py", "decoded"),
    ("    Pipeline._spawn (create_task)", "pipeline/pipeline.py", "_spawn"),
    ("  Pipeline._route (routes run synchronously)", "pipeline/pipeline.py", "_route"),
    ("    Pipeline._run", "pipeline/pipeline.py", "_run"),
    ("      Metrics.handler_outcome", "observability/metrics.py", "handler_outcome"),
    ("      Pipeline._settle", "pipeline/pipeline.py", "_settle"),
    ("        RecentlyHandled.remember", "pipeline/dedupe.py", "remember"),
    (
        "        PulsarSource.acknowledge (consumer.acknowledge)",
        "transport/pulsar.py",
        "acknowledge",
    ),
    (
        "Pipeline._drain (the per-device tasks, handlers that wait)",
        "pipeline/pipeline.py",
        "_drain",
    ),
    ("  Pipeline._resume", "pipeline/pipeline.py", "_resume"),
)


def print_profile(path: str, result: WorkerResult, plain: list[WorkerResult]) -> None:
    """cProfile of the event-loop thread, as shares of its busy time and scaled to real us/msg.

    cProfile inflates small Python calls more than C calls, so the shares are indicative; the
    experiments give the measured gains. Idle time (the loop waiting in epoll) is excluded.
    """
    stats = pstats.Stats(path)
    table: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    idle = sum(v[2] for (_, _, func), v in table.items() if "epoll" in func)
    busy = sum(v[2] for v in table.values()) - idle
    runs = [r for r in plain if r.kind == DAEMON and r.experiments == result.experiments]
    runs = runs or [result]
    real = median([r.per_message_us(r.main_thread_cpu) for r in runs])
    n = result.consumed
    what = "+".join(["daemon", *result.experiments])
    print(
        f"\nProfile of {what}, event-loop thread (cProfile, {n:,} messages): "
        f"{busy / n * 1e6:.1f} us/msg busy under the profiler, {real:.1f} us/msg main-thread CPU "
        "without it; the last column scales the shares to the latter:"
    )
    print("| where (cumulative; indented = part of the line above) | calls/msg | share | ~us/msg |")
    print("|---|---:|---:|---:|")
    # An experiment's replacement (defined in this file, same name) stands in for the original;
    # MeasuredSource's wrappers are not counted twice.
    wrappers = {
        Measured.receive_batch.__code__.co_firstlineno,
        Measured.acknowledge.__code__.co_firstlineno,
    }
    for label, suffix, func in PROFILE_ROWS:
        calls = cumulative = 0.0
        for (file, line, name), (primitive, _, _, cum, _) in table.items():
            patched = file.endswith("benchmarks/throughput.py") and line not in wrappers
            if name == func and (file.endswith(suffix) or patched):
                calls += primitive
                cumulative += cum
        if calls == 0:
            continue
        depth = (len(label) - len(label.lstrip())) // 2
        share = cumulative / busy
        name = ". " * depth + label.strip()
        print(f"| {name} | {calls / n:.2f} | {share:.1%} | {share * real:.1f} |")
    asyncio_own = sum(v[2] for (file, _, func), v in table.items() if "asyncio" in file)
    print(
        f"| asyncio's own Python code (loop, run_in_executor, futures) | | "
        f"{asyncio_own / busy:.1%} | {asyncio_own / busy * real:.1f} |"
    )
    print("\nTop 15 functions by own time (tottime, under the profiler):")
    stats.sort_stats("tottime").print_stats(15)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=100_000, help="backlog per run")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("-r", "--repeat", type=int, default=3, help="rounds of runs")
    parser.add_argument(
        "--memory-messages",
        type=int,
        default=200_000,
        help="backlog of the memory run (0: skip it)",
    )
    parser.add_argument("--rss-every", type=int, default=5_000, help="RSS sample interval")
    parser.add_argument(
        "--no-raw-decode", dest="raw_decode", action="store_false", help="skip raw+decode runs"
    )
    parser.add_argument(
        "--no-enrichment",
        dest="enrichment",
        action="store_false",
        help="skip the daemon+enrichment runs",
    )
    parser.add_argument(
        "--no-websocket",
        dest="websocket",
        action="store_false",
        help="skip the daemon+websocket runs",
    )
    parser.add_argument(
        "--tuya-connector",
        action=argparse.BooleanOptionalAction,
        default=importlib.util.find_spec("tuya_connector") is not None,
        help="Tuya's own WebSocket consumer (tuya-connector-python, bench extra) on an "
        "ECB-only backlog, beside daemon+websocket and daemon on that backlog (default: on "
        "when it is installed)",
    )
    parser.add_argument(
        "--ecb-messages", type=int, default=20_000, help="backlog of the --tuya-connector runs"
    )
    parser.add_argument(
        "--profile",
        action="append",
        nargs="?",
        const="",
        metavar="EXPERIMENTS",
        help="add a cProfile'd daemon run (optionally with comma-separated experiments applied, "
        "'proposals' for all of them); repeatable",
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help=f"add daemon runs with a prototype change: {', '.join(EXPERIMENTS)}; "
        "'all' runs each, plus every proposal together; repeatable",
    )
    parser.add_argument(
        "--micro",
        action="store_true",
        help="time the changed pieces alone (implied by --experiment all)",
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.profiles = [
        list(PROPOSALS) if value == "proposals" else [n for n in value.split(",") if n]
        for value in args.profile or []
    ]
    unknown = [n for n in args.experiment if n != "all" and n not in EXPERIMENTS]
    unknown += [n for names in args.profiles for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The runs of one round, in order: (kind, experiments).

    ``--experiment all``: every experiment on its own, then every proposal together.
    """
    runs: list[tuple[str, list[str]]] = [(RAW, [])]
    if args.raw_decode:
        runs.append((RAW_DECODE, []))
    runs.append((DAEMON, []))
    if args.enrichment:
        runs.append((ENRICHED, []))
    if args.websocket:
        runs.append((WEBSOCKET, []))
    if "all" in args.experiment:
        runs += [(DAEMON, [name]) for name in EXPERIMENTS]
        if PROPOSALS:
            runs.append((DAEMON, list(PROPOSALS)))
    runs += [(DAEMON, [name]) for name in dict.fromkeys(args.experiment) if name != "all"]
    unique = dict.fromkeys((kind, tuple(names)) for kind, names in runs)
    return [(kind, list(names)) for kind, names in unique]


def suffix_of(kind: str, experiments: Sequence[str], round_: int) -> str:
    slug = {
        RAW: "raw",
        RAW_DECODE: "rawdecode",
        DAEMON: "sub",
        ENRICHED: "enriched",
        WEBSOCKET: "websocket",
        TUYA_CONNECTOR: "connector",
    }[kind]
    return "-".join([slug, *experiments, str(round_)])


def benchmark(args: argparse.Namespace, broker: Any) -> int:
    runs = plan(args)
    suffixes = [suffix_of(k, e, n) for n in range(args.repeat) for k, e in runs]
    suffixes += [f"profile-{index}" for index in range(len(args.profiles))]
    target = prepare_backlog(broker, args.messages, args.devices, args.seed, ["warmup", *suffixes])
    # The first consumer after publishing is slower (the bookie is still flushing); this one
    # is not measured.
    print("warm-up (not counted):", flush=True)
    run_worker(target, RAW, "warmup", args.messages, args.rss_every)
    results: dict[str, list[WorkerResult]] = {}
    for round_ in range(args.repeat):
        print(f"round {round_ + 1} of {args.repeat}:", flush=True)
        # Every other round in reverse, so no run always follows the same one.
        for kind, experiments in runs if round_ % 2 == 0 else runs[::-1]:
            result = run_worker(
                target,
                kind,
                suffix_of(kind, experiments, round_),
                args.messages,
                args.rss_every,
                experiments,
                devices=args.devices,
            )
            results.setdefault(result.label, []).append(result)
    profiles: list[tuple[str, WorkerResult]] = []
    for index, experiments in enumerate(args.profiles):
        path = str(Path(tempfile.gettempdir()) / f"tuya-throughput-{os.getpid()}-{index}.pstats")
        print("profiled daemon run (cProfile on the event-loop thread):", flush=True)
        profiled = run_worker(
            target,
            DAEMON,
            f"profile-{index}",
            args.messages,
            args.rss_every,
            experiments,
            profile_path=path,
        )
        profiles.append((path, profiled))
    memory: WorkerResult | None = None
    if args.memory_messages:
        print("memory run:", flush=True)
        target = prepare_backlog(broker, args.memory_messages, args.devices, args.seed + 1, ["sub"])
        memory = run_worker(target, DAEMON, "sub", args.memory_messages, args.rss_every)

    micro = run_micro_worker() if args.micro or "all" in args.experiment else None
    ecb = run_ecb_comparison(args, broker) if args.tuya_connector else None

    print_throughput(results)
    print_ratio(results)
    print_enrichment(results)
    print_transports(results)
    if ecb is not None:
        print(f"\nOn an ECB-only backlog of {args.ecb_messages:,} (Tuya's own consumer):")
        print_throughput(ecb)
        print_connector(ecb)
    print_experiments(results)
    if micro is not None:
        print_micro(micro)
    print_threads(results)
    if memory is not None:
        print_memory(memory)
    for path, profiled in profiles:
        print_profile(path, profiled, [r for runs in results.values() for r in runs])
        with contextlib.suppress(OSError):
            os.unlink(path)
    return 0


def run_ecb_comparison(args: argparse.Namespace, broker: Any) -> dict[str, list[WorkerResult]]:
    """tuya-connector, daemon+websocket and daemon on one ECB-only backlog, rounds alternating."""
    runs = [TUYA_CONNECTOR, WEBSOCKET, DAEMON]
    suffixes = [f"ecb-{suffix_of(kind, [], n)}" for n in range(args.repeat) for kind in runs]
    print("ECB-only backlog, for Tuya's own consumer:", flush=True)
    target = prepare_backlog(
        broker, args.ecb_messages, args.devices, args.seed + 2, suffixes, modes=("aes_ecb",)
    )
    results: dict[str, list[WorkerResult]] = {}
    for round_ in range(args.repeat):
        for kind in runs if round_ % 2 == 0 else runs[::-1]:
            suffix = f"ecb-{suffix_of(kind, [], round_)}"
            result = run_worker(target, kind, suffix, args.ecb_messages, args.rss_every)
            results.setdefault(result.label, []).append(result)
    return results


def print_transports(results: dict[str, list[WorkerResult]]) -> None:
    """The WebSocket transport beside the native one, same backlog, same rounds."""
    native, websocket = results.get(DAEMON), results.get(WEBSOCKET)
    if not native or not websocket:
        return
    ratio = median([r.rate for r in websocket]) / median([r.rate for r in native])
    pairs = ", ".join(f"{w.rate / d.rate:.2f}" for d, w in zip(native, websocket, strict=False))
    cpu, cpu_ws = (median([r.per_message_us(r.cpu) for r in runs]) for runs in (native, websocket))
    broker, broker_ws = (
        median([r.per_message_us(r.broker_cpu) for r in runs]) for runs in (native, websocket)
    )
    print(
        f"\nTransports: daemon+websocket at {ratio:.2f} of the native daemon's msgs/s (ratio of "
        f"medians; per round {pairs}); process CPU {cpu_ws:.1f} against {cpu:.1f} us/msg, "
        f"broker CPU {broker_ws:.1f} against {broker:.1f} us/msg (the WebSocket proxy runs "
        "in the broker's JVM here)"
    )


def print_connector(results: dict[str, list[WorkerResult]]) -> None:
    connector, websocket = results.get(TUYA_CONNECTOR), results.get(WEBSOCKET)
    if not connector or not websocket:
        return
    ratio = median([r.rate for r in websocket]) / median([r.rate for r in connector])
    duplicates = sum(r.duplicates for r in connector)
    print(
        f"daemon+websocket at {ratio:.2f}x tuya-connector's msgs/s (ratio of medians); "
        f"tuya-connector saw {duplicates} reports again (its ackTimeoutMillis=3000), and it "
        "acknowledges every message, handled or not"
    )


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the broker is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    from tests.pulsar.broker import PulsarBroker, log_to_stderr
    from tests.pulsar.build import prepare

    configure_logging("warning", "console")
    print(
        describe_machine("pulsar-client", note=" (the broker JVM runs on the same CPUs)"),
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    broker = PulsarBroker(prepare(log_to_stderr), log=log_to_stderr)
    try:
        broker.start()
        return benchmark(args, broker)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        pid = broker.pid
        broker.close()  # SIGTERM to the JVM's pid, SIGKILL if it hangs; deletes its directory
        print(f"broker (pid {pid}) stopped", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
