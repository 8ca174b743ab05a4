"""The audit trail: hash-chained append-only JSONL transcripts, run manifests, redaction of secrets,
private (0600) files and the log setup.

Knows nothing of agents or models: it records what it is given. Imported by the engine and the front doors.
"""
