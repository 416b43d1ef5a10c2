"""Helpers that run a real Apache Pulsar broker for the tests."""
