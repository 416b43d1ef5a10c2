"""Metrics, logs, health: what operators see."""
