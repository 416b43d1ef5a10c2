"""Helpers that run a throwaway PostgreSQL cluster for the tests."""
