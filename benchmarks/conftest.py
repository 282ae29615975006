"""Benchmarks reuse the test fixtures (sandbox EHR process, EHR site)."""

pytest_plugins = ["tests.conftest"]
