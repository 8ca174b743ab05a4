"""Bearer keys for the server: read from the environment or a file outside the project, kept only as
sha256 digests, compared in constant time. A key is never logged: requests are logged by key name."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.errors import ConfigError
from chaperone.serve.config import KeySources

MIN_KEY_CHARS = 16  # a shorter key can be guessed; refuse it rather than serve behind it
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    entries: tuple[tuple[str, bytes], ...]  # (name, sha256 digest)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def identify(self, presented: str | None) -> str | None:
        """The key's name, or None. Every entry is compared, so timing does not tell which one was close."""
        if not presented:
            return None
        probe = digest(presented)
        found = None
        for name, known in self.entries:
            if hmac.compare_digest(probe, known) and found is None:
                found = name
        return found


def _parse(text: str, origin: str, first_number: int) -> list[tuple[str, bytes]]:
    entries = []
    for offset, raw in enumerate(text.splitlines() if "\n" in text else text.split(",")):
        number = first_number + offset
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = line.partition("=")
        if not sep:
            name, secret = f"key{number}", line
        name, secret = name.strip(), secret.strip()
        where = f"{origin}, entry {number}"
        if not _NAME.match(name):
            raise ConfigError(origin, f"entry {number}: a key name may hold letters, digits, '.', '_' and '-'")
        m = _DIGEST.match(secret)
        if m:
            entries.append((name, bytes.fromhex(m.group(1))))
            continue
        if len(secret) < MIN_KEY_CHARS:
            # Never echo the key: only where it is and what is wrong.
            raise ConfigError(
                where,
                f"key '{name}' is shorter than {MIN_KEY_CHARS} characters; use a random key "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            )
        GLOBAL_REDACTOR.add(secret)
        entries.append((name, digest(secret)))
    return entries


def load_keys(sources: KeySources, project_root: Path, file_override: Path | None = None) -> ApiKeys:
    entries: list[tuple[str, bytes]] = []
    if sources.env and os.environ.get(sources.env, "").strip():
        entries += _parse(os.environ[sources.env], f"environment variable {sources.env}", 1)
    file = file_override or (Path(sources.file).expanduser() if sources.file else None)
    if file is not None:
        file = file if file.is_absolute() else (project_root / file)
        resolved = file.resolve()
        if resolved.is_relative_to(project_root.resolve()):
            raise ConfigError(
                file,
                "the keys file is inside the project folder, where it could be committed; "
                "keep it elsewhere (e.g. /etc/chaperone/keys, mode 0600)",
            )
        if not resolved.is_file():
            raise ConfigError(file, "keys file not found")
        if resolved.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(file, "the keys file is readable by other users; chmod 600 it")
        try:
            text = resolved.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(file, f"cannot read the keys file: {type(exc).__name__}") from None
        entries += _parse(text + "\n", str(file), 1)
    names = [n for n, _ in entries]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(file or sources.env, f"key name '{dup}' is used twice")
    return ApiKeys(tuple(entries))
