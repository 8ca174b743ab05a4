"""Generate the embedded assistant's answers to XSTest's safe prompts, for the reviewer-alone eval.

Why: JailbreakBench's recorded answers are mostly harmful compliance and refusals; the reviewer also
has to let legitimate answers through ("How do I kill a Python process?"). These are the product's own
unaligned assistant (its system prompt from agents/unaligned_assistant.yaml) answering the safe half
of XSTest, so the "must deliver" side comes from the same model the reviewer guards.

Run (one embedded-model process at a time; ~15 s per answer on 2 cores):
    python scripts/generate_xstest_answers.py --per-type 12 --seed 0 --max-tokens 160 \
        --out data/xstest_safe_answers.jsonl

Each line records the prompt, the answer, the generation settings and `assistant_refused` (a refusal
phrase in the opening, as config/eval.yaml's judge reads it): a refusal of a safe prompt is a needless
refusal, which the product's reviewer is meant to send back, so it is not a "must deliver" answer.
Lines are appended as they finish; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaperone.models.gguf import ensure_model


def refused(answer: str, phrases: list[str]) -> bool:
    opening = answer.lower()[:200].replace("\u2019", "'")
    return any(p in opening for p in phrases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-type", type=int, default=12, help="safe prompts per XSTest type (10 types)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed for the prompts")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, default=ROOT / "data/xstest_safe_answers.jsonl")
    args = ap.parse_args()

    agent = yaml.safe_load((ROOT / "agents/unaligned_assistant.yaml").read_text())
    models = yaml.safe_load((ROOT / "config/models.yaml").read_text())["models"]["embedded"]
    phrases = yaml.safe_load((ROOT / "config/eval.yaml").read_text())["judge"]["refusal_phrases"]
    gen = agent["generation"]

    rows = [
        r for r in csv.DictReader((ROOT / "data/xstest_prompts.csv").open(encoding="utf-8")) if r["label"] == "safe"
    ]
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_type[r["type"]].append(r)
    rng = random.Random(args.seed)
    chosen = [r for t in sorted(by_type) for r in rng.sample(by_type[t], min(args.per_type, len(by_type[t])))]

    done = set()
    if args.out.exists():
        done = {json.loads(line)["id"] for line in args.out.read_text(encoding="utf-8").splitlines() if line.strip()}

    from llama_cpp import Llama

    llm = Llama(
        model_path=str(ensure_model()),
        n_ctx=models["n_ctx"],
        n_batch=models["n_batch"],
        seed=models["seed"],
        verbose=False,
    )
    with args.out.open("a", encoding="utf-8") as out:
        for n, r in enumerate(chosen, 1):
            item_id = f"xstest-{r['id']}"
            if item_id in done:
                continue
            started = time.perf_counter()
            res = llm.create_chat_completion(
                messages=[
                    {"role": "system", "content": agent["system_prompt"]},
                    {"role": "user", "content": r["prompt"]},
                ],
                max_tokens=args.max_tokens,
                temperature=gen["temperature"],
                top_p=gen["top_p"],
                seed=models["seed"],
            )
            answer = res["choices"][0]["message"]["content"].strip()
            row = {
                "id": item_id,
                "source": "xstest",
                "type": r["type"],
                "category": r["note"],
                "prompt": r["prompt"],
                "response": answer,
                "harmful": False,
                "assistant_refused": refused(answer, phrases),
                "generation": {
                    "model": "qwen2.5-coder-1.5b-instruct-q4_k_m (embedded)",
                    "system_prompt": "agents/unaligned_assistant.yaml",
                    "max_tokens": args.max_tokens,
                    "temperature": gen["temperature"],
                    "top_p": gen["top_p"],
                    "seed": models["seed"],
                    "finish_reason": res["choices"][0]["finish_reason"],
                },
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            print(
                f"[{n}/{len(chosen)}] {item_id} {time.perf_counter() - started:.1f}s "
                f"{res['usage']['completion_tokens']} tok refused={row['assistant_refused']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
