"""``tuya-events tail`` and the daemon's ``/tail`` stream (issue 20), all of it real.

A real daemon on the in-memory source with its real HTTP listener on a free loopback port
(tests/pipeline_support.Harness); viewers are the installed ``tuya-events tail`` in a child
process, or a plain socket with small buffers that reads only when told, so a viewer that
reads nothing is exactly that.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import vectors as v
from tests.pipeline_support import ENCODER, Harness, RecordingHandler, make_settings, wait_until
from tests.support.cli import run_cli
from tests.support.http import http_get
from tests.support.paths import TUYA_EVENTS
from tests.support.ports import free_port
from tuya_events.config import ConfigError
from tuya_events.matching import compile_match
from tuya_events.pipeline.routes import Route

LOCAL_KEY = "0f1e2d3c4b5a6978"
TOKEN = "tail-token-0123456789abcdef"


def status(device: str, seq: int, code: str = "seq", pad: int = 0, **extra: Any) -> Any:
    """An encrypted status report whose first data point ``code`` is ``seq``."""
    statuses: list[dict[str, Any]] = [{"code": code, "value": seq, "t": 1700000000000 + seq}]
    if pad:
        statuses.append({"code": "padding", "value": "x" * pad, "t": 1700000000000})
    document = {"dataId": f"{device}-{code}-{seq}", "devId": device, "productKey": "pk"}
    document.update(status=statuses, **extra)
    return ENCODER.encode(document, em="aes_ecb", protocol=4)


def routes() -> list[Route]:
    return [
        Route(RecordingHandler("all", style="sync")),
        Route(RecordingHandler("door", style="sync"), compile_match({"status_code": "door"})),
    ]


def settings(tmp_path: Path, listen: str = "127.0.0.1:0", **tail: Any) -> Any:
    return make_settings(tmp_path, http={"enabled": True, "listen": listen}, tail=tail)


@asynccontextmanager
async def daemon(tmp_path: Path, listen: str = "127.0.0.1:0", **tail: Any) -> AsyncIterator[Any]:
    async with Harness(settings(tmp_path, listen, **tail), routes()) as h:
        yield h


def port_of(h: Harness) -> int:
    assert h.daemon.http is not None
    return h.daemon.http.port


class RawViewer:
    """``GET /tail`` on a plain socket with small buffers; reads only when asked to."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending = b""
        self.status = 0
        self.body = b""

    @classmethod
    async def open(cls, port: int, query: str = "", token: str | None = None) -> RawViewer:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = f"GET /tail{query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\r\n"
        writer.write(request.encode())
        viewer = cls(reader, writer)
        head = await reader.readuntil(b"\r\n\r\n")
        viewer.status = int(head.split(b" ", 2)[1])
        if viewer.status != 200:
            viewer.body = await reader.read()
        return viewer

    async def _chunk(self) -> bytes:
        size = int((await self.reader.readline()).strip() or b"0", 16)
        if size == 0:
            return b""
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)
        return data

    async def event(self, timeout: float = 20.0) -> tuple[str, dict[str, Any]] | None:
        """The next event (heartbeats skipped) within ``timeout``; None when the stream ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while b"\n\n" not in self.pending:
                chunk = await asyncio.wait_for(self._chunk(), max(0.0, deadline - loop.time()))
                if not chunk:
                    return None
                self.pending += chunk
            block, self.pending = self.pending.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in block.decode().splitlines() if line[:1] != ":"
            )
            if "data" in fields:
                return fields.get("event", "message"), orjson.loads(fields["data"])

    async def events_until(self, done: Any, timeout: float = 20.0) -> list[Any]:
        seen = []
        while True:
            item = await self.event(timeout)
            assert item is not None, f"the stream ended after {len(seen)} events"
            seen.append(item)
            if done(*item):
                return seen

    async def catch_up(self, h: Harness, first: int) -> tuple[list[Any], int]:
        """After a pause: a marker every 0.2 s (those that find the buffer full are missed,
        and counted) until one arrives; what came, and how many markers were sent."""
        seen: list[Any] = []
        for markers in range(1, 200):
            h.source.publish(*status("marker", first + markers))
            try:
                while True:
                    item = await self.event(0.2)
                    assert item is not None
                    seen.append(item)
                    # The last one sent: everything before it was received or counted missed
                    # (an earlier marker may arrive late, after the next was sent).
                    if item[0] == "event" and seq_of(item[1]) == first + markers:
                        return seen, markers
            except TimeoutError:
                continue
        raise AssertionError("no marker arrived")

    def close(self) -> None:
        self.writer.close()


def events_of(seen: list[tuple[str, dict[str, Any]]], kind: str = "event") -> list[dict[str, Any]]:
    return [record for event_kind, record in seen if event_kind == kind]


def seq_of(record: dict[str, Any]) -> int:
    return record["event"]["statuses"][0]["value"]


def cli_env(**extra: str) -> dict[str, str]:
    environ = {key: val for key, val in os.environ.items() if not key.startswith("TUYA_")}
    environ.update(extra)
    return environ


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``tuya-events tail ARGS``, once it says it is watching."""
    process = await asyncio.create_subprocess_exec(
        str(TUYA_EVENTS),
        "tail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or cli_env(),
    )
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 30)
    assert line.startswith(b"watching "), line
    return process


