"""OpenAPI: the cost of signing one request, and the time from an event's arrival to its command
leaving the daemon, alone and in a burst that the 4 commands/s limit has to spread out.

Run from the project root: ``.venv/bin/python benchmarks/openapi.py`` (about 40 s).

Signing: ``sign_request`` for a GET without body, a command POST with its JSON body, and the
legacy scheme, plus ``OpenApiClient.sign`` (which also makes a nonce and ``t``); a bare
``hmac.new(...).hexdigest()`` over a string of the same length is the floor. Each case is timed
in passes of ``--sign-n`` calls; the figure is the median pass divided by the calls.

Latency: the real daemon in-process (memory source, real pipeline, an ``action`` handler built
from configuration) and the fake Tuya OpenAPI (tests/fake_tuya_openapi.py) in its own process,
checking every signature and answering 1110 past 4 commands in a second. An event's latency is
the server's arrival time of its command minus the time the event was published to the source;
both are ``time.monotonic()``, which on Linux is one system-wide clock for all processes.
*Alone*: events a second apart, so the limiter never waits: the daemon's own overhead plus one
loopback request. *Burst*: ``--burst`` events from as many devices at once; the limiter spaces
the commands 250 ms apart, so the k-th command cannot leave before (k-1) * 0.25 s: the table
gives the latency, and the latency minus that floor (what the daemon adds on top of the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.pipeline_support and tests.fake_tuya_openapi

from benchmarks.machine import describe_machine  # noqa: E402
from tests import vectors as v  # noqa: E402
from tests.pipeline_support import ENCODER, Harness, wait_until  # noqa: E402
from tuya_events.config.loader import settings_from_mapping  # noqa: E402
from tuya_events.handlers import HandlerContext  # noqa: E402
from tuya_events.observability.logging import configure_logging  # noqa: E402
from tuya_events.observability.metrics import Metrics  # noqa: E402
from tuya_events.openapi.client import Credentials, OpenApiClient  # noqa: E402
from tuya_events.openapi.signing import sign_request  # noqa: E402
from tuya_events.pipeline.routes import build_routes  # noqa: E402

COMMAND_INTERVAL = 0.25  # 4 commands/s
BODY = b'{"commands":[{"code":"switch_1","value":true}]}'


# -- signing -----------------------------------------------------------------------------------


def time_per_call(function: Any, calls: int, passes: int) -> tuple[float, float]:
    """(median, fastest) microseconds per call over ``passes`` passes of ``calls`` calls."""
    function()
    results = []
    for _ in range(passes):
        started = time.perf_counter_ns()
        for _ in range(calls):
            function()
        results.append((time.perf_counter_ns() - started) / calls / 1000)
    return statistics.median(results), min(results)


def signing(calls: int, passes: int) -> list[tuple[str, float, float]]:
    common = {
        "client_id": v.API_CLIENT_ID,
        "secret": v.API_SECRET,
        "t": v.API_T,
        "access_token": v.API_ACCESS_TOKEN,
    }
    get = sign_request(
        method="GET", path="/v1.0/iot-03/devices/bf0123/status", nonce="n" * 32, **common
    )
    floor_text = get.signed
    client = OpenApiClient(Credentials(v.API_CLIENT_ID, v.API_SECRET, "http://127.0.0.1"))
    cases = [
        (
            "bare HMAC-SHA256 hexdigest, same length (floor)",
            lambda: hmac.new(
                v.API_SECRET.encode(), floor_text.encode(), hashlib.sha256
            ).hexdigest(),
        ),
        (
            "sign_request: GET, no body",
            lambda: sign_request(
                method="GET", path="/v1.0/iot-03/devices/bf0123/status", nonce="n" * 32, **common
            ),
        ),
        (
            "sign_request: GET, query in the path (sorted)",
            lambda: sign_request(
                method="GET",
                path="/v2.0/apps/schema/users?page_size=50&page_no=1",
                nonce="n" * 32,
                **common,
            ),
        ),
        (
            "sign_request: command POST with its body",
            lambda: sign_request(
                method="POST",
                path="/v1.0/iot-03/devices/bf0123/commands",
                body=BODY,
                nonce="n" * 32,
                **common,
            ),
        ),
        (
            "sign_request: legacy scheme",
            lambda: sign_request(
                method="POST",
                path="/v1.0/iot-03/devices/bf0123/commands",
                body=BODY,
                legacy=True,
                **common,
            ),
        ),
        (
            "OpenApiClient.sign: command POST (+ nonce, t)",
            lambda: client.sign(
                "POST",
                "/v1.0/iot-03/devices/bf0123/commands",
                body=BODY,
                access_token=v.API_ACCESS_TOKEN,
            ),
        ),
    ]
    return [(name, *time_per_call(function, calls, passes)) for name, function in cases]


# -- latency -----------------------------------------------------------------------------------


class FakeServer:
    """``python -m tests.fake_tuya_openapi`` in its own process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fake_tuya_openapi",
                "--access-id",
                v.ACCESS_ID,
                "--access-secret",
                v.ACCESS_SECRET,
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake OpenAPI did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def report(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_report", timeout=30) as answer:
            return json.load(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def door(device: str, seq: int) -> tuple[bytes, dict[str, str]]:
    document = {
        "dataId": f"{device}-{seq}",
        "devId": device,
        "productKey": "pk_door",
        "status": [{"code": "doorcontact_state", "value": True, "t": 1700000000000 + seq}],
    }
    return ENCODER.encode(document, em="aes_gcm", protocol=4)


async def publish_events(
    url: str, workdir: Path, alone: int, burst: int
) -> dict[str, tuple[str, float]]:
    """Run the daemon, publish, wait until every event is acknowledged; event id -> (phase,
    publish time)."""
    tree = {
        "tuya": {
            "access_id": v.ACCESS_ID,
            "access_secret": v.ACCESS_SECRET,
            "region": "eu",
            "openapi_url": url,
        },
        "dead_letter": {"path": str(workdir / "dead-letters.sqlite3")},
        "http": {"enabled": False},
        "handlers": [
            {
                "type": "action",
                "rules": [
                    {
                        "when": {"value": {"doorcontact_state": True}},
                        "then": {
                            "command": {
                                "device_id": "light-{event.device_id}",
                                "code": "event",
                                "value": "{event.data_id}",
                            }
                        },
                    }
                ],
            }
        ],
    }
    settings = settings_from_mapping(tree, {})
    routes = build_routes(settings, HandlerContext(settings, Metrics()))
    published: dict[str, tuple[str, float]] = {}
    async with Harness(settings, [route.handler for route in routes]) as h:

        def publish(phase: str, device: str, seq: int) -> None:
            body, properties = door(device, seq)
            published[f"{device}-{seq}"] = (phase, time.monotonic())
            h.source.publish(body, properties, key=device)

        publish("warm-up", "warm", 0)  # the token call happens here, not in a measured event
        await wait_until(lambda: len(h.source.acknowledged) == 1, timeout=60)
        await asyncio.sleep(1.0)
        for seq in range(alone):
            publish("alone", "solo", seq)
            await asyncio.sleep(1.0)
        for index in range(burst):
            publish("burst", f"b{index:03d}", 0)
        await wait_until(lambda: len(h.source.acknowledged) == len(published), timeout=600)
        assert h.store.count() == 0, "dead letters during the benchmark"
    return published


def pair(published: dict[str, tuple[str, float]], report: dict[str, Any]) -> dict[str, list[float]]:
    """Latency per phase: the command's arrival (by the event id it carries) minus publish."""
    if any(code == 1110 for code in report["codes"]):
        raise SystemExit("the fake OpenAPI answered 1110: the rate limit did not hold")
    arrived = {c["body"]["commands"][0]["value"]: c["at"] for c in report["commands"]}
    if set(arrived) != set(published):
        raise SystemExit(f"commands missing or extra: {set(published) ^ set(arrived)}")
    by_phase: dict[str, list[float]] = {"alone": [], "burst": []}
    for event_id, (phase, at) in published.items():
        if phase in by_phase:
            by_phase[phase].append(arrived[event_id] - at)
    by_phase["burst"].sort()
    return by_phase


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"{ordered[0] * 1000:,.1f} | {statistics.median(ordered) * 1000:,.1f} | "
        f"{p90 * 1000:,.1f} | {ordered[-1] * 1000:,.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sign-n", type=int, default=20_000, help="calls per timed pass")
    parser.add_argument("--sign-passes", type=int, default=15)
    parser.add_argument("--alone", type=int, default=10, help="events a second apart")
    parser.add_argument("--burst", type=int, default=40, help="events at once")
    args = parser.parse_args()
    configure_logging("warning", "console")
    print(describe_machine("aiohttp"), "\n")

    print("| signing | median us/call | fastest |")
    print("|---|---:|---:|")
    for name, median, fastest in signing(args.sign_n, args.sign_passes):
        print(f"| {name} | {median:.2f} | {fastest:.2f} |")

    server = FakeServer()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            published = asyncio.run(publish_events(server.url, Path(tmp), args.alone, args.burst))
        by_phase = pair(published, server.report())
    finally:
        server.close()
    burst = by_phase["burst"]
    over_floor = [latency - k * COMMAND_INTERVAL for k, latency in enumerate(burst)]
    span = burst[-1] - burst[0] if len(burst) > 1 else 0.0
    print()
    print("| event -> command leaves (ms) | events | min | median | p90 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| alone (limiter idle) | {len(by_phase['alone'])} | {describe(by_phase['alone'])} |")
    print(f"| burst: latency | {len(burst)} | {describe(burst)} |")
    print(f"| burst: latency - (k-1) x 250 ms | {len(burst)} | {describe(over_floor)} |")
    rate = (len(burst) - 1) / span if span else float("nan")
    print(
        f"\nBurst: {len(burst)} commands left over {span:.2f} s ({rate:.2f}/s, limit 4/s); "
        "no 1110 from the server; every event's command exactly once."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
