"""Chaperone: deploy an unaligned model safely behind an adversarial moral reviewer."""

__version__ = "0.1.0"
