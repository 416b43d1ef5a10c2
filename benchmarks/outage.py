"""How fast a backlog clears once a webhook receiver that was down is back, on the real broker.

Run from the project root: ``.venv/bin/python benchmarks/outage.py`` (about a minute a run).

A real test broker and ``tuya-events run`` as a process (tests/support/daemon.py), with one
webhook handler posting to a real receiver on 127.0.0.1 (tests/webhook_receiver.py, in this
process). Messages are published at a steady rate; the receiver is stopped (connections refused)
for ``--down`` seconds while publishing goes on, then started again on the same port and the
publishing stops. Measured: seconds from the receiver's return to an empty subscription backlog
(every message acknowledged), requests the receiver saw, messages lost or repeated. The goal of
issue 14: at most 2 s after a 20 s outage. It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.*

from benchmarks.machine import describe_machine  # noqa: E402
from tests.pulsar.broker import PulsarBroker, log_to_stderr  # noqa: E402
from tests.pulsar.build import prepare  # noqa: E402
from tests.pulsar.publisher import TuyaPublisher  # noqa: E402
from tests.pulsar.tenant import TuyaTenant  # noqa: E402
from tests.pulsar.traffic import interleaved_stream  # noqa: E402
from tests.support.daemon import DaemonProcess  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.webhook_receiver import WebhookReceiver  # noqa: E402

GOAL_SECONDS = 2.0


def run_once(broker: PulsarBroker, messages: int, rate: float, down: float) -> dict[str, float]:
    tenant: TuyaTenant = broker.create_tenant()
    broker.admin.request(
        "PUT", f"/persistent/{tenant.access_id}/out/event/subscription/{tenant.subscription}"
    )
    port = free_port()
    receiver = WebhookReceiver(port=port).start()
    work = Path(tempfile.mkdtemp(prefix="tuya-events-outage-run-"))
    daemon = DaemonProcess(
        work,
        tenant,
        "outage",
        work / "handled.jsonl",
        handlers=[{"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "timeout": "2s"}],
    )
    stream = interleaved_stream(messages=messages, devices=100)
    stop_publishing = threading.Event()
    published = 0

    def publish() -> None:
        nonlocal published
        with TuyaPublisher(broker.broker_url, broker.service_credentials, tenant) as publisher:
            for item in stream:
                if stop_publishing.is_set():
                    break
                publisher.publish_all([item])
                published += 1
                time.sleep(1 / rate)

    try:
        daemon.start().wait_ready()
        publisher = threading.Thread(target=publish)
        publisher.start()
        time.sleep(3)
        receiver.stop()
        down_from = time.monotonic()
        time.sleep(down)
        receiver = WebhookReceiver(port=port).start()
        back_at = time.monotonic()
        stop_publishing.set()
        publisher.join()
        backlog_at_return = broker.admin.backlog(tenant.topic(), tenant.subscription)
        deadline = back_at + 180
        while broker.admin.backlog(tenant.topic(), tenant.subscription) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"backlog not cleared:\n{daemon.log_tail()}")
            time.sleep(0.05)
        cleared = time.monotonic() - back_at
        accepted = receiver.ids()
        return {
            "down": back_at - down_from,
            "published": published,
            "backlog_at_return": backlog_at_return,
            "clear_s": cleared,
            "accepted": len(accepted),
            "unique": len(set(accepted)),
        }
    finally:
        stop_publishing.set()
        daemon.stop()
        daemon.close()
        receiver.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--down", type=float, default=20.0, help="seconds the receiver is down")
    parser.add_argument("--rate", type=float, default=200.0, help="messages published per second")
    parser.add_argument("--messages", type=int, default=20_000, help="the most to publish")
    parser.add_argument("-r", "--repeat", type=int, default=2, help="runs per code version")
    args = parser.parse_args(argv)
    print(describe_machine("pulsar-client", note=" (the broker JVM on the same CPUs)"), flush=True)
    broker = PulsarBroker(prepare(log_to_stderr), log=log_to_stderr)
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        broker.start()
        for run in range(1, args.repeat + 1):
            result = run_once(broker, args.messages, args.rate, args.down)
            rows.append((f"run {run}", result))
            print(f"  run {run}: {result}", flush=True)
    finally:
        broker.close()
    print(
        "\n| run | down s | backlog at return | backlog cleared after s | receiver requests "
        "accepted | unique | goal <= 2 s |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")  # fmt: skip
    for label, r in rows:
        met = "met" if r["clear_s"] <= GOAL_SECONDS else "not met"
        print(
            f"| {label} | {r['down']:.1f} | {r['backlog_at_return']:,.0f} | {r['clear_s']:.2f} | "
            f"{r['accepted']:,.0f} | {r['unique']:,.0f} | {met} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
