"""What the shared dedupe ledger costs per message, on a real PostgreSQL on this machine.

Run from the project root: ``.venv/bin/python benchmarks/ledger.py`` (about half a minute).

The daemon in-process (tests/pipeline_support.Harness: memory source, real pipeline, real
dead-letter store) with one handler that waits 1 ms (a fast webhook), guarded by the ledger or
not, on the same backlog; a throwaway PostgreSQL cluster (tests/pg/cluster.py) on loopback holds
the ledger. Printed: messages per second, and the process CPU per message, with and without.
It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.*

from benchmarks.machine import describe_machine  # noqa: E402
from tests.pg.cluster import PostgresCluster  # noqa: E402
from tests.pipeline_support import Harness, status_message  # noqa: E402
from tests.support.settings import make_settings  # noqa: E402
from tuya_events.assembly import guarded_routes  # noqa: E402
from tuya_events.delivery import Delivery  # noqa: E402
from tuya_events.handlers.base import BaseHandler  # noqa: E402
from tuya_events.observability.logging import configure_logging  # noqa: E402
from tuya_events.observability.metrics import Metrics  # noqa: E402
from tuya_events.pipeline.routes import Route  # noqa: E402
from tuya_events.tuya.events import Event  # noqa: E402


class FastWebhook(BaseHandler):
    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None]:
        return asyncio.sleep(0.001)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(dsn: str | None, messages: int, devices: int, run_id: int) -> tuple[float, float]:
    work = Path(tempfile.mkdtemp(prefix="tuya-events-ledger-"))
    sections: dict = {"dead_letter": {"path": str(work / "dl.sqlite3")}}
    if dsn is not None:
        sections["ledger"] = {"dsn": dsn, "handlers": ["hook"], "table": f"ledger_{run_id}"}
    settings = make_settings(work, [{"type": "log", "name": "hook"}], **sections)
    routes = guarded_routes(settings, [Route(FastWebhook("hook"))], Metrics())
    async with Harness(settings, routes) as h:
        for seq in range(messages // devices):
            for device in range(devices):
                h.source.publish(*status_message(f"dev{device:04d}", seq), key=f"d{device}")
        total = (messages // devices) * devices
        started, cpu_started = time.perf_counter(), cpu()
        while len(h.source.acknowledged) < total:
            await asyncio.sleep(0.005)
        elapsed, used = time.perf_counter() - started, cpu() - cpu_started
        assert await h.stop() == 0
    return total / elapsed, used / total * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("-r", "--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    configure_logging("warning", "console")
    print(describe_machine("asyncpg", note=" (PostgreSQL on the same CPUs)"), flush=True)
    cluster = PostgresCluster()
    results: dict[str, list[tuple[float, float]]] = {"without": [], "with the ledger": []}
    try:
        cluster.start()
        for round_ in range(args.repeat):
            for label, dsn in (("without", None), ("with the ledger", cluster.dsn)):
                result = asyncio.run(run(dsn, args.messages, args.devices, round_))
                results[label].append(result)
                print(f"  {label}: {result[0]:,.0f} msgs/s, {result[1]:.1f} us CPU/msg", flush=True)
    finally:
        cluster.close()
    print("\n| path | msgs/s (median) | process CPU us/msg (median) |")
    print("|---|---:|---:|")
    for label, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        used = statistics.median(r[1] for r in rows)
        print(f"| {label} | {rate:,.0f} | {used:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
