"""Bearer keys: where they come from, how they are kept, and admission limits per key."""

from __future__ import annotations

import hashlib
import os

import pytest

from chaperone.audit.redaction import GLOBAL as GLOBAL_REDACTOR
from chaperone.errors import ConfigError
from chaperone.serve.config import KeySources
from chaperone.serve.keys import load_keys
from chaperone.serve.limits import KeyLimits
from chaperone.serve.wire import RequestError

KEY = "k" * 20


def test_keys_from_the_environment_are_named_digests_and_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_KEYS", f"web={KEY}, {'m' * 24}")
    keys = load_keys(KeySources(env="TEST_KEYS"), tmp_path / "project")
    assert [n for n, _ in keys.entries] == ["web", "key2"]
    assert all(len(d) == 32 for _, d in keys.entries) and KEY not in repr(keys)
    assert keys.identify(KEY) == "web" and keys.identify("m" * 24) == "key2"
    assert keys.identify(KEY + "x") is None and keys.identify("") is None and keys.identify(None) is None
    assert KEY not in GLOBAL_REDACTOR.text(f"header Bearer {KEY}")


def test_no_keys_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("TEST_KEYS", raising=False)
    assert not load_keys(KeySources(env="TEST_KEYS"), tmp_path)


def test_a_file_of_hashed_keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\napp=sha256:{hashlib.sha256(KEY.encode()).hexdigest()}\nother={'o' * 16}\n")
    os.chmod(path, 0o600)
    keys = load_keys(KeySources(env=None), tmp_path / "project", path)
    assert keys.identify(KEY) == "app" and keys.identify("o" * 16) == "other"


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("a=short\n", "shorter than 16"),
        ("a=" + KEY + "\na=" + "b" * 20 + "\n", "used twice"),
        ("bad name=" + KEY + "\n", "key name"),
    ],
)
def test_bad_key_files_are_refused_without_echoing_keys(tmp_path, content, fragment):
    path = tmp_path / "keys"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as err:
        load_keys(KeySources(env=None), tmp_path / "project", path)
    assert fragment in str(err.value) and "short\n" not in str(err.value) and KEY not in str(err.value)


def test_rate_limit_window_and_retry_after():
    now = [1000.0]
    limits = KeyLimits(requests_per_minute=2, max_concurrent=5, clock=lambda: now[0])
    for _ in range(2):
        with limits.admit("a"):
            pass
    now[0] += 20
    with pytest.raises(RequestError) as err, limits.admit("a"):
        pass
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "40"
    with limits.admit("b"):  # another key has its own window
        pass
    now[0] += 40.5
    with limits.admit("a"):  # the first two have left the window
        pass


def test_concurrency_per_key_counts_requests_in_flight():
    limits = KeyLimits(requests_per_minute=100, max_concurrent=2)
    with limits.admit("a"), limits.admit("a"):
        with pytest.raises(RequestError) as err, limits.admit("a"):
            pass
        assert err.value.code == "concurrency_limit_exceeded"
        assert limits.in_flight("a") == 2
    assert limits.in_flight("a") == 0
    with limits.admit("a"):
        pass
