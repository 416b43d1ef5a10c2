"""Pytest fixtures for the real Apache Pulsar test broker (being written)."""
