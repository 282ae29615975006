"""The go-live kit: a site record as a versioned file (export/import), and the readiness check against a live EHR."""
