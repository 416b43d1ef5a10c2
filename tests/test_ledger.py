"""The shared dedupe ledger on a real PostgreSQL: two instances that both get the same events
(a partition handed over while the first still works on it) run each handler once per event."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import asyncpg
import pytest

from tests.pipeline_support import Harness, status_message
from tests.support.settings import make_settings
from tuya_events.assembly import guarded_routes
from tuya_events.config import ConfigError
from tuya_events.delivery import Delivery
from tuya_events.handlers.base import BaseHandler
from tuya_events.observability.metrics import Metrics
from tuya_events.pipeline.routes import Route
from tuya_events.tuya.events import Event

DEVICES = [f"dev{n:02d}" for n in range(8)]


class SideEffect(BaseHandler):
    """A handler with a side effect that must not repeat (a command, a push): it counts what it
    completed, across instances, and takes ``delay`` seconds, so both instances are at work at
    once. ``hang`` makes it never finish (an instance that stalls, then goes away)."""

    def __init__(self, done: Counter[str], delay: float = 0.02, hang: bool = False) -> None:
        super().__init__("notify")
        self.done = done
        self.delay = delay
        self.hang = hang
        self.started = 0

    def handle(self, event: Event, delivery: Delivery) -> Awaitable[None]:
        return self._run(event)

    async def _run(self, event: Event) -> None:
        self.started += 1
        await asyncio.sleep(3600 if self.hang else self.delay)
        self.done[event.data_id or ""] += 1


def instance(tmp_path: Path, name: str, dsn: str | None, **ledger: object) -> tuple:
    sections: dict = {"dead_letter": {"path": str(tmp_path / f"{name}.sqlite3")}}
    if dsn is not None:
        sections["ledger"] = {"dsn": dsn, "handlers": ["notify"], **ledger}
    sections["consumer"] = {"shutdown_timeout": "300ms"}
    sections["retry"] = {"initial_backoff": "20ms", "max_backoff": "100ms"}
    return make_settings(tmp_path, [{"type": "log", "name": "notify"}], **sections)


def guarded(settings, handler: BaseHandler) -> list[Route]:  # type: ignore[no-untyped-def]
    return guarded_routes(settings, [Route(handler)], Metrics())


def publish_everything(h: Harness, per_device: int) -> int:
    for seq in range(per_device):
        for device in DEVICES:
            h.source.publish(*status_message(device, seq), key=device)
    return per_device * len(DEVICES)


async def until_acknowledged(h: Harness, count: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(h.source.acknowledged) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(h.source.acknowledged)} of {count} acknowledged")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("with_ledger", [True, False], ids=["ledger", "no-ledger"])
def test_two_instances_getting_the_same_events_run_the_handler_once_per_event(
    tmp_path: Path, postgres_dsn: str, with_ledger: bool
) -> None:
    done: Counter[str] = Counter()
    dsn = postgres_dsn if with_ledger else None

    async def scenario() -> None:
        a_settings, b_settings = (instance(tmp_path, n, dsn) for n in ("a", "b"))
        async with (
            Harness(a_settings, guarded(a_settings, SideEffect(done))) as a,
            Harness(b_settings, guarded(b_settings, SideEffect(done))) as b,
        ):
            total = publish_everything(a, 10)
            publish_everything(b, 10)  # the same events, to the other instance at once
            await until_acknowledged(a, total)
            await until_acknowledged(b, total)
            assert await a.stop() == 0 and await b.stop() == 0

    asyncio.run(scenario())
    assert len(done) == len(DEVICES) * 10
    if with_ledger:
        assert set(done.values()) == {1}  # every event once, across both instances
    else:
        assert sum(done.values()) == 2 * len(done)  # the control: each ran twice


def test_an_event_held_by_an_instance_that_went_away_is_taken_over_after_its_lease(
    tmp_path: Path, postgres_dsn: str
) -> None:
    done: Counter[str] = Counter()

    async def scenario() -> tuple[int, int]:
        a_settings = instance(tmp_path, "a", postgres_dsn, lease="500ms")
        b_settings = instance(tmp_path, "b", postgres_dsn, lease="500ms")
        stuck = SideEffect(done, hang=True)
        async with Harness(a_settings, guarded(a_settings, stuck)) as a:
            total = publish_everything(a, 1)
            while stuck.started < len(DEVICES):  # A claimed them all, and hangs
                await asyncio.sleep(0.01)
            assert await a.stop() == 75  # its shutdown timeout: nothing acknowledged
            assert a.source.acknowledged == []
        async with Harness(b_settings, guarded(b_settings, SideEffect(done))) as b:
            publish_everything(b, 1)  # the broker hands the events to B
            await until_acknowledged(b, total)
            assert await b.stop() == 0
        return total, stuck.started

    total, started_by_a = asyncio.run(scenario())
    assert started_by_a == total
    assert set(done.values()) == {1} and len(done) == total  # B ran each once, after the lease


@pytest.mark.parametrize("where", ["own-dsn", "database-handler"])
def test_a_ledger_row_marked_done_survives_a_restart_and_is_skipped(
    tmp_path: Path, postgres_dsn: str, where: str
) -> None:
    done: Counter[str] = Counter()

    async def scenario() -> int:
        if where == "own-dsn":
            settings = instance(tmp_path, "a", postgres_dsn)
        else:  # the ledger shares the database handler's PostgreSQL
            settings = make_settings(
                tmp_path,
                [
                    {"type": "database", "name": "db", "dsn": postgres_dsn},
                    {"type": "log", "name": "notify"},
                ],
                ledger={"database": "db", "handlers": ["notify"]},
                dead_letter={"path": str(tmp_path / "a.sqlite3")},
            )
        for _ in range(2):  # the same instance twice: its local dedupe cache starts empty
            async with Harness(settings, guarded(settings, SideEffect(done))) as h:
                total = publish_everything(h, 2)
                await until_acknowledged(h, total)
                assert await h.stop() == 0
        rows = await _rows(postgres_dsn)
        return rows

    rows = asyncio.run(scenario())
    assert set(done.values()) == {1} and len(done) == 2 * len(DEVICES)
    assert rows == 2 * len(DEVICES)


async def _rows(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM tuya_events_ledger WHERE state = 'done'"
            )
        )
    finally:
        await connection.close()


def test_a_ledger_naming_an_unknown_handler_or_without_a_dsn_is_a_config_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(
            tmp_path,
            [{"type": "log"}],
            ledger={"dsn": "postgresql://db.example/x", "handlers": ["webhook"]},
        )
    assert ("ledger.handlers[0]", "no handler is named 'webhook'") in caught.value.problems
    with pytest.raises(ConfigError) as caught:
        make_settings(tmp_path, [{"type": "log"}], ledger={"handlers": ["log"]})
    assert [path for path, _ in caught.value.problems] == ["ledger.dsn"]
    with pytest.raises(ConfigError) as caught:  # a SQLite database cannot be shared
        make_settings(
            tmp_path,
            [{"type": "database", "name": "db", "path": str(tmp_path / "e.sqlite3")}],
            ledger={"database": "db"},
        )
    assert [path for path, _ in caught.value.problems] == ["ledger.database"]


def test_the_ledger_dsn_is_masked_in_logs_and_in_check_config(tmp_path: Path) -> None:
    from tuya_events.config.render import render_effective_config
    from tuya_events.config.secrets import secret_values

    password = "ledger-Pa55w0rd-never-shown"
    settings = make_settings(
        tmp_path,
        [{"type": "webhook", "url": "https://hooks.example.com/t"}],
        ledger={"dsn": f"postgresql://events:{password}@db.example.com/ledger"},
    )
    assert password in secret_values(settings)
    assert password not in render_effective_config(settings)


def test_a_ledger_asking_for_plaintext_to_a_remote_host_is_said_at_start(tmp_path: Path) -> None:
    from tuya_events.config.transport_security import insecure_transports

    settings = make_settings(
        tmp_path,
        [{"type": "webhook", "url": "https://hooks.example.com/t"}],
        ledger={"dsn": "postgresql://u:p@db.example.com/ledger?sslmode=disable"},
    )
    assert [finding.where for finding in insecure_transports(settings, {})] == ["ledger.dsn"]
