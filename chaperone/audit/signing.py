"""Signed run manifests: tamper evidence against someone who can write the transcripts folder.

Modelled on AWS CloudTrail's signed digest files. Each run-manifest line is the digest of one closed
transcript (its name, conversation id, record count, last hash, outcome) plus the hash of the manifest line
before it (so a line cannot be dropped from the middle) and `signed_at`. When the deployment has a signing
key, the line also carries `key_id` (the first 16 hex digits of the sha256 of the raw public key) and `sig`,
an Ed25519 signature over the line's canonical JSON without `sig`. An auditor checks with the public key
(`review verify --public-key FILE`), which cannot sign: holding it does not let anyone forge a line.

The private key is a PEM file (PKCS#8, unencrypted) named by the environment variable
CHAPERONE_AUDIT_SIGNING_KEY or by `audit.signing_key` in config/settings.yaml. It is refused when it lies
inside the transcripts folder or can be read by group or others. Key material never goes into transcripts,
logs or error messages: errors name the file and what is wrong with it, nothing read from it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from chaperone.errors import ConfigError

ENV_SIGNING_KEY = "CHAPERONE_AUDIT_SIGNING_KEY"
ENV_PUBLIC_KEY = "CHAPERONE_AUDIT_PUBLIC_KEY"
DOMAIN = b"chaperone run-manifest entry v1\n"  # a signature over a manifest line can be nothing else
PRIVATE_NAME = "chaperone-audit-signing.key"
PUBLIC_NAME = "chaperone-audit-signing.pub"

UNKEYED_NOTE = (
    "unkeyed: no public key given, so signatures were not checked; the hash chains and run manifests show "
    "accidental damage and naive edits, not a rewrite by someone who can write the transcripts folder "
    "(give --public-key or set CHAPERONE_AUDIT_PUBLIC_KEY; docs/guarantees.md)"
)


class SigningKeyError(ConfigError):
    """A signing or verification key that cannot be used (exit 2). Names the file, never its contents."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _payload(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "sig"}
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    key_id: str

    def sign(self, entry: dict[str, Any]) -> dict[str, Any]:
        signed = {
            **entry,
            "key_id": self.key_id,
            "signed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        signed["sig"] = base64.b64encode(self.private.sign(_payload(signed))).decode("ascii")
        return signed

    def __repr__(self) -> str:  # never the key
        return f"Signer(key_id={self.key_id!r})"


def load_signer(path: Path, transcripts_dir: Path, origin: str) -> Signer:
    """The private key at path, refused when whoever writes the transcripts could read it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SigningKeyError(path, f"signing key not found (named by {origin})")
    if path.resolve().is_relative_to(Path(transcripts_dir).resolve()):
        raise SigningKeyError(
            path,
            f"refusing a signing key inside the transcripts folder {transcripts_dir}: whoever can write the "
            "transcripts could read it and forge signatures; keep it elsewhere",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SigningKeyError(
            path, f"refusing a signing key readable by group or others (mode {mode:04o}): chmod 600 it"
        )
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        private = None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(path, "not an unencrypted Ed25519 private key in PEM form (make one: review keygen)")
    return Signer(private, key_id(private.public_key()))


_SIGNERS: dict[tuple[str, str, int], Signer] = {}


def signing_key_path(project: Any) -> tuple[Path, str] | None:
    """Where the deployment's signing key is, and what named it (the environment wins over settings).
    project: a chaperone.config.project.Project (not imported: audit sits below config)."""
    from_env = os.environ.get(ENV_SIGNING_KEY, "").strip()
    if from_env:
        return Path(from_env).expanduser(), f"${ENV_SIGNING_KEY}"
    configured = project.settings.audit.signing_key
    if configured:
        return project.resolve(configured), "audit.signing_key in config/settings.yaml"
    return None


def signer_for(project: Any) -> Signer | None:
    """The deployment's signer, or None when no signing key is configured. Raises SigningKeyError."""
    found = signing_key_path(project)
    if found is None:
        return None
    path, origin = found
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    cache = (str(path), str(project.transcripts_dir), mtime)
    if cache not in _SIGNERS:
        _SIGNERS[cache] = load_signer(path, project.transcripts_dir, origin)
    return _SIGNERS[cache]


def load_public_key(path: Path) -> Ed25519PublicKey:
    path = Path(path).expanduser()
    try:
        public = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise SigningKeyError(path, f"cannot read the public key: {exc.strerror}") from None
    except (ValueError, TypeError):
        public = None
    if not isinstance(public, Ed25519PublicKey):
        raise SigningKeyError(path, "not an Ed25519 public key in PEM form (review keygen writes one)")
    return public


def public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Key id → public key, for every file given (several: a key was rotated)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for p in paths:
        public = load_public_key(p)
        keys[key_id(public)] = public
    return keys


def check(entry: dict[str, Any], keys: dict[str, Ed25519PublicKey]) -> tuple[str, str]:
    """('', '') when the entry is signed by one of the keys; else ('unsigned' | 'tampered', why)."""
    given = ", ".join(sorted(keys))
    sig = entry.get("sig")
    if not sig:
        return "unsigned", f"its run-manifest entry is not signed (a key is required: {given})"
    kid = entry.get("key_id")
    public = keys.get(str(kid))
    if public is None:
        return "tampered", f"its run-manifest entry is signed by key {kid}, not by the given key {given}"
    try:
        public.verify(base64.b64decode(str(sig), validate=True), _payload(entry))
    except (InvalidSignature, ValueError):
        return "tampered", f"the signature of its run-manifest entry does not verify with key {kid} (entry changed)"
    return "", ""


def generate(out_dir: Path) -> tuple[Path, Path, str]:
    """A new key pair in out_dir: the private key owner-only (0600), the public key to publish elsewhere."""
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for p in (private_path, public_path):
        if p.exists():
            raise SigningKeyError(p, "already exists: refusing to overwrite a key (move it away first)")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(private_path, 0o600)  # whatever the umask
    public = private.public_key()
    public_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(public_pem)
    os.chmod(public_path, 0o644)
    return private_path, public_path, key_id(public)
