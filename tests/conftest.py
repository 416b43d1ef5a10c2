"""Shared pytest configuration: the real-service fixtures live in their own plugin modules,
the fixtures several test modules share in tests/support/fixtures.py."""

pytest_plugins = ["tests.pulsar.fixtures", "tests.pg.fixtures", "tests.support.fixtures"]
