"""Each commerce backend's tests and its boundary allowlist, one folder per backend (``allowlist.py``)."""
