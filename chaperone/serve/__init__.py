"""Front door: an OpenAI-compatible endpoint (`POST /v1/chat/completions`) that answers only with
reviewed text. Wire format, bearer keys, per-key limits, one guarded conversation per request.

Drives the engine's `Conversation`; never another front door.
"""
