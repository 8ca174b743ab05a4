"""Model access: the pool of named models (OpenAI-compatible endpoints and the embedded llama.cpp model),
one cancellable `call_model` for every agent, and the embedded GGUF assembled from its PyPI parts.

Imports `config` and `audit` (redaction); the engine and the front doors call it, it calls neither.
"""

import os

# llama.cpp's CPU backend makes its threads meet at a barrier after every operation of the graph (hundreds
# per token). Under libgomp's default wait policy a thread at the barrier spins for a long while before it
# sleeps; when the two cores are shared (other processes, or two role contexts generating at once) the
# spinning thread holds the core its partner needs to finish, and 2-thread generation fell from ~5 to ~1
# token/s (benchmarks/model_speed.py, docs/results.md "Speed of the model itself"). PASSIVE: a waiting
# thread sleeps at once. libgomp reads this when it is loaded, at the first `import llama_cpp`, which in
# chaperone happens only in this package's modules, so it is set here, before them. A value set by the user
# (OMP_WAIT_POLICY=ACTIVE on a dedicated machine) wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
