"""Pytest fixtures for a throwaway PostgreSQL cluster (being written)."""
