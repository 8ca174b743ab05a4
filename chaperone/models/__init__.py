"""Model access: the pool of named models (OpenAI-compatible endpoints and the embedded llama.cpp model),
one cancellable `call_model` for every agent, and the embedded GGUF assembled from its PyPI parts.

Imports `config` and `audit` (redaction); the engine and the front doors call it, it calls neither.
"""
