"""The HTTP listener (/metrics, /healthz, /readyz) under hostile load (issue 12, "The listener").

Everything here is real: the listener is the daemon's HttpServer, on its own event loop (in a
thread, or in a child process when the test needs a low RLIMIT_NOFILE), and the clients are
plain sockets on 127.0.0.1 that connect and then dawdle the ways a slowloris does.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import resource
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.support.paths import ROOT
from tuya_events.observability.accepting import Throttle
from tuya_events.observability.connections import connection_limit, descriptor_limit
from tuya_events.observability.health import Health
from tuya_events.observability.http import HttpServer
from tuya_events.observability.metrics import Metrics

# How a slow client starts, and the byte it adds now and then (b"": it sends nothing at all).
SLOW_KINDS = {
    "silent": (b"", b""),
    "request line": (b"GET /metr", b"i"),
    "headers": (b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"x"),
}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def ready_health() -> Health:
    health = Health(lambda: True, lambda: 0.0)
    health.started = True
    return health


def timed_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection; status 0 if none came."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return status, time.monotonic() - started


def scrape(port: int) -> dict[str, float]:
    """The listener's own series from /metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def dropped(samples: dict[str, float], reason: str) -> float:
    return samples[f"tuya_events_http_connections_dropped_total{{reason={reason}}}"]


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed ``sock`` (sending ``trickle`` every 0.2 s meanwhile), or
    None if it was still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            if trickle:
                try:
                    sock.send(trickle)
                except OSError:
                    return time.monotonic() - started
        except OSError:  # reset
            return time.monotonic() - started
    return None


class InProcessListener:
    """The real HttpServer on an event loop of its own, in a thread of this process."""

    def __init__(self, **options: Any) -> None:
        self.server = HttpServer("127.0.0.1", 0, Metrics(), ready_health(), **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> InProcessListener:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @property
    def port(self) -> int:
        return self.server.port

    def connect(self, first: bytes = b"") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if first:
            sock.sendall(first)
        return sock


# The listener in a child process: RLIMIT_NOFILE is per process, and the test's own sockets must
# not count against it. Settings come as JSON in argv[1]; it prints {"port": ...} when
# listening, closes the descriptors it holds ("hog") on a "release" line, and stops at EOF.
CHILD = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys

    settings = json.loads(sys.argv[1])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (settings.pop("nofile"), hard))
    hog = settings.pop("hog", False)

    from tuya_events.observability.logging import configure_logging
    configure_logging("info", "json")
    from tuya_events.observability.health import Health
    from tuya_events.observability.http import HttpServer
    from tuya_events.observability.metrics import Metrics

    def hold_descriptors(spare):
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for fd in held[len(held) - spare:]:
            os.close(fd)
        return held[:len(held) - spare]

    async def main():
        health = Health(lambda: True, lambda: 0.0)
        health.started = True
        server = HttpServer("127.0.0.1", 0, Metrics(), health, **settings)
        await server.start()
        held = hold_descriptors(2) if hog else []
        print(json.dumps({"port": server.port}), flush=True)
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()

        def command():
            line = sys.stdin.readline()
            if line.strip() == "release":
                for fd in held:
                    os.close(fd)
                held.clear()
            elif not line:
                loop.remove_reader(0)
                stopped.set()

        loop.add_reader(0, command)
        await stopped.wait()
        await server.stop()

    asyncio.run(main())
    """
)


class ListenerProcess:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.log_path = tmp_path / "listener.log"
        with self.log_path.open("w") as log:  # a file: a full pipe would block the child
            self.process = subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(settings)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def __enter__(self) -> ListenerProcess:
        line = self.stdout.readline()
        assert line, f"the listener did not start: {self.log_path.read_text()}"
        self.port = json.loads(line)["port"]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def send(self, command: str) -> None:
        self.stdin.write(command + "\n")
        self.stdin.flush()

    def stop(self) -> list[dict[str, Any]]:
        """Stop it (as the daemon stops its listener) and return its log lines."""
        self.stdin.close()
        assert self.process.wait(15) == 0, self.log_path.read_text()
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]


class SlowClients:
    """``count`` connections, cycling through SLOW_KINDS, that never finish a request."""

    def __init__(self, port: int, count: int) -> None:
        self.kinds = list(itertools.islice(itertools.cycle(SLOW_KINDS), count))
        self.sockets = [socket.socket() for _ in range(count)]
        self.closed_at: dict[int, float] = {}
        self.selector = selectors.DefaultSelector()
        for index, sock in enumerate(self.sockets):
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            self.selector.register(sock, selectors.EVENT_WRITE, index)
        self._wait_connected(deadline=time.monotonic() + 5)
        for index, sock in enumerate(self.sockets):
            first, _ = SLOW_KINDS[self.kinds[index]]
            if first:
                sock.send(first)
            self.selector.register(sock, selectors.EVENT_READ, index)

    def _wait_connected(self, deadline: float) -> None:
        pending = len(self.sockets)
        while pending and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.1):
                self.selector.unregister(key.fileobj)
                pending -= 1
        assert not pending, f"{pending} of {len(self.sockets)} connections not established"
        for sock in self.sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0

    def open(self) -> list[int]:
        return [i for i in range(len(self.sockets)) if i not in self.closed_at]

    def trickle(self) -> None:
        for index in self.open():
            _, more = SLOW_KINDS[self.kinds[index]]
            if more:
                try:
                    self.sockets[index].send(more)
                except OSError:
                    self._closed(index)

    def watch(self, seconds: float) -> None:
        """Note the connections the server closes during the next ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and self.open():
            for key, _ in self.selector.select(left):
                try:
                    data = self.sockets[key.data].recv(4096)
                except OSError:
                    data = b""
                assert data == b"", f"an unfinished request was answered: {data[:80]!r}"
                self._closed(key.data)

    def _closed(self, index: int) -> None:
        if index not in self.closed_at:
            self.closed_at[index] = time.monotonic()
            self.selector.unregister(self.sockets[index])
            self.sockets[index].close()

    def close(self) -> None:
        for index in self.open():
            self._closed(index)


