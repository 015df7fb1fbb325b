"""Shared fixtures. The PostgreSQL plugin starts a throwaway server for `db_url` tests."""

pytest_plugins = ["tests.conftest_pg"]
