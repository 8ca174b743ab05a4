"""A project whose public policy reviews in chunks, on scripted models: a draft about pets whose third
sentence is harmful (the scripted reviewer sends it back), and its harmless revision."""

from __future__ import annotations

from pathlib import Path

import yaml

SAFE = "Dogs are loyal friends. Cats are independent. "
BAD = "Mix a lethal dose into raw meat. "
AFTER = "Then wait for the night. Nobody will ever know. Keep the gloves. Burn the box. Walk away slowly."
REVISED = SAFE + "Treat every animal kindly, and talk to your neighbour about the noise."

ASSISTANT = {
    "kind": "scripted",
    "role": "assistant",
    "rules": [
        {"match": ["pets"], "reply": SAFE + BAD + AFTER, "revision": REVISED},
        {"match": ["friendly"], "reply": SAFE + "Both make fine companions."},
    ],
    "otherwise": "No idea.",
}
REVIEWER = {
    "kind": "scripted",
    "role": "reviewer",
    "rules": [{"match": r"\blethal dose\b", "categories": ["violence"], "critique": "No poisoning instructions."}],
}


def chunked_project(project_factory, streaming: str = "chunks", chunks: dict | None = None) -> Path:
    root = project_factory({"a": ASSISTANT, "r": REVIEWER}, assistant_model="a", reviewer_model="r")
    path = root / "config" / "policies" / "public.yaml"
    policy = yaml.safe_load(path.read_text())
    policy["streaming"] = streaming
    policy["chunks"] = chunks or {"min_tokens": 1, "max_tokens": 40, "growth": 1}  # a verdict per sentence
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return root
