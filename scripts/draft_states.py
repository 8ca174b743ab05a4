"""Hidden states of the assistant's own draft tokens, read where the assistant writes them (issue 15).

A chunk verdict of the in-context head re-reads the end of the turn and a ~25-token question after every chunk.
The assistant's context already computes a hidden state for every draft token as it writes it; a head on those
states would judge a chunk with nothing read at all. This script reads those states for labelled rows, offline:
the assistant's conversation (the in-context layout's system prompt, the request as the user's turn, the
assistant's turn opened) followed by the draft's tokens, unfinished (no end of turn, no question), and keeps
the state of the draft's last token and of the token that ends each of its first sentences (the cuts chunked
review makes: `engine/chunking.sentence_ends`).

Rows (fixed before any result was read; docs/reviewer-head.md "Draft-token states"): gen9's listed rows of the
embedded assistant (its own answers: what the chunk verdicts judge), 60 rows of each other source
(`data.sample`, seed 0), and the 80 confirmation rows, in a seeded order so a run stopped early is a sample.

Cache: `FeatureCache` under the layout name "in-draft-v1" (resumable). Keys: a row's text sha256 for its last
token, `<sha>@<k>` for its k-th sentence end; `<cache folder>/positions.jsonl` says where each key is.

Usage: python scripts/draft_states.py [--threads 2] [--limit N] [--layers 12 16 20 24]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chaperone.engine.chunk_head import layout_sha256
from chaperone.engine.chunking import sentence_ends
from chaperone.reviewer_head import data
from chaperone.reviewer_head.features import FeatureCache, default_root, only_listed
from chaperone.reviewer_head.prompt import _untokened, load_prompt

MANIFEST = REPO / "heads/split-seed0-gen9.jsonl.gz"
LISTED = REPO / "heads/split-seed0-gen9.rows.txt.gz"
CONFIRMATION = REPO / "heads/confirmation-seed0.rows.txt"
PER_PUBLIC_SOURCE = 60
MAX_PREFIXES = 8
MIN_PREFIX_TOKENS = 4


def chosen_rows() -> list[data.SplitRow]:
    rows, _ = data.read_manifest(MANIFEST)
    listed = only_listed(rows, LISTED)
    own = [r for r in listed if r.row.source == "embedded_assistant"]
    public = data.sample([r for r in listed if r.row.source != "embedded_assistant"], PER_PUBLIC_SOURCE, 0)
    confirmation = only_listed(rows, CONFIRMATION)
    seen: dict[str, data.SplitRow] = {}
    for r in own + public + confirmation:
        seen.setdefault(r.row.text_sha, r)
    return sorted(seen.values(), key=lambda r: hashlib.sha256(f"0:{r.row.text_sha}".encode()).hexdigest())


def prefix_ends(llm, draft: str, draft_tokens: list[int]) -> list[tuple[int, int]]:
    """(token count, character offset) of the draft's first sentence ends: the token holding each end."""
    pieces = [llm.detokenize([t]) for t in draft_tokens]
    cum, total = [], 0
    for p in pieces:
        total += len(p)
        cum.append(total)
    out = []
    for end in sentence_ends(draft):
        b = len(draft[:end].encode("utf-8"))
        n = next((i + 1 for i, c in enumerate(cum) if c >= b), len(draft_tokens))
        if MIN_PREFIX_TOKENS <= n < len(draft_tokens) and (not out or out[-1][0] != n):
            out.append((n, end))
        if len(out) == MAX_PREFIXES:
            break
    return out


def all_rows_capture():
    """A LayerCapture that also keeps every row of each captured tensor (one pass gives every position's state)."""
    from chaperone.models import hidden_states

    class AllRowsCapture(hidden_states.LayerCapture):
        def arm(self, layers):
            super().arm(layers)
            self.rows = {n: [] for n in layers}

        def _on_tensor(self, tensor, ask, user_data):
            keep = super()._on_tensor(tensor, ask, user_data)
            if not ask and self.wanted and self.error is None:
                layer = self.wanted.get(self._ggml.get_name(tensor))
                if layer is not None:
                    g = self._ggml
                    nrows = g.nrows(tensor)
                    block = np.empty((nrows, g.nelements(tensor) // nrows), dtype=np.float32)
                    g.tensor_get(tensor, block.ctypes.data, 0, block.nbytes)
                    self.rows[layer].append(block)
            return keep

    hidden_states.LayerCapture = AllRowsCapture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--layers", type=int, nargs="+", default=[12, 16, 20, 24])
    args = ap.parse_args()

    from chaperone.models.gguf import ensure_model
    from chaperone.models.hidden_states import HiddenStateExtractor

    all_rows_capture()
    prompt = load_prompt(REPO / "config/reviewer_head_in_context.yaml")
    rows = chosen_rows()
    extractor = HiddenStateExtractor.load(ensure_model(), n_threads=args.threads)
    llm = extractor.llm
    cache = FeatureCache(
        default_root(), extractor.model_sha256, layout_sha256(prompt.system, prompt.max_draft_chars), args.layers
    )
    positions = cache.folder / "positions.jsonl"
    todo = [r for r in rows if r.row.text_sha not in cache][: args.limit]
    print(f"{len(rows)} rows chosen, {len(rows) - len(todo)} cached, {len(todo)} to read; cache {cache.folder}")
    keys, states, n_tok, secs, pos_lines = [], [], [], [], []
    started, tokens_read = time.monotonic(), 0
    for i, r in enumerate(todo, 1):
        head = extractor.tokens(prompt.messages(r.row.request, r.row.draft)[:2])
        draft = _untokened(r.row.draft)[: prompt.max_draft_chars]
        dtoks = llm.tokenize(draft.encode("utf-8"), add_bos=False, special=False) if draft else []
        ends = prefix_ends(llm, draft, dtoks)
        full = head + list(dtoks)
        ext = extractor.extract(full, args.layers, reuse=True)  # one pass; every row of the layers kept
        capture = extractor._capture
        blocks = np.stack([np.concatenate(capture.rows[n]) for n in args.layers])  # layers x evaluated x width
        first = len(full) - ext.evaluated  # the position of the first row evaluated (the rest was kept)
        tokens_read += ext.evaluated
        for k, (n, offset) in [*enumerate(ends), (None, (len(dtoks), len(draft)))]:
            at = len(head) + n - 1 - first  # the state of the draft's n-th token
            if at < 0:
                continue  # an empty draft's "end" lies in the kept prefix: no state read for it
            key = r.row.text_sha if k is None else f"{r.row.text_sha}@{k}"
            keys.append(key)
            states.append(blocks[:, at, :])
            n_tok.append(len(head) + n)
            secs.append(ext.seconds)
            pos_lines.append({"key": key, "row": r.row.text_sha, "k": k, "draft_tokens": n, "chars": offset})
        if i % 16 == 0 or i == len(todo):
            cache.write_shard(keys, np.stack(states), n_tok, secs)
            with positions.open("a") as fh:
                fh.writelines(json.dumps(p) + "\n" for p in pos_lines)
            keys, states, n_tok, secs, pos_lines = [], [], [], [], []
            wall = time.monotonic() - started
            print(f"{i}/{len(todo)} rows, {tokens_read} tokens read, {tokens_read / wall:.0f} tok/s", flush=True)


if __name__ == "__main__":
    main()
