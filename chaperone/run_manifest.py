"""Per-run digests: when a conversation's transcript closes, its record count and last hash go into
`manifests/RUN_ID.json` beside the transcripts. A hash chain alone cannot show that a whole transcript
was deleted, or cut cleanly at a record boundary; checked against its run's manifest, both show.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaperone.private_files import private_dir, private_opener
from chaperone.transcript import read_records

FOLDER = "manifests"


def manifest_path(transcripts_dir: Path, run_id: str) -> Path:
    safe = "".join(c for c in run_id if c.isalnum() or c in "-_") or "run"
    return Path(transcripts_dir) / FOLDER / f"{safe}.json"


def record(transcripts_dir: Path, run_id: str, transcript: Path, records: int, last_hash: str, outcome: str) -> None:
    """Add one closed transcript to its run's manifest (several processes of one run may share it)."""
    path = manifest_path(transcripts_dir, run_id)
    private_dir(path.parent)
    with open(path.with_suffix(".lock"), "a", opener=private_opener) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except ValueError:
            data = {}  # unreadable: rewritten below; verify still reports any transcript it no longer lists
        data.setdefault("run_id", run_id)
        data.setdefault("transcripts", {})[Path(transcript).name] = {
            "records": records, "last_hash": last_hash, "outcome": outcome}
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as fh:
            fh.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic: a crash leaves the old manifest or the new one, never half of one


@dataclass
class ManifestProblem:
    path: Path
    problem: str

    def describe(self) -> str:
        return f"{self.path}: TAMPERED: {self.problem}"


def check(folder: Path) -> list[ManifestProblem]:
    """Transcripts of the folder against every run manifest in it: deleted, or cut at a record boundary."""
    problems: list[ManifestProblem] = []
    for manifest in sorted((Path(folder) / FOLDER).glob("*.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            entries: dict[str, Any] = data["transcripts"]
        except (ValueError, KeyError, TypeError, OSError):
            problems.append(ManifestProblem(manifest, "run manifest is not readable"))
            continue
        for name, want in sorted(entries.items()):
            transcript = Path(folder) / name
            if not transcript.exists():
                problems.append(ManifestProblem(transcript, f"deleted: run manifest {manifest.name} lists it with "
                                                            f"{want.get('records')} records"))
                continue
            records = list(read_records(transcript))
            if len(records) < want.get("records", 0):
                problems.append(ManifestProblem(transcript, f"cut short: {len(records)} records, run manifest "
                                                            f"{manifest.name} says {want.get('records')}"))
            elif records[want["records"] - 1].get("hash") != want.get("last_hash"):
                problems.append(ManifestProblem(transcript, f"record {want['records']} differs from the last hash "
                                                            f"in run manifest {manifest.name}"))
    return problems
