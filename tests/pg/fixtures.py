"""Pytest fixtures for a throwaway PostgreSQL cluster (see tests/pg/cluster.py).

One cluster per session, because initdb is the slow part; one fresh database per test, so
tests neither see each other's tables nor depend on their order.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.pg.cluster import PostgresCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the cluster ``postgres``, so ``-m "not postgres"`` works."""
    for item in items:
        if {"postgres_cluster", "postgres_dsn"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's running cluster; tests may ``stop()`` and ``start()`` it.

    A missing installation or a failed start raises (with the server log's tail): the tests
    never skip for want of PostgreSQL.
    """
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def _database_name(nodeid: str) -> str:
    """A readable, unique, valid name for a test's database (at most 63 bytes)."""
    slug = re.sub(r"[^a-z0-9]+", "_", nodeid.rsplit("::", 1)[-1].lower()).strip("_")
    return f"t_{slug[:40]}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def postgres_dsn(
    postgres_cluster: PostgresCluster, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The DSN of a fresh, empty database of its own for this test, dropped afterwards."""
    postgres_cluster.start()  # an earlier test may have left it stopped
    name = _database_name(request.node.nodeid)
    dsn = postgres_cluster.create_database(name)
    yield dsn
    postgres_cluster.start()  # this test may have left it stopped
    postgres_cluster.drop_database(name)
