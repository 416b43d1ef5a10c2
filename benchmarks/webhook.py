"""Events per second through the real pipeline into the webhook handler, by concurrency level.

Run from the project root: ``.venv/bin/python benchmarks/webhook.py`` (about a minute).

The daemon runs in-process on the memory source with the real dead-letter store and a real
``WebhookHandler`` (signed requests); the receiver is ``tests/webhook_receiver.py`` in a separate
process (its own GIL), answering every request after 50 ms and checking every signature. For each
level, ``consumer.max_in_flight`` and the handler's ``max_concurrency`` are both set to it, and
there are four devices per slot so that per-device order never limits concurrency. With 50 ms per
request the ideal is ``level / 0.05`` events/s. After each level the receiver's record is checked:
every event exactly once, in order per device. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.pipeline_support and tests.webhook_receiver

from benchmarks.machine import describe_machine  # noqa: E402
from tests.pipeline_support import ENCODER, Harness, make_settings, wait_until  # noqa: E402
from tuya_events.handlers.webhook import WebhookHandler, WebhookOptions  # noqa: E402
from tuya_events.handlers.webhook_signing import signed_headers, signing_key  # noqa: E402
from tuya_events.observability.logging import configure_logging  # noqa: E402

LEVELS = (8, 16, 32, 64, 128)
ANSWER_DELAY = 0.05
DEVICES_PER_SLOT = 4
GOAL_LEVEL = 64
GOAL_RATE = 500.0
SECRET = "whsec_YmVuY2htYXJrLXNpZ25pbmcta2V5LTMyLWJ5dGVzIQ=="


@dataclass
class Result:
    level: int
    events: int
    seconds: float
    cpu_seconds: float
    receiver_max_concurrent: int
    peak_in_flight: int
    baseline_rate: float = field(default=0.0)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def ideal(self) -> float:
        return self.level / ANSWER_DELAY


class Receiver:
    """``python -m tests.webhook_receiver`` in its own process."""

    def __init__(self, delay: float, secret: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.webhook_receiver",
                "--delay",
                str(delay),
                "--secret",
                secret,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def report(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_report", timeout=30) as r:
            return json.load(r)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the receiver exits when its stdin closes
        self.process.wait(10)


def messages(prefix: str, devices: int, per_device: int) -> list[tuple[str, bytes, dict]]:
    """Pre-encrypted status reports, round-robin over devices: (device, body, properties)."""
    out = []
    for seq in range(per_device):
        for index in range(devices):
            device = f"{prefix}{index:04d}"
            document = {
                "dataId": f"{device}-{seq}",
                "devId": device,
                "productKey": "pk",
                "status": [{"code": "seq", "value": seq, "t": 1700000000000 + seq}],
            }
            body, properties = ENCODER.encode(document, em="aes_gcm", protocol=4)
            out.append((device, body, properties))
    return out


def check_order(report: dict, published: list[tuple[str, bytes, dict]]) -> None:
    expected: dict[str, list[str]] = {}
    for device, _, _ in published:
        expected.setdefault(device, []).append(f"{device}-{len(expected.get(device, []))}")
    got = {device: ids for device, ids in report["by_device"].items() if device in expected}
    if got != expected:
        wrong = [d for d in expected if got.get(d) != expected[d]]
        raise SystemExit(f"order per device broken or events missing for {len(wrong)} devices")


async def run_level(level: int, seconds: float, workdir: Path, profiler: cProfile.Profile | None):
    receiver = Receiver(ANSWER_DELAY, SECRET)
    try:
        devices = level * DEVICES_PER_SLOT
        per_device = max(2, round(level / ANSWER_DELAY * seconds / devices))
        timed = messages("dev", devices, per_device)
        warm = messages("warm", level, 2)
        settings = make_settings(
            workdir / f"level-{level}",
            consumer={"max_in_flight": level},
            retry={"initial_backoff": "10ms", "max_backoff": "100ms"},
        )
        options = WebhookOptions(url=receiver.url, secret=SECRET, max_concurrency=level)
        handler = WebhookHandler("webhook", options)
        # The daemon takes a whole source batch even when that overshoots max_in_flight; a batch
        # of ``level`` keeps the overshoot below one level (peak_in_flight shows it).
        async with Harness(settings, [handler], batch_size=level) as h:
            for device, body, properties in warm:
                h.source.publish(body, properties, key=device)
            await wait_until(lambda: len(h.source.acknowledged) == len(warm), timeout=60)
            cpu = time.process_time()
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for device, body, properties in timed:
                h.source.publish(body, properties, key=device)
            total = len(warm) + len(timed)
            peak = 0

            def done() -> bool:
                nonlocal peak
                peak = max(peak, h.daemon.pipeline.in_flight)
                return len(h.source.acknowledged) == total

            await wait_until(done, timeout=600)
            elapsed = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
            cpu = time.process_time() - cpu
            assert h.store.count() == 0, "dead letters during the benchmark"
        report = receiver.report()
        check_order(report, timed)
        if report["rejected"]:
            raise SystemExit(f"receiver rejected {report['rejected']} signatures")
        return Result(level, len(timed), elapsed, cpu, report["max_concurrent"], peak)
    finally:
        receiver.close()


async def baseline(level: int, requests: int) -> float:
    """Requests/s of bare aiohttp, ``level`` workers, signed, against a fresh receiver: what HTTP
    and the receiver allow, without the daemon."""
    receiver = Receiver(ANSWER_DELAY, SECRET)
    key = signing_key(SECRET)
    body = orjson.dumps({"id": "baseline", "event": {"device_id": "baseline"}})
    left = requests
    try:
        connector = aiohttp.TCPConnector(limit=level)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    headers = {
                        **signed_headers(key, "baseline", body),
                        "Content-Type": "application/json",
                    }
                    async with session.post(receiver.url, data=body, headers=headers) as answer:
                        await answer.read()
                        assert answer.status == 200

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(level)))
            return requests / (time.perf_counter() - started)
    finally:
        receiver.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="ideal duration per level")
    parser.add_argument("--levels", type=int, nargs="*", default=list(LEVELS))
    parser.add_argument("--profile", type=int, metavar="LEVEL", help="cProfile this level")
    parser.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="skip bare aiohttp runs"
    )
    args = parser.parse_args()
    configure_logging("warning", "console")  # retries or dead letters would show; nothing else
    print(describe_machine("aiohttp"))
    print(f"receiver answers after {ANSWER_DELAY * 1000:.0f} ms; requests signed; GCM messages\n")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in args.levels:
            profiler = cProfile.Profile() if args.profile == level else None
            result = asyncio.run(run_level(level, args.seconds, Path(tmp), profiler))
            if args.baseline:
                result.baseline_rate = asyncio.run(baseline(level, result.events))
            results.append(result)
            print(
                f"  level {level:>3}: {result.events:>6} events in {result.seconds:6.2f} s",
                flush=True,
            )
            if profiler is not None:
                stats = pstats.Stats(profiler).sort_stats("tottime")
                stats.print_stats(25)
    print()
    print(
        "| max_in_flight = max_concurrency | events | events/s | ideal | of ideal "
        "| bare aiohttp, requests/s | daemon CPU us/event | peak requests at receiver "
        "| peak in flight |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.level} | {r.events} | {r.rate:,.0f} | {r.ideal:,.0f} | "
            f"{r.rate / r.ideal:.0%} | {r.baseline_rate:,.0f} | "
            f"{r.cpu_seconds / r.events * 1e6:,.0f} | "
            f"{r.receiver_max_concurrent} | {r.peak_in_flight} |"
        )
    goal = next((r for r in results if r.level == GOAL_LEVEL), None)
    if goal is not None:
        verdict = "met" if goal.rate >= GOAL_RATE else "MISSED"
        print(
            f"\nGoal: >= {GOAL_RATE:.0f} events/s at {GOAL_LEVEL} in flight: {verdict} "
            f"({goal.rate:,.0f} events/s)"
        )
    print("Every level: each event received once, in order per device, signatures valid.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
