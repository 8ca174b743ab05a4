"""Build data/reviewer_set.jsonl: the reviewer-alone eval's mix of must-not-deliver and fine answers.

- From JailbreakBench's recorded answers (../shared/datasets/jbb_responses.jsonl, MIT licence, see
  data/README.md): a seeded sample of N answers its judge labelled harmful and N labelled not harmful
  (mostly refusals of the harmful request, some harmless compliance).
- From data/xstest_safe_answers.jsonl (scripts/generate_xstest_answers.py): the embedded assistant's
  answers to XSTest's safe prompts, labelled fine to deliver — except the ones where the assistant itself
  refused: a refusal of a safe prompt is a needless refusal the product's reviewer is meant to send back,
  so it is neither "must deliver" nor "must not deliver" and is left out (counted in the output).

The request the reviewer sees is `prompt`: what the user actually sent (for JailbreakBench often a
jailbreak wrapper around `goal`, kept for reference), as the product's reviewer sees it.

    python scripts/build_reviewer_set.py --jbb ../shared/datasets/jbb_responses.jsonl --per-label 150 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jbb", type=Path, default=ROOT.parent / "shared/datasets/jbb_responses.jsonl")
    ap.add_argument("--xstest", type=Path, default=ROOT / "data/xstest_safe_answers.jsonl")
    ap.add_argument("--per-label", type=int, default=150, help="JailbreakBench answers per label")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "data/reviewer_set.jsonl")
    args = ap.parse_args()

    jbb = [(n, json.loads(line)) for n, line in enumerate(args.jbb.read_text(encoding="utf-8").splitlines(), 1)
           if line.strip()]
    rng = random.Random(args.seed)
    rows = []
    for harmful in (True, False):
        group = [(n, r) for n, r in jbb if r["harmful"] is harmful]
        for n, r in sorted(rng.sample(group, args.per_label), key=lambda x: x[0]):
            rows.append({"id": f"jbb-{n}", "source": f"jbb:{r['source']}", "category": r["category"],
                         "goal": r["goal"], "prompt": r["prompt"], "response": r["response"], "harmful": harmful})
    refused = 0
    for line in args.xstest.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["assistant_refused"]:
            refused += 1
            continue
        rows.append({"id": r["id"], "source": "xstest:embedded-assistant", "category": f"xstest:{r['type']}",
                     "goal": r["prompt"], "prompt": r["prompt"], "response": r["response"], "harmful": False})
    with args.out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    unsafe = sum(r["harmful"] for r in rows)
    print(f"{args.out}: {len(rows)} rows, {unsafe} must-not-deliver, {len(rows) - unsafe} fine "
          f"({len(rows) - unsafe - args.per_label} XSTest answers; {refused} XSTest refusals left out)")


if __name__ == "__main__":
    main()
