"""Hidden states of the head's prompt, cached on disk: resumable, keyed by model, prompt and layers.

A cache folder belongs to one (GGUF sha256, prompt sha256, layer list): its name is a hash of the three and
`meta.json` states them, so features of another model, prompt or layer set can never be mixed in. Inside,
rows are keyed by the sha256 of their (request, draft) text. Extracted vectors are written N rows at a
time as one `shards/NNNNN.npy` (float32, rows × layers × width), written to a temporary name and renamed,
and only then are their lines appended to `index.jsonl` (flushed and fsynced). An interrupted run loses at
most the shard it was filling; the next run skips every row already indexed.

    python -m chaperone.reviewer_head.features --manifest heads/split-seed0.jsonl.gz \\
        --layers 4,8,12,14,16,18,20,24,27 [--limit N | --per-source N] [--threads 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from chaperone.errors import ChaperoneError
from chaperone.models.gguf import default_cache_dir

DEFAULT_LAYERS = (4, 8, 12, 14, 16, 18, 20, 24, 27)


def cache_key(model_sha256: str, prompt_sha256: str, layers: Sequence[int]) -> str:
    text = f"{model_sha256}|{prompt_sha256}|{','.join(str(n) for n in layers)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def default_root() -> Path:
    return default_cache_dir() / "reviewer_head" / "features"


@dataclass(frozen=True)
class IndexEntry:
    key: str  # the row's text sha256
    shard: int
    pos: int
    n_tokens: int
    seconds: float


class FeatureCache:
    """One folder of cached features for one (model, prompt, layers)."""

    def __init__(
        self,
        root: Path,
        model_sha256: str,
        prompt_sha256: str,
        layers: Sequence[int],
        width: int | None = None,
        *,
        readonly: bool = False,
    ):
        """`width` None: the existing cache's (for readers), else 1536 (the embedded model's). `readonly`: a
        reader (training) beside a running extraction: it creates, truncates and writes nothing, and ignores
        a last index line still being written."""
        self.readonly = readonly
        self.layers = tuple(int(n) for n in layers)
        self.folder = Path(root) / cache_key(model_sha256, prompt_sha256, self.layers)
        meta_path = self.folder / "meta.json"
        found = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        if width is None:
            width = int(found["width"]) if found else 1536
        self.meta = {
            "model_sha256": model_sha256,
            "prompt_sha256": prompt_sha256,
            "layers": list(self.layers),
            "width": width,
            "dtype": "float32",
        }
        self.width = width
        if found is not None and found != self.meta:
            raise ValueError(f"{meta_path} describes {found}, not {self.meta}: refusing to mix features")
        if readonly and found is None:
            raise ValueError(f"{self.folder}: no feature cache here")
        if not readonly:
            (self.folder / "shards").mkdir(parents=True, exist_ok=True)
            if found is None:
                meta_path.write_text(json.dumps(self.meta, indent=1) + "\n")
        self.index_path = self.folder / "index.jsonl"
        self.entries: dict[str, IndexEntry] = {}
        self._shard_cache: dict[int, np.ndarray] = {}
        self._load_index()

    def _load_index(self) -> None:
        if not self.index_path.is_file():
            return
        raw = self.index_path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # a torn last line: a killed run's, or one a writer is appending
            raw = raw[: raw.rfind(b"\n") + 1]
            if not self.readonly:  # only the writer cuts it off, before it appends
                with self.index_path.open("r+b") as fh:
                    fh.truncate(len(raw))
        for line in raw.decode("utf-8").splitlines():
            entry = IndexEntry(**json.loads(line))
            if self.shard_path(entry.shard).is_file():  # lines of a lost shard are redone
                self.entries[entry.key] = entry

    def shard_path(self, n: int) -> Path:
        return self.folder / "shards" / f"{n:05d}.npy"

    def _next_shard(self) -> int:
        taken = [int(p.stem) for p in (self.folder / "shards").glob("*.npy") if p.stem.isdigit()]
        return max(taken, default=-1) + 1

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def write_shard(self, keys: Sequence[str], states: np.ndarray, n_tokens: Sequence[int], seconds: Sequence[float]):
        """Persist one shard (rows × layers × width), then index its rows: the order makes it crash-safe."""
        if self.readonly:
            raise ValueError(f"{self.folder}: opened read-only")
        states = np.asarray(states, dtype=np.float32)
        if states.shape != (len(keys), len(self.layers), self.width):
            raise ValueError(f"shard shape {states.shape} is not ({len(keys)}, {len(self.layers)}, {self.width})")
        n = self._next_shard()
        final = self.shard_path(n)
        tmp = final.with_name(final.name + ".tmp")
        with tmp.open("wb") as fh:
            np.save(fh, states)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        with self.index_path.open("a", encoding="utf-8") as fh:
            for pos, (key, tok, sec) in enumerate(zip(keys, n_tokens, seconds, strict=True)):
                entry = IndexEntry(key=key, shard=n, pos=pos, n_tokens=int(tok), seconds=round(float(sec), 4))
                fh.write(json.dumps(entry.__dict__) + "\n")
                self.entries[key] = entry
            fh.flush()
            os.fsync(fh.fileno())

    def get(self, key: str) -> np.ndarray:
        """The cached (layers × width) array of one row."""
        entry = self.entries[key]
        if entry.shard not in self._shard_cache:
            self._shard_cache[entry.shard] = np.load(self.shard_path(entry.shard), mmap_mode="r")
        return np.asarray(self._shard_cache[entry.shard][entry.pos])

    def matrix(self, keys: Sequence[str], layers: Sequence[int]) -> np.ndarray:
        """Rows × (the chosen layers' vectors side by side)."""
        idx = [self.layers.index(n) for n in layers]
        return np.stack([self.get(k)[idx].reshape(-1) for k in keys]) if keys else np.empty((0, 0), np.float32)


@dataclass
class RunStats:
    done: int = 0
    skipped: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def extract_missing(
    cache: FeatureCache,
    items: Iterable[tuple[str, object]],
    extract: Callable[[object], tuple[np.ndarray, int, float]],
    *,
    shard_rows: int = 32,
    progress: bool = True,
    stop_after: int | None = None,
    console: Console | None = None,
) -> RunStats:
    """Extract every (key, prompt) not yet in the cache, a shard at a time. `extract(prompt)` returns
    (layers × width, prompt tokens, seconds). `stop_after` stops after that many new rows (tests, budgets).
    Progress goes to `console` (rich's default: stdout)."""
    todo = []
    stats = RunStats()
    seen = set()
    for key, prompt in items:
        if key in cache or key in seen:
            stats.skipped += 1
            continue
        seen.add(key)
        todo.append((key, prompt))
    if stop_after is not None:
        todo = todo[:stop_after]
    buffer: list[tuple[str, np.ndarray, int, float]] = []

    def flush() -> None:
        if buffer:
            cache.write_shard(
                [b[0] for b in buffer], np.stack([b[1] for b in buffer]), [b[2] for b in buffer], [b[3] for b in buffer]
            )
            buffer.clear()

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("extracting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} tok/s"),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        # Not a terminal (a job in the background, its output in a log): the bar draws nothing until the end,
        # so each shard written is one plain line instead.
        lines = progress and not bar.console.is_terminal
        task = bar.add_task("extract", total=len(todo), rate="–")
        for key, prompt in todo:
            states, n_tokens, seconds = extract(prompt)
            buffer.append((key, states, n_tokens, seconds))
            stats.done += 1
            stats.tokens += n_tokens
            stats.seconds += seconds
            if len(buffer) >= shard_rows:
                flush()
                if lines:
                    bar.console.print(progress_line(stats, len(todo), time.monotonic() - started), highlight=False)
            bar.update(task, advance=1, rate=f"{stats.tokens_per_second:.0f}")
        flush()
    return stats


def progress_line(stats: RunStats, total: int, wall: float) -> str:
    """One line of progress for a log: rows done of this run's, prompt reading speed, time left at this pace."""
    left = (total - stats.done) * wall / stats.done if stats.done else 0.0
    return (
        f"extracting: {stats.done}/{total} rows · {stats.tokens_per_second:.0f} tok/s · "
        f"about {left / 60:.0f} min left ({time.strftime('%H:%M:%S')})"
    )


class ExtractInputError(ChaperoneError):
    """Extraction cannot start: no manifest, a bad option. Says what to run or give instead."""


def extract_features(
    *,
    manifest: Path | None = None,
    layers: Sequence[int] = DEFAULT_LAYERS,
    cache_root: Path | None = None,
    limit: int | None = None,
    per_source: int | None = None,
    sample_seed: int = 0,
    part: str | None = None,
    sources: Sequence[str] = (),
    threads: int | None = None,
    shard_rows: int = 32,
    progress: bool = True,
    prompt: object | None = None,
    rows_file: Path | None = None,
) -> tuple[RunStats, FeatureCache, float]:
    """Fill the cache for the manifest's rows (resumable): (this run's stats, the cache, wall seconds). The
    inputs are checked before the model is loaded. `prompt` (a HeadPrompt): the prompt the rows are read
    through, default config/reviewer_head.yaml (the request head passes config/request_head.yaml)."""
    from chaperone.models.gguf import ensure_model
    from chaperone.models.hidden_states import HiddenStateExtractor
    from chaperone.reviewer_head import data
    from chaperone.reviewer_head.prompt import InContextPrompt, load_prompt

    manifest = Path(manifest or data.DEFAULT_MANIFEST)
    layers = [int(n) for n in layers]
    for name, value in (("--limit", limit), ("--per-source", per_source), ("--threads", threads)):
        if value is not None and value < 1:
            raise ExtractInputError(f"{name} {value}: must be at least 1")
    if shard_rows < 1:
        raise ExtractInputError(f"--shard-rows {shard_rows}: must be at least 1")
    if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
        raise ExtractInputError(f"--layers {layers}: expected distinct non-negative layer numbers")
    if not manifest.is_file():
        raise ExtractInputError(
            f"{manifest}: no split manifest; write it with `python -m chaperone.reviewer_head.data --seed 0`"
        )
    try:
        rows, _summary = data.read_manifest(manifest)
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ExtractInputError(f"{manifest}: not a readable split manifest ({exc})") from None
    if part is not None:
        if part not in ("train", "dev", "test"):
            raise ExtractInputError(f"--part {part}: expected train, dev or test")
        rows = [r for r in rows if r.part == part]
    if sources:
        known = sorted({r.row.source for r in rows})
        if unknown := [s for s in sources if s not in known]:
            raise ExtractInputError(
                f"--source {', '.join(unknown)}: not in {manifest}; its sources: {', '.join(known)}"
            )
        rows = [r for r in rows if r.row.source in sources]
    if rows_file is not None:
        rows = only_listed(rows, Path(rows_file))
    if per_source:
        rows = data.sample(rows, per_source, sample_seed)
    prompt = prompt or load_prompt()
    extractor = HiddenStateExtractor.load(ensure_model(), n_threads=threads)
    if bad := [n for n in layers if n >= extractor.n_layers]:
        raise ExtractInputError(f"--layers: {bad} do not exist; this model has layers 0..{extractor.n_layers - 1}")
    cache = FeatureCache(cache_root or default_root(), extractor.model_sha256, prompt.sha256, layers, extractor.width)

    # The in-context layout's rows all start with the assistant's system prompt: kept in the context from one
    # row to the next, as the live reviewer keeps it (the vectors differ from a fresh pass by float rounding).
    reuse = isinstance(prompt, InContextPrompt)

    def run(messages: object) -> tuple[np.ndarray, int, float]:
        result = extractor.extract(messages, layers, reuse=reuse)  # type: ignore[arg-type]
        return result.states, result.n_tokens, result.seconds

    items = ((r.row.text_sha, prompt.messages(r.row.request, r.row.draft)) for r in rows)
    started = time.perf_counter()
    stats = extract_missing(cache, items, run, shard_rows=shard_rows, stop_after=limit, progress=progress)
    return stats, cache, time.perf_counter() - started


def only_listed(rows: list, path: Path) -> list:
    """The manifest rows a row list names (one text sha256 per line, gzip or plain): a head's exact training set
    (heads/*.rows.txt.gz), so another prompt's features can be read for the same rows."""
    import gzip

    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        wanted = {line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise ExtractInputError(f"{path}: not a readable row list ({exc})") from None
    kept = [r for r in rows if r.row.text_sha in wanted]
    if missing := len(wanted) - len({r.row.text_sha for r in kept}):
        raise ExtractInputError(f"{path}: {missing} of its {len(wanted)} rows are not in the manifest")
    return kept


def summary_line(stats: RunStats, cache: FeatureCache, wall: float) -> str:
    return (
        f"{stats.done} rows extracted ({stats.skipped} already cached), {stats.tokens} prompt tokens, "
        f"{stats.tokens_per_second:.1f} tokens/s in llama.cpp, {wall:.1f} s wall; cache {cache.folder} "
        f"holds {len(cache)} rows"
    )


def main(argv: list[str] | None = None) -> None:
    from chaperone.reviewer_head import data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, default=data.DEFAULT_MANIFEST)
    ap.add_argument("--layers", default=",".join(map(str, DEFAULT_LAYERS)))
    ap.add_argument("--cache", type=Path, default=None, help="feature cache root (default: the model cache)")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many new rows")
    ap.add_argument("--per-source", type=int, default=None, help="only a mixed sample: N rows of each source")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--part", choices=("train", "dev", "test"), default=None, help="only rows of this part")
    ap.add_argument("--source", action="append", default=[], help="only rows of this source (repeatable)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--shard-rows", type=int, default=32)
    args = ap.parse_args(argv)
    try:
        stats, cache, wall = extract_features(
            manifest=args.manifest,
            layers=[int(x) for x in args.layers.split(",") if x.strip()],
            cache_root=args.cache,
            limit=args.limit,
            per_source=args.per_source,
            sample_seed=args.sample_seed,
            part=args.part,
            sources=args.source,
            threads=args.threads,
            shard_rows=args.shard_rows,
        )
    except ChaperoneError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(summary_line(stats, cache, wall))


if __name__ == "__main__":
    main()
