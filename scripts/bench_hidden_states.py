"""How much reading hidden states costs: prompt tokens/s of the embedded model with and without llama.cpp's
eval callback, and with 1..28 layers asked for.

    python scripts/bench_hidden_states.py [--rows 8] [--repeats 2] [--threads 2]

Prompts are the head's prompt (config/reviewer_head.yaml) over a mixed sample of the split manifest. Every
configuration reads the same prompts, interleaved prompt by prompt so load from other processes hits all
alike; each evaluation starts from an empty KV cache. Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaperone.models.gguf import ensure_model
from chaperone.models.hidden_states import HiddenStateExtractor
from chaperone.reviewer_head import data
from chaperone.reviewer_head.prompt import load_prompt

CONFIGS = {
    "no callback": None,
    "callback, 0 layers": [],
    "callback, 1 layer": [14],
    "callback, 4 layers": [8, 14, 20, 27],
    "callback, 9 layers": [4, 8, 12, 14, 16, 18, 20, 24, 27],
    "callback, 28 layers": list(range(28)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8, help="prompts (mixed sources)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows, _ = data.read_manifest(data.DEFAULT_MANIFEST)
    sample = data.sample(rows, max(2, args.rows // 7 + 1), seed=1)[: args.rows]
    prompt = load_prompt()
    capture = HiddenStateExtractor.load(ensure_model(), n_threads=args.threads)
    plain = HiddenStateExtractor(capture.llm, n_threads=args.threads, capture=False)
    tokens = [capture.tokens(prompt.messages(r.row.request, r.row.draft)) for r in sample]
    totals = {name: [0, 0.0] for name in CONFIGS}
    plain.extract(tokens[0], [])  # warm up (page the weights in)
    for _ in range(args.repeats):
        for toks in tokens:
            for name, layers in CONFIGS.items():
                result = plain.extract(toks, []) if layers is None else capture.extract(toks, layers)
                totals[name][0] += result.n_tokens
                totals[name][1] += result.seconds
    base = totals["no callback"][0] / totals["no callback"][1]
    for name, (n, sec) in totals.items():
        rate = n / sec
        print(
            json.dumps(
                {
                    "config": name,
                    "tokens": n,
                    "seconds": round(sec, 2),
                    "tokens_per_s": round(rate, 1),
                    "vs_no_callback": round(rate / base, 3),
                    "threads": args.threads,
                }
            )
        )


if __name__ == "__main__":
    main()
