"""Fixtures for the coverage tests: the loopback stand-in clearinghouse (``tests/peers/clearinghouse.py``)."""

from tests.peers.clearinghouse import clearinghouse  # noqa: F401 (a fixture)
