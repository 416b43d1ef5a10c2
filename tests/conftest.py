"""Shared pytest configuration: the real-service fixtures live in their own plugin modules."""

pytest_plugins = ["tests.pulsar.fixtures", "tests.pg.fixtures"]