async def stdout_lines(process: asyncio.subprocess.Process, count: int) -> list[str]:
    assert process.stdout is not None
    return [
        (await asyncio.wait_for(process.stdout.readline(), 20)).decode().rstrip("\n")
        for _ in range(count)
    ]


# -- what a viewer sees ---------------------------------------------------------------------


def test_the_cli_shows_each_event_with_its_handlers_and_secrets_masked(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[str], int, bytes]:
        async with daemon(tmp_path) as h:
            url = f"http://127.0.0.1:{port_of(h)}"
            as_json = await start_cli("--url", url, "--json")
            as_text = await start_cli("--url", url, "--text")
            h.source.publish(*status("dev1", 1))
            h.source.publish(*status("dev1", 2, code="door", localKey=LOCAL_KEY))
            h.source.publish(*status("dev1", 3, code=v.ACCESS_SECRET))
            h.source.publish(b"not an envelope", {"em": "aes_ecb"})
            lines = await stdout_lines(as_json, 4)
            text = await stdout_lines(as_text, 4)
            assert await h.stop() == 0
            code = await asyncio.wait_for(as_json.wait(), 20)
            assert as_json.stderr is not None
            stderr = await as_json.stderr.read()
            await as_text.wait()
            return lines, text, code, stderr

    lines, text, code, stderr = asyncio.run(scenario())
    records = [orjson.loads(line) for line in lines]
    assert [r["type"] for r in records] == ["event", "event", "event", "undecodable"]
    plain, door, secret, undecodable = records
    assert plain["handlers"] == {"ran": ["all"], "not_matched": ["door"]}
    assert door["handlers"] == {"ran": ["all", "door"], "not_matched": []}
    assert plain["event"]["device_id"] == "dev1" and seq_of(plain) == 1
    assert plain["dead_lettered"] is False and plain["delivery"]["topic"] == "memory"
    assert door["event"]["document"]["localKey"] == "[REDACTED]"
    assert secret["event"]["statuses"][0]["code"] == "[REDACTED]"
    assert undecodable["dead_lettered"] is True
    everything = "\n".join(lines + text)
    assert LOCAL_KEY not in everything and v.ACCESS_SECRET not in everything
    assert "-> all (not matched: door)" in text[0] and "dev1" in text[0] and "seq=1" in text[0]
    assert "-> all, door" in text[1]
    assert "undecodable message" in text[3] and "[dead-lettered]" in text[3]
    assert code == 0 and b"the daemon ended the stream" in stderr


def test_match_rules_filter_on_the_daemon_side(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], RawViewer, list[Any]]:
        async with daemon(tmp_path) as h:
            url = f"http://127.0.0.1:{port_of(h)}"
            cli = await start_cli("--url", url, "--json", "--match", "value: {seq: {gte: 3}}")
            raw = await RawViewer.open(port_of(h), '?match={"status_code":"door"}')
            ready = await raw.event()
            for seq in range(5):
                h.source.publish(*status("dev1", seq, code="door" if seq == 1 else "seq"))
            h.source.publish(b"garbage", {})
            lines = await stdout_lines(cli, 2)
            raw_seen = await raw.events_until(lambda kind, record: kind == "event")
            raw.close()
            cli.terminate()
            await cli.wait()
            return lines, raw, [ready, *raw_seen]

    lines, _, raw_seen = asyncio.run(scenario())
    assert [seq_of(orjson.loads(line)) for line in lines] == [3, 4]
    ready, door = raw_seen
    assert ready[0] == "ready" and ready[1]["filtered"] is True
    assert ready[1]["handlers"] == ["all", "door"]
    assert door[0] == "event" and seq_of(door[1]) == 1


