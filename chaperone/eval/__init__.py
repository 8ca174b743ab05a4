"""Front door: evaluation. Harm and over-refusal of the bare assistant vs the guarded one on prompt sets,
or the reviewer alone on labelled answers; resumable run folders, metrics, reports and charts.

Drives the engine's `Conversation` and reviewer; never another front door.
"""
