"""Events per second through the real pipeline into the mqtt handler at QoS 1, on a real
Mosquitto (Debian's, started on a free loopback port as the tests start it).

Run from the project root: ``.venv/bin/python benchmarks/mqtt.py`` (about a minute).

The daemon runs in-process on the memory source with the real dead-letter store and a real
``MqttHandler``: every event is acknowledged only after the broker's PUBACK for each message it
produced and the commit of the bridge's state file. The events: status reports of 1-3 data
points (about 70%) and online/offline events, from ``--devices`` devices, GCM-encrypted before
the timing. ``--clients`` also measures the client libraries alone (awaited QoS 1 publishes),
the figures behind the choice of zmqtt (docs/mqtt.md). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.pipeline_support and tests.support.mosquitto

from benchmarks.machine import describe_machine  # noqa: E402
from tests.pipeline_support import ENCODER, Harness, make_settings, wait_until  # noqa: E402
from tests.support.mosquitto import MosquittoBroker, mosquitto_available  # noqa: E402
from tuya_events.handlers.base import HandlerContext  # noqa: E402
from tuya_events.handlers.mqtt import MqttHandler, MqttOptions  # noqa: E402
from tuya_events.observability.logging import configure_logging  # noqa: E402
from tuya_events.observability.metrics import Metrics  # noqa: E402

GOAL_RATE = 5000.0
CODES = ("cur_power", "cur_voltage", "cur_current", "switch_1", "va_temperature")
PAYLOAD = b'{"switch_1": true, "cur_power": 12.5, "cur_voltage": 230.1}'


@dataclass
class Result:
    protocol: str
    events: int
    publishes: int
    seconds: float
    cpu_seconds: float
    broker_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # USER_HZ is 100 on Linux


def events(devices: int, count: int, seed: int) -> tuple[list[tuple[str, bytes, dict]], int]:
    """Encrypted events round-robin over devices, and how many messages they make the bridge
    publish (a report: each data point and the state document; an online/offline event: the
    availability and the event)."""
    rng = random.Random(seed)
    out = []
    publishes = 0
    online: dict[str, bool] = {}
    for seq in range(count):
        device = f"bfbench{seq % devices:05d}"
        t_ms = 1_700_000_000_000 + seq
        if rng.random() < 0.7:
            codes = rng.sample(CODES, rng.randint(1, 3))
            document = {
                "dataId": f"{device}-{seq}",
                "devId": device,
                "status": [
                    {
                        "code": c,
                        "value": rng.randint(0, 5000) if c != "switch_1" else True,
                        "t": t_ms,
                    }
                    for c in codes
                ],
            }
            body, properties = ENCODER.encode(document, em="aes_gcm", protocol=4)
            publishes += len(codes) + 1
        else:
            state = online[device] = not online.get(device, True)
            document = {
                "devId": device,
                "bizCode": "online" if state else "offline",
                "ts": t_ms,
                "bizData": {"devId": device},
            }
            body, properties = ENCODER.encode(document, em="aes_gcm", protocol=20)
            publishes += 2
        out.append((device, body, properties))
    return out, publishes


async def run_bridge(
    broker: MosquittoBroker, protocol: str, args: argparse.Namespace, work: Path
) -> Result:
    timed, publishes = events(args.devices, args.events, args.seed)
    warm, _ = events(200, 400, args.seed + 1)
    settings = make_settings(
        work / f"mqtt-{protocol}",
        consumer={"max_in_flight": args.in_flight},
        state={"directory": str(work / f"state-{protocol}")},
    )
    options = MqttOptions(url=broker.url, protocol=protocol)  # type: ignore[arg-type]
    handler = MqttHandler("mqtt", options, HandlerContext(settings, Metrics()))
    async with Harness(settings, [handler], batch_size=500) as h:
        await wait_until(lambda: handler.connection is not None and handler.connection.connected)
        for device, body, properties in warm:
            h.source.publish(body, properties, key=device.replace("bench", "warm0"))
        await wait_until(lambda: len(h.source.acknowledged) == len(warm), timeout=120)
        assert broker.process is not None
        broker_cpu = process_cpu(broker.process.pid)
        cpu = time.process_time()
        started = time.perf_counter()
        for device, body, properties in timed:
            h.source.publish(body, properties, key=device)
        total = len(warm) + len(timed)
        await wait_until(lambda: len(h.source.acknowledged) == total, timeout=600)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        broker_cpu = process_cpu(broker.process.pid) - broker_cpu
        assert h.store.count() == 0, "dead letters during the benchmark"
    return Result(protocol, len(timed), publishes, elapsed, cpu, broker_cpu)


# -- the client libraries alone ----------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _window(publish, count: int, window: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    slots = asyncio.Semaphore(window)

    async def one(index: int) -> None:
        async with slots:
            await publish(f"bench/dev{index % 1000}/state", PAYLOAD)

    cpu, started = _cpu(), time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(count)))
    return count / (time.perf_counter() - started), (_cpu() - cpu) / count * 1e6


async def client_zmqtt(port: int, protocol: str, count: int, window: int) -> tuple[float, float]:
    import zmqtt

    client = zmqtt.create_client("127.0.0.1", port, version="5.0" if protocol == "5" else "3.1.1")
    async with client:

        async def publish(topic: str, payload: bytes) -> None:
            await client.publish(topic, payload, qos=zmqtt.QoS.AT_LEAST_ONCE, retain=True)

        return await _window(publish, count, window)


async def client_bridge(port: int, protocol: str, count: int, window: int) -> tuple[float, float]:
    """zmqtt on the bridge's own transport (one ``send`` per turn of the event loop)."""
    import zmqtt

    from tuya_events.handlers.mqtt.connection import open_transport

    client = zmqtt.create_client(
        "127.0.0.1",
        port,
        version="5.0" if protocol == "5" else "3.1.1",
        transport_factory=open_transport,
    )
    async with client:

        async def publish(topic: str, payload: bytes) -> None:
            await client.publish(topic, payload, qos=zmqtt.QoS.AT_LEAST_ONCE, retain=True)

        return await _window(publish, count, window)


