"""Shared fixtures: scripted projects, the transcript corpus, the scripted OpenAI world (helpers: tests/support/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.projects import make_project


@pytest.fixture
def project_factory(tmp_path):
    def factory(models: dict, **kw) -> Path:
        return make_project(tmp_path, models, **kw)

    return factory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Real transcripts of a few conversations (tests/support/review_corpus.py), built once per test module."""
    from tests.support.review_corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def folder(corpus, tmp_path):
    """A copy of the corpus's transcripts folder that a test may edit."""
    target = tmp_path / "transcripts"
    shutil.copytree(corpus.folder, target)
    return target


@pytest.fixture
def world():
    """The scripted OpenAI-compatible world of tests/support/eval_fakes.py, served on 127.0.0.1."""
    from tests.support.eval_fakes import World
    from tests.support.fake_openai_server import FakeOpenAI

    w = World()
    with FakeOpenAI(w) as server:
        w.server = server
        yield w