def test_rules_that_do_not_validate_are_refused(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    result = run_cli("tail", "--url", nobody, "--match", "colour: red", env=cli_env())
    assert result.returncode == 64, result.stderr
    assert "match.colour" in result.stderr and "Traceback" not in result.stderr

    async def scenario() -> list[tuple[int, str]]:
        async with daemon(tmp_path) as h:
            answers = []
            for query in ('?match={"colour":"red"}', "?match={not json", "?match=3"):
                viewer = await RawViewer.open(port_of(h), query)
                answers.append((viewer.status, viewer.body.decode()))
            return answers

    answers = asyncio.run(scenario())
    assert [status_ for status_, _ in answers] == [400, 400, 400]
    assert "match.colour" in answers[0][1]


def test_the_tap_is_set_only_while_someone_watches(tmp_path: Path) -> None:
    """The pipeline's one tap always feeds the status page's latest values (a few dict writes);
    the tail joins it only while a viewer is connected."""

    async def scenario() -> list[bool]:
        async with daemon(tmp_path) as h:
            pipeline, latest = h.daemon.pipeline, h.daemon.latest
            assert latest is not None

            def tail_tapped() -> bool:
                return pipeline._tap is not None and pipeline._tap != latest.observe

            states = [tail_tapped()]
            viewer = await RawViewer.open(port_of(h))
            await viewer.event()
            states.append(tail_tapped())
            viewer.close()
            h.source.publish(*status("dev1", 1))  # the next write finds the viewer gone
            await wait_until(lambda: not tail_tapped())
            states.append(tail_tapped())
            return states

    assert asyncio.run(scenario()) == [False, True, False]


# -- slow viewers ---------------------------------------------------------------------------


def test_a_viewer_that_reads_nothing_is_told_what_it_missed(tmp_path: Path) -> None:
    """The daemon handles every message while the viewer reads nothing; afterwards the viewer
    gets the newest messages, told how many it missed: received + missed = published."""
    total = 2000

    async def scenario() -> tuple[int, list[tuple[str, dict[str, Any]]], list[int]]:
        async with daemon(tmp_path, buffer=20) as h:
            viewer = await RawViewer.open(port_of(h))
            assert (await viewer.event() or ("", {}))[0] == "ready"
            for seq in range(total):
                h.source.publish(*status(f"dev{seq % 10}", seq, pad=2000))
            await wait_until(lambda: len(h.source.acknowledged) == total)
            assert h.daemon.tail is not None
            missed_meanwhile = h.daemon.tail.missed()
            seen, markers = await viewer.catch_up(h, total)
            return len(h.source.acknowledged) - markers, seen, [*missed_meanwhile, markers]

    acknowledged, seen, (missed_meanwhile, markers) = asyncio.run(scenario())
    assert acknowledged == total
    received = events_of(seen)
    notices = events_of(seen, "missed")
    assert missed_meanwhile > total // 2  # it fell far behind while the daemon went on
    assert notices and sum(n["missed"] for n in notices) == notices[-1]["total"]
    assert len(received) + notices[-1]["total"] == total + markers
    seqs = [seq_of(record) for record in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, none twice


def test_a_stopped_cli_is_told_what_it_missed(tmp_path: Path) -> None:
    total = 1500

    async def scenario() -> tuple[list[dict[str, Any]], bytes, int]:
        async with daemon(tmp_path, buffer=20) as h:
            cli = await start_cli("--url", f"http://127.0.0.1:{port_of(h)}", "--json")
            os.kill(cli.pid, signal.SIGSTOP)
            try:
                for seq in range(total):
                    h.source.publish(*status(f"dev{seq % 10}", seq, pad=2000))
                await wait_until(lambda: len(h.source.acknowledged) == total)
            finally:
                os.kill(cli.pid, signal.SIGCONT)
            assert cli.stdout is not None
            records: list[dict[str, Any]] = []
            markers = 0
            while markers < 200:  # a marker a while: those that find the buffer full are missed
                markers += 1
                h.source.publish(*status("marker", total + markers))
                try:
                    while True:
                        line = await asyncio.wait_for(cli.stdout.readline(), 0.2)
                        records.append(orjson.loads(line))
                        record = records[-1]
                        # The last marker sent; an earlier one may arrive after the next went.
                        if record.get("type") == "event" and seq_of(record) == total + markers:
                            break
                except TimeoutError:
                    continue
                break
            cli.terminate()
            assert cli.stderr is not None
            stderr = await cli.stderr.read()
            await cli.wait()
            return records, stderr, markers

    records, stderr, markers = asyncio.run(scenario())
    events = [r for r in records if r["type"] == "event"]
    missed = [r for r in records if r["type"] == "missed"]
    assert missed and len(events) + missed[-1]["total"] == total + markers
    assert b"events missed here: this viewer fell behind" in stderr


def test_a_stalled_viewer_is_disconnected_and_its_slot_freed(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int, int]:
        async with daemon(tmp_path, max_viewers=1, stall_timeout="300ms") as h:
            port = port_of(h)
            stalled = await RawViewer.open(port)
            await stalled.event()
            refused = await RawViewer.open(port)  # the only slot is taken
            assert h.daemon.http is not None
            healthz = await asyncio.to_thread(http_get, port, "/healthz")
            tail = h.daemon.tail
            assert tail is not None
            for seq in range(4000):  # until its writes block for longer than the timeout
                if not tail.viewers:
                    break
                h.source.publish(*status("dev1", seq, pad=4000))
                await asyncio.sleep(0.005)
            assert tail.viewers == 0, "the stalled viewer is still connected"
            await wait_until(lambda: len(h.daemon.http.guard) == 0)  # its connection is gone
            admitted = await RawViewer.open(port)
            ready = await admitted.event()
            assert ready is not None and ready[0] == "ready"
            return refused.status, healthz[0], admitted.status, tail.viewers

    refused, healthz, admitted, viewers = asyncio.run(scenario())
    assert (refused, healthz, admitted, viewers) == (503, 200, 200, 1)


def test_stopping_the_daemon_ends_a_stream_nobody_reads(tmp_path: Path) -> None:
    async def scenario() -> int:
        async with daemon(tmp_path, buffer=300) as h:
            viewer = await RawViewer.open(port_of(h))
            await viewer.event()
            for seq in range(300):  # megabytes to send: the writes block
                h.source.publish(*status("dev1", seq, pad=8000))
            await wait_until(lambda: len(h.source.acknowledged) == 300)
            # aiohttp alone would wait 60 s for the stream's handler before giving up on it
            code = await asyncio.wait_for(h.stop(), 30)
            return code

    assert asyncio.run(scenario()) == 0


# -- who may watch --------------------------------------------------------------------------


def test_beyond_loopback_the_tail_is_off_without_a_token(tmp_path: Path) -> None:
    async def scenario() -> RawViewer:
        async with daemon(tmp_path, listen="0.0.0.0:0") as h:
            return await RawViewer.open(port_of(h))

    viewer = asyncio.run(scenario())
    assert viewer.status == 403 and b"beyond loopback" in viewer.body
    with pytest.raises(ConfigError) as refused:
        Harness(settings(tmp_path, "0.0.0.0:0", enabled=True), routes())
    assert refused.value.problems[0][0] == "tail.token"


def test_a_token_is_required_and_checked(tmp_path: Path) -> None:
    token_file = tmp_path / "tail-token"
    token_file.write_text(TOKEN + "\n")
    config = tmp_path / "viewer.yaml"
    config.write_text(
        f"tuya: {{access_id: {v.ACCESS_ID}, access_secret: {v.ACCESS_SECRET}, region: eu}}\n"
        f"tail: {{token_file: {token_file}}}\n"
    )

    async def scenario() -> tuple[list[int], bytes, Any, Any]:
        async with daemon(tmp_path, listen="0.0.0.0:0", token_file=str(token_file)) as h:
            port = port_of(h)
            statuses = []
            for token in (None, TOKEN[:-1] + "X", TOKEN[:-1], TOKEN + "X", TOKEN):
                viewer = await RawViewer.open(port, token=token)
                statuses.append(viewer.status)
                viewer.close()
            unauthorized = await RawViewer.open(port)
            url = f"http://127.0.0.1:{port}"
            without = await asyncio.to_thread(run_cli, "tail", "--url", url, env=cli_env())
            from_env = await start_cli("--url", url, env=cli_env(TUYA_EVENTS_TAIL_TOKEN=TOKEN))
            from_config = await start_cli("-c", str(config), "--url", url)
            h.source.publish(*status("dev1", 7))
            lines = [await stdout_lines(p, 1) for p in (from_env, from_config)]
            await h.stop()
            return statuses, unauthorized.body, without, lines

    statuses, body, without, lines = asyncio.run(scenario())
    assert statuses == [401, 401, 401, 401, 200]
    assert b"bearer token" in body
    assert without.returncode == 1 and "401" in without.stderr
    assert TOKEN not in without.stderr + without.stdout
    assert [seq_of(orjson.loads(line[0])) for line in lines] == [7, 7]


def test_a_token_on_loopback_is_required_too(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        async with daemon(tmp_path, token=TOKEN) as h:
            return [(await RawViewer.open(port_of(h), token=t)).status for t in (None, TOKEN)]

    assert asyncio.run(scenario()) == [401, 200]


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        ({"token": "short"}, "at least 16"),
        ({"token": TOKEN, "token_file": "/x"}, "not both"),
        ({"token_file": "/nonexistent/token"}, "cannot read"),
        ({"buffer": 0}, "greater than or equal to 1"),
    ],
)
def test_tail_settings_are_validated(tmp_path: Path, tail: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(tmp_path, **tail)
    assert problem in str(error.value) and "tail" in str(error.value)
    assert TOKEN not in str(error.value)