# -- the two scenarios, against the listener in a child process ------------------------


def test_probes_answer_and_400_slow_connections_are_closed_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    """RLIMIT_NOFILE 256: before, 400 slow connections used every descriptor, the probes timed
    out, and none was ever closed. Now at most 128 are open (half the descriptors), the oldest
    make room for each new one, and the rest are closed at the header timeout."""
    timeout = 2.0
    with ListenerProcess(tmp_path, nofile=256, header_timeout=timeout) as listener:
        started = time.monotonic()
        clients = SlowClients(listener.port, 400)
        probes = []
        try:
            while clients.open() and time.monotonic() < started + timeout + 3:
                clients.trickle()
                probes += [timed_get(listener.port, p) for p in ("/readyz", "/metrics")]
                clients.watch(0.3)
            samples = scrape(listener.port)
        finally:
            clients.close()
        listener.stop()
    assert len(probes) >= 6 and all(status == 200 for status, _ in probes), probes
    assert max(seconds for _, seconds in probes) < 2.0, probes
    assert len(clients.closed_at) == 400
    # Closed by the listener, not by our clean-up: all before the loop above gave up.
    assert max(clients.closed_at.values()) < started + timeout + 1.5
    timed_out = dropped(samples, "header_timeout")
    evicted = dropped(samples, "evicted")
    assert timed_out + evicted == 400 and dropped(samples, "rejected") == 0
    assert timed_out >= 64  # most of those open at the limit waited out the timeout
    early = [i for i, at in clients.closed_at.items() if at < started + timeout]
    assert len(early) <= evicted  # nothing closed before its timeout unless to make room
    for kind in SLOW_KINDS:  # trickling bytes does not extend the deadline
        assert any(clients.kinds[i] == kind for i in set(clients.closed_at) - set(early))
    assert samples["tuya_events_http_connections"] == 1  # the scrape itself


def test_running_out_of_descriptors_logs_one_line_per_interval_not_a_traceback_per_accept(
    tmp_path: Path,
) -> None:
    """Every descriptor but two in use: before, asyncio logged a traceback per failed accept(),
    over a thousand a second and growing. Now one line per interval, retried once a second, and
    the listener serves again as soon as descriptors are free."""
    with ListenerProcess(tmp_path, nofile=64, hog=True) as listener:
        clients = SlowClients(listener.port, 40)  # all queued in the kernel's backlog
        try:
            time.sleep(3.5)
            listener.send("release")
            status, seconds = timed_get(listener.port, "/readyz", timeout=5)
            samples = scrape(listener.port)
        finally:
            clients.close()
        lines = listener.stop()
    assert status == 200 and seconds < 2.5  # the next retry, within a second, accepts it
    refused = [line for line in lines if "cannot accept" in line["event"]]
    assert refused == lines, "nothing else was logged (no tracebacks)"
    assert 1 <= len(refused) <= 2, refused  # the first at once, the rest at stop (interval 10s)
    assert refused[0]["error"] == "EMFILE" and refused[0]["fd_limit"] == 64
    failures = samples["tuya_events_http_accept_failures_total"]
    assert sum(line["failed_accepts"] for line in refused) == failures
    assert 3 <= failures <= 6  # one accept() try a second while the limit lasted, no pile-up


# -- the rules one by one, against the listener in this process --------------------------------


