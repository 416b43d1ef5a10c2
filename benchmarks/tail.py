"""What the live tail costs the daemon: throughput with no viewer, a slow one and a fast one.

Run from the project root: ``.venv/bin/python benchmarks/tail.py`` (about a minute with the
defaults; no broker: the in-memory source).

The daemon in-process (tests/pipeline_support.Harness: memory source, real pipeline, real
dead-letter store, real HTTP listener on loopback), one handler that finishes without waiting,
``--messages`` encrypted status reports from ``--devices`` devices published at once; the
clock runs from the first message to the last acknowledgement. Per run one of:

- **no viewer**: the tail unused (the pipeline's tap unset: one check per message).
- **slow viewer**: ``tuya-events tail --json`` in a child process, stopped with SIGSTOP once it
  watches: it reads nothing, its buffer fills, and every later message is counted as missed.
- **fast viewer**: ``tuya-events tail --json > /dev/null`` reading as fast as it can: the daemon
  renders what the render budget allows (observability/tail.py, RENDER_SHARE) and counts the rest.

Printed: messages per second and the daemon process's CPU per message (the viewer's own
process is not counted), and what the viewer got and missed. Rounds alternate the order. It
prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.*

from benchmarks.machine import describe_machine  # noqa: E402
from tests.pipeline_support import Harness, status_message  # noqa: E402
from tests.support.paths import TUYA_EVENTS  # noqa: E402
from tests.support.settings import make_settings  # noqa: E402
from tuya_events.delivery import Delivery  # noqa: E402
from tuya_events.handlers.base import BaseHandler  # noqa: E402
from tuya_events.observability.logging import configure_logging  # noqa: E402
from tuya_events.tuya.events import Event  # noqa: E402

NONE, SLOW, FAST = "no viewer", "slow viewer (SIGSTOP)", "fast viewer"


class Done(BaseHandler):
    def handle(self, event: Event, delivery: Delivery) -> None:
        return None


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def viewer(port: int, kind: str) -> asyncio.subprocess.Process | None:
    if kind == NONE:
        return None
    process = await asyncio.create_subprocess_exec(
        str(TUYA_EVENTS),
        "tail",
        "--url",
        f"http://127.0.0.1:{port}",
        "--json",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 30)
    assert line.startswith(b"watching"), line
    if kind == SLOW:
        os.kill(process.pid, signal.SIGSTOP)
    return process


async def run(kind: str, messages: list[tuple[bytes, dict[str, str], str]]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="tuya-events-tail-"))
    settings = make_settings(
        work,
        dead_letter={"path": str(work / "dl.sqlite3")},
        http={"enabled": True, "listen": "127.0.0.1:0"},
    )
    async with Harness(settings, [Done("done")]) as h:
        assert h.daemon.http is not None and h.daemon.tail is not None
        process = await viewer(h.daemon.http.port, kind)
        for body, properties, key in messages:
            h.source.publish(body, properties, key=key)
        started, cpu_started = time.perf_counter(), cpu()
        while len(h.source.acknowledged) < len(messages):
            await asyncio.sleep(0.002)
        elapsed, used = time.perf_counter() - started, cpu() - cpu_started
        missed = sum(h.daemon.tail.missed())
        if process is not None:
            if kind == SLOW:
                os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            await process.wait()
        assert await h.stop() == 0
    total = len(messages)
    return {"rate": total / elapsed, "cpu_us": used / total * 1e6, "missed": missed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=50_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("-r", "--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    configure_logging("warning", "console")
    print(describe_machine("aiohttp"), flush=True)
    per_device = args.messages // args.devices
    messages = [
        (*status_message(f"dev{device:04d}", seq), f"d{device}")
        for seq in range(per_device)
        for device in range(args.devices)
    ]
    kinds = [NONE, SLOW, FAST]
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for round_ in range(args.repeat):
        for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
            result = asyncio.run(run(kind, messages))
            results[kind].append(result)
            print(
                f"  {kind}: {result['rate']:,.0f} msgs/s, {result['cpu_us']:.1f} us CPU/msg, "
                f"missed {result['missed']:,.0f}",
                flush=True,
            )
    total = len(messages)
    print(f"\n{total:,} messages, {args.repeat} rounds, medians\n")
    print("| run | msgs/s, median (range) | daemon CPU us/msg, median (range) | viewer missed |")
    print("|---|---:|---:|---:|")
    for kind, rows in results.items():
        rates = [r["rate"] for r in rows]
        used = [r["cpu_us"] for r in rows]
        missed = statistics.median(r["missed"] for r in rows)
        shown = "-" if kind == NONE else f"{missed:,.0f} of {total:,}"
        print(
            f"| {kind} | {statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) "
            f"| {statistics.median(used):.1f} ({min(used):.1f}-{max(used):.1f}) | {shown} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
