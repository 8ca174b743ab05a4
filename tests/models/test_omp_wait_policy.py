"""chaperone.models sets libgomp's wait policy before llama_cpp is imported (docs/results.md, "Speed of the
model itself"): passive unless the user chose one."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import os, chaperone.models; print(os.environ['OMP_WAIT_POLICY'])"
IMPORTS_LLAMA = re.compile(r"^\s*(import llama_cpp|from llama_cpp|from autogen_ext\.models\.llama_cpp)", re.M)


def policy(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_passive_by_default() -> None:
    assert policy(None) == "PASSIVE"


def test_the_users_choice_wins() -> None:
    assert policy("ACTIVE") == "ACTIVE"


def test_set_before_any_llama_cpp_import() -> None:
    """Every chaperone module that imports llama_cpp lives in chaperone.models, whose __init__ runs first."""
    importers = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "chaperone").rglob("*.py")
        if IMPORTS_LLAMA.search(p.read_text(encoding="utf-8")) and p.parent.name != "models"
    ]
    assert importers == []