async def client_aiomqtt(port: int, protocol: str, count: int, window: int) -> tuple[float, float]:
    import aiomqtt  # not a dependency: measured when installed

    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client(
        "127.0.0.1", port, protocol=version, max_inflight_messages=window
    ) as client:
        client.pending_calls_threshold = 10**9  # it logs a warning per publish past 10

        async def publish(topic: str, payload: bytes) -> None:
            await client.publish(topic, payload, qos=1, retain=True)

        return await _window(publish, count, window)


async def client_null(port: int, protocol: str, count: int, window: int) -> tuple[float, float]:
    """The measuring loop itself: a future resolved at once."""
    loop = asyncio.get_running_loop()

    async def publish(topic: str, payload: bytes) -> None:
        future = loop.create_future()
        loop.call_soon(future.set_result, None)
        await future

    return await _window(publish, count, window)


def compare_clients(broker: MosquittoBroker, count: int) -> None:
    print("\nClient libraries alone, awaited QoS 1 publishes (retained), median of 3 passes:\n")
    print("| library | protocol | window | msg/s | client CPU us/msg |")
    print("|---|---|---:|---:|---:|")
    cases = [
        ("loop only", client_null),
        ("zmqtt", client_zmqtt),
        ("zmqtt, the bridge's transport", client_bridge),
        ("aiomqtt", client_aiomqtt),
    ]
    for window in (64, 500):
        for name, measure in cases:
            for protocol in ("3.1.1", "5") if name != "loop only" else ("-",):
                try:
                    passes = sorted(
                        asyncio.run(measure(broker.port, protocol, count, window)) for _ in range(3)
                    )
                except ImportError:
                    continue
                rate, cpu = passes[1]
                print(f"| {name} | {protocol} | {window} | {rate:,.0f} | {cpu:.1f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--events", type=int, default=30000)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=1000, help="consumer.max_in_flight")
    parser.add_argument("--protocols", nargs="*", default=["5", "3.1.1"])
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--clients", action="store_true", help="also compare client libraries")
    args = parser.parse_args()
    if not mosquitto_available():
        raise SystemExit("mosquitto not found: run scripts/ensure-mosquitto.sh")
    configure_logging("warning", "console")
    print(describe_machine("zmqtt", "orjson"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoBroker(Path(tmp) / "mosquitto").start()
        try:
            for protocol in args.protocols:
                result = asyncio.run(run_bridge(broker, protocol, args, Path(tmp)))
                results.append(result)
                print(
                    f"  MQTT {protocol}: {result.events} events in {result.seconds:.2f} s",
                    flush=True,
                )
            if args.clients:
                compare_clients(broker, 20000)
        finally:
            broker.stop()
    print()
    print(
        "| protocol | events | messages published | events/s | messages/s "
        "| daemon CPU us/event | broker CPU us/event |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| MQTT {r.protocol} | {r.events} | {r.publishes} | {r.rate:,.0f} | "
            f"{r.publishes / r.seconds:,.0f} | {r.cpu_seconds / r.events * 1e6:,.0f} | "
            f"{r.broker_cpu_seconds / r.events * 1e6:,.0f} |"
        )
    for r in results:
        verdict = "met" if r.rate >= GOAL_RATE else "MISSED"
        print(f"Goal: >= {GOAL_RATE:,.0f} events/s at QoS 1 (MQTT {r.protocol}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
