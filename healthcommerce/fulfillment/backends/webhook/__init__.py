"""The ``webhook`` commerce backend: signed HTTPS POSTs of the minimized order to a DME supplier (docs/adr/0009)."""
