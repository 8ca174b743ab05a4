"""Per-run digests: when a conversation's transcript closes, its record count and last hash go into
`manifests/RUN_ID.jsonl` beside the transcripts. A hash chain alone cannot show that a whole transcript
was deleted, or cut cleanly at a record boundary; checked against its run's manifest, both show.

The manifest is append-only (one line per closed transcript, fsynced), so closing a conversation costs
the same at the millionth request of a long-running server as at the first. Manifests written as one
JSON object (`RUN_ID.json`, before this form) are still read.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from chaperone.audit.private_files import private_dir, private_opener

FOLDER = "manifests"


def manifest_path(transcripts_dir: Path, run_id: str) -> Path:
    safe = "".join(c for c in run_id if c.isalnum() or c in "-_") or "run"
    return Path(transcripts_dir) / FOLDER / f"{safe}.jsonl"


def record(
    transcripts_dir: Path,
    run_id: str,
    transcript: Path,
    records: int,
    last_hash: str,
    outcome: str,
    conversation_id: str | None = None,
) -> None:
    """Add one closed transcript to its run's manifest (several processes of one run may share it)."""
    path = manifest_path(transcripts_dir, run_id)
    private_dir(path.parent)
    entry = {"transcript": Path(transcript).name, "records": records, "last_hash": last_hash, "outcome": outcome}
    if conversation_id is not None:
        entry["conversation_id"] = conversation_id
    line = json.dumps(entry, sort_keys=True)
    with open(path, "a", encoding="utf-8", opener=private_opener) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # whole lines, even from several processes of one run
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def entries(manifest: Path) -> dict[str, dict[str, Any]]:
    """Transcript name → {records, last_hash, outcome}. Raises ValueError when the manifest is unreadable."""
    text = manifest.read_text(encoding="utf-8")
    if manifest.suffix == ".json":  # the earlier whole-object form
        return dict(json.loads(text)["transcripts"])
    found: dict[str, dict[str, Any]] = {}
    lines = text.split("\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
            found[entry.pop("transcript")] = entry
        except (ValueError, KeyError, AttributeError):
            if number == len(lines):  # a last line cut off by a crash mid-append: the entries before it stand
                break
            raise ValueError(f"line {number} is not a manifest entry") from None
    return found


def manifest_files(folder: Path) -> list[Path]:
    """Every run manifest of a transcripts folder (the line form and the earlier whole-object form)."""
    where = Path(folder) / FOLDER
    return sorted(where.glob("*.json")) + sorted(where.glob("*.jsonl"))
