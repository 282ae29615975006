"""The local backend's tests and boundary allowlist."""
