"""The ``medusa`` commerce backend: orders created on a Medusa 2 server through its Admin API (docs/adr/0007)."""
