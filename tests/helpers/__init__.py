"""Helpers shared by the test suites (synthetic media made at test time)."""
