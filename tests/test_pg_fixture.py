"""The throwaway PostgreSQL cluster works with asyncpg and survives being stopped and started.

Later tests stop the server mid-stream to prove the PostgreSQL handler loses nothing; these
tests prove the ground they stand on: the same DSN works after a restart (fast or crash) and
committed rows are still there.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest

from tests.pg.cluster import PostgresCluster, PostgresError, find_binaries

pytestmark = pytest.mark.postgres


async def _insert_rows(dsn: str, values: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS events (id serial PRIMARY KEY, body text)")
        await conn.executemany("INSERT INTO events (body) VALUES ($1)", [(v,) for v in values])
    finally:
        await conn.close()


async def _select_rows(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["body"] for r in await conn.fetch("SELECT body FROM events ORDER BY id")]
    finally:
        await conn.close()


def test_asyncpg_roundtrip(postgres_dsn: str) -> None:
    """Create a table, insert and select through asyncpg on the test's own database."""

    async def scenario() -> list[str]:
        await _insert_rows(postgres_dsn, ["a", "b", "ü ☃"])
        return await _select_rows(postgres_dsn)

    assert asyncio.run(scenario()) == ["a", "b", "ü ☃"]


def test_dsn_is_loopback_on_the_clusters_port(
    postgres_cluster: PostgresCluster, postgres_dsn: str
) -> None:
    """The DSN names the cluster's own port and user, and its data lives in its temp dir."""
    assert postgres_dsn.startswith(f"postgresql://tuya@127.0.0.1:{postgres_cluster.port}/t_")

    async def settings() -> dict[str, str]:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            names = ("data_directory", "port", "fsync", "synchronous_commit")
            return {n: await conn.fetchval(f"SHOW {n}") for n in names}
        finally:
            await conn.close()

    shown = asyncio.run(settings())
    assert Path(shown["data_directory"]) == postgres_cluster.data_dir
    assert shown["port"] == str(postgres_cluster.port)
    assert shown["fsync"] == "off"
    assert shown["synchronous_commit"] == "on"  # commits must survive a crash stop


def test_each_test_gets_an_empty_database(postgres_dsn: str) -> None:
    """The test database is fresh: no table from another test (e.g. the roundtrip's)."""

    async def tables() -> list[str]:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
            return [r["tablename"] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(tables()) == []


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_stop_and_start_keeps_data_and_dsn(
    postgres_cluster: PostgresCluster, postgres_dsn: str, mode: str
) -> None:
    """Stopped (cleanly or as a crash), the server refuses connections; restarted, the same
    DSN works and every committed row is there."""
    asyncio.run(_insert_rows(postgres_dsn, ["before-stop-1", "before-stop-2"]))
    port = postgres_cluster.port

    async def while_stopped() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            postgres_cluster.stop(mode)
            assert not postgres_cluster.running
            # The open connection is cut, and new ones are refused.
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                await conn.fetchval("SELECT 1")
            with pytest.raises(OSError):
                await asyncpg.connect(postgres_dsn, timeout=5)
        finally:
            await conn.close(timeout=1)

    asyncio.run(while_stopped())
    postgres_cluster.start()
    assert postgres_cluster.running
    assert postgres_cluster.port == port
    assert asyncio.run(_select_rows(postgres_dsn)) == ["before-stop-1", "before-stop-2"]
    asyncio.run(_insert_rows(postgres_dsn, ["after-restart"]))
    assert asyncio.run(_select_rows(postgres_dsn))[-1] == "after-restart"


def test_find_binaries_names_a_real_installation() -> None:
    """The binaries the cluster uses exist together, with a version pg_ctl reports."""
    binaries = find_binaries()
    for name in ("initdb", "pg_ctl", "postgres"):
        assert os.access(binaries.path(name), os.X_OK)
    assert binaries.version.startswith("pg_ctl (PostgreSQL) ")


def test_failed_start_raises_with_the_server_log() -> None:
    """A server that cannot start is an error carrying its log, never a skip."""
    cluster = PostgresCluster(settings={"shared_buffers": "'not-a-size'"})
    try:
        with pytest.raises(PostgresError, match="shared_buffers") as excinfo:
            cluster.start()
        assert "server log" in str(excinfo.value)
        assert not cluster.running
    finally:
        cluster.close()
    assert not cluster.base_dir.exists()


def test_close_stops_the_server_and_removes_its_directory() -> None:
    """close() ends the server by pid and leaves nothing behind, so no test leaks a server;
    as root the server runs as an unprivileged user (PostgreSQL refuses root)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        pid = cluster.pid
        assert pid is not None and cluster.running
        if os.geteuid() == 0:
            assert Path(f"/proc/{pid}").stat().st_uid != 0
        assert asyncio.run(_select_one(cluster.dsn)) == 1
    finally:
        cluster.close()
    assert not cluster.running
    assert _is_gone(pid)
    assert not cluster.base_dir.exists()


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def _is_gone(pid: int) -> bool:
    """No such process, or only its zombie (nobody may reap it in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