@pytest.mark.parametrize("kind", [*SLOW_KINDS, "idle after a response"])
def test_a_connection_without_a_complete_request_header_is_closed_at_the_timeout(
    kind: str,
) -> None:
    timeout = 0.8
    with InProcessListener(header_timeout=timeout) as listener:
        if kind == "idle after a response":
            sock = listener.connect(HEALTHZ)
            answer = b""
            while not answer.endswith(b"ok\n"):
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            trickle = b""
        else:
            first, trickle = SLOW_KINDS[kind]
            sock = listener.connect(first)
        with sock:
            seconds = closed_within(sock, timeout + 2, trickle)
        samples = scrape(listener.port)
    assert seconds is not None, "still open"
    assert timeout - 0.1 <= seconds <= timeout + 1.0
    assert dropped(samples, "header_timeout") == 1


def test_a_keep_alive_client_keeps_its_connection_while_it_keeps_asking() -> None:
    """The deadline runs from the last response, not from the connection's start."""
    with InProcessListener(header_timeout=0.8) as listener:
        client = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=5)
        ports = set()
        for _ in range(5):  # 2 s in all, well past the timeout
            client.request("GET", "/healthz")
            answer = client.getresponse()
            assert (answer.status, answer.read()) == (200, b"ok\n")
            assert client.sock is not None
            ports.add(client.sock.getsockname()[1])
            time.sleep(0.4)
        client.close()
        samples = scrape(listener.port)
    assert len(ports) == 1, "the connection was reopened"
    assert dropped(samples, "header_timeout") == 0


def test_at_the_limit_the_oldest_waiting_connection_makes_room_for_a_probe() -> None:
    with InProcessListener(max_connections=3) as listener:
        a, b, c = (listener.connect() for _ in range(3))
        time.sleep(0.2)
        assert timed_get(listener.port, "/readyz")[0] == 200
        time.sleep(0.2)  # the probe's connection is closed after its response
        assert closed_within(a, 1.0) is not None
        assert closed_within(b, 0.3) is None and closed_within(c, 0.3) is None
        d = listener.connect(b"GET /hea")
        time.sleep(0.2)
        assert timed_get(listener.port, "/metrics")[0] == 200
        time.sleep(0.2)
        assert closed_within(b, 1.0) is not None
        assert closed_within(c, 0.3) is None and closed_within(d, 0.3) is None
        samples = scrape(listener.port)
        for sock in (a, b, c, d):
            sock.close()
    assert dropped(samples, "evicted") == 2 and dropped(samples, "header_timeout") == 0


def test_an_oversized_request_header_is_refused() -> None:
    """Header size is capped (4 KiB a line, 32 lines): less for slow clients to make us hold."""
    with InProcessListener() as listener:
        for request in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(40))
            + b"\r\n",
        ):
            with listener.connect(request) as sock:
                assert sock.recv(4096).split(b" ")[1] in (b"400", b"431")
        assert timed_get(listener.port, "/healthz")[0] == 200


def test_stop_closes_the_port_and_every_connection_promptly() -> None:
    listener = InProcessListener(header_timeout=30)
    with listener:
        port = listener.port
        slow = [listener.connect(SLOW_KINDS[kind][0]) for kind in SLOW_KINDS]
        time.sleep(0.2)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    for sock in slow:
        with sock:
            assert closed_within(sock, 1.0) is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


# -- the rules' arithmetic ---------------------------------------------------------------------


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=300),
    interval=st.floats(min_value=0.1, max_value=10),
)
def test_the_throttle_reports_every_event_once_and_at_most_once_an_interval(
    gaps: list[float], interval: float
) -> None:
    """As FailureLog drives it: a timer flushes held events one interval after a report."""
    throttle, reports = Throttle(interval), []
    times = list(itertools.accumulate(gaps))
    for now in times:
        due = throttle.next_report()
        if due is not None and due <= now:
            reports.append((due, throttle.flush(due)))
        if count := throttle.record(now):
            reports.append((now, count))
    if (due := throttle.next_report()) is not None:
        reports.append((due, throttle.flush(due)))
    assert reports[0] == (times[0], 1)  # the first at once
    assert sum(count for _, count in reports) == len(times)  # none lost, none twice
    for (before, _), (after, _) in itertools.pairwise(reports):
        assert after - before >= interval * (1 - 1e-9)
    events = iter(times)  # and each one reported within an interval of happening
    for at, count in reports:
        for happened in itertools.islice(events, count):
            assert happened <= at <= happened + interval * (1 + 1e-9)


@given(requested=st.integers(1, 100_000), fd_limit=st.none() | st.integers(1, 10_000_000))
def test_the_connection_limit_leaves_half_the_descriptors_to_the_rest_of_the_daemon(
    requested: int, fd_limit: int | None
) -> None:
    limit = connection_limit(requested, fd_limit)
    assert 1 <= limit <= requested
    if fd_limit is None:
        assert limit == requested
    else:
        assert limit <= max(1, fd_limit // 2)
        assert limit == requested or limit == max(1, fd_limit // 2)


def test_the_descriptor_limit_is_the_process_s_soft_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert descriptor_limit() == (None if soft == resource.RLIM_INFINITY else soft)
