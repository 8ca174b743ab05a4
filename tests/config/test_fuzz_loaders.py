"""Property-based: whatever YAML, CSV, JSONL or bytes a user hands the loaders, they either load it or
stop with the one clean error the CLI prints (file, line or field, what is wrong) — never a crash."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from unittest import mock

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaperone.config import yaml_files
from chaperone.config.schema import AgentSpec, ModelsFile, PolicySpec, Scenario, Settings
from chaperone.errors import ChaperoneError
from chaperone.eval.config import Columns, EvalConfig
from chaperone.eval.data import load_items
from chaperone.serve.config import ServeConfig
from tests.support.projects import REPO

SCHEMAS = [ModelsFile, AgentSpec, PolicySpec, Settings, Scenario, EvalConfig, ServeConfig]
EXAMPLES = {
    ModelsFile: REPO / "config/models.yaml",
    AgentSpec: REPO / "agents/moral_reviewer.yaml",
    PolicySpec: REPO / "config/policies/public.yaml",
    Settings: REPO / "config/settings.yaml",
    Scenario: REPO / "scenarios/08_multi_turn.yaml",
    EvalConfig: REPO / "config/eval.yaml",
    ServeConfig: REPO / "config/serve.yaml",
}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def load_yaml_text(schema, text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "file.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        try:
            yaml_files.load(schema, path)
        except ChaperoneError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message.strip() and "Traceback" not in message


@FUZZ
@given(schema=st.sampled_from(SCHEMAS), data=values)
def test_any_yaml_document(schema, data):
    load_yaml_text(schema, yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(
    schema=st.sampled_from(SCHEMAS),
    path=st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=3),
    value=values,
    data=st.data(),
)
def test_real_files_with_one_value_broken(schema, path, value, data):
    """Start from the shipped file and replace a value at a random place (types, shapes, unknown keys)."""
    doc = yaml.safe_load(EXAMPLES[schema].read_text())
    node = doc
    for _ in range(data.draw(st.integers(0, 2))):
        if isinstance(node, dict) and node:
            node = node[data.draw(st.sampled_from(sorted(node, key=str)))]
        elif isinstance(node, list) and node:
            node = node[data.draw(st.integers(0, len(node) - 1))]
    if isinstance(node, dict):
        node[data.draw(st.sampled_from(sorted(node, key=str) + path))] = value
    elif isinstance(node, list) and node:
        node[data.draw(st.integers(0, len(node) - 1))] = value
    load_yaml_text(schema, yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(schema=st.sampled_from(SCHEMAS), raw=st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_arbitrary_bytes_and_text(schema, raw):
    load_yaml_text(schema, raw)


def load_data(name: str, content: bytes, need: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(content)
        columns = Columns(answer="answer" if need else None, type="type", category="category")
        try:
            load_items(path, columns, need_label=need, need_answer=need)
        except ChaperoneError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc) and "Traceback" not in str(exc)


cells = st.one_of(st.text(max_size=20), st.sampled_from(["safe", "unsafe", "true", "", "1", "maybe"]))
fields = st.sampled_from(["id", "prompt", "label", "answer", "type", "category", "other", ""])


@FUZZ
@given(
    header=st.lists(fields, min_size=1, max_size=6),
    rows=st.lists(st.lists(cells, max_size=7), max_size=6),
    need=st.booleans(),
)
def test_any_csv(header, rows, need):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    load_data("data.csv", buf.getvalue().encode("utf-8", "surrogatepass"), need)


@FUZZ
@given(rows=st.lists(st.one_of(st.dictionaries(fields, values, max_size=6), values), max_size=6), need=st.booleans())
def test_any_jsonl(rows, need):
    load_data("data.jsonl", "\n".join(json.dumps(r) for r in rows).encode(), need)


@FUZZ
@given(raw=st.binary(max_size=300), name=st.sampled_from(["d.csv", "d.jsonl", "d.txt"]), need=st.booleans())
def test_any_bytes_as_data(raw, name, need):
    load_data(name, raw, need)


class _Counting(yaml_files.ConfigLoader):
    """The loader, remembered, so a property can read how many nodes it composed."""

    last: yaml_files.ConfigLoader | None = None

    def __init__(self, stream: str):
        super().__init__(stream)
        _Counting.last = self


def refused(schema, text: str) -> tuple[str, int]:
    """Load text that must be refused: (the one-line message, the nodes the loader composed)."""
    with tempfile.TemporaryDirectory() as d, mock.patch.object(yaml_files, "ConfigLoader", _Counting):
        path = Path(d) / "file.yaml"
        path.write_text(text)
        try:
            yaml_files.load(schema, path)
        except ChaperoneError as exc:
            message = str(exc)
            assert message.startswith(f"{path}:") and "\n" not in message.strip() and "Traceback" not in message
            return message.removeprefix(str(path)), _Counting.last.nodes
    raise AssertionError("loaded")


@FUZZ
@given(
    schema=st.sampled_from(SCHEMAS),
    levels=st.integers(1, 40),
    width=st.integers(1, 12),
    kind=st.sampled_from(["list", "map", "scalar", "merge", "self"]),
    nested=st.booleans(),
)
def test_alias_bombs_are_refused_within_the_bound(schema, levels, width, kind, nested):
    """Anchors of lists, mappings or scalars, nested `levels` deep (width**levels leaves once expanded),
    merged, or referring to themselves: a clean refusal, each alias counted as what it stands for, so the
    loader never counts (nor its line index walks) more than the bound and one alias past it."""
    first = {"list": f"[{', '.join(['lol'] * width)}]", "map": "{k: lol}", "scalar": "lol", "merge": "{k: lol}"}
    lines = [f"a0: &a0 {first.get(kind, '[*a0]')}"]
    size = {"list": 1 + width, "map": 3, "scalar": 1, "merge": 3, "self": 0}[kind]
    expanded = size
    for i in range(1, levels):
        ref = f"*a{i - 1}"
        value = f"{{<<: {ref}}}" if kind == "merge" else f"[{', '.join([ref] * width)}]"
        lines.append(f"a{i}: &a{i} {value}")
        size = 2 + size if kind == "merge" else 1 + width * size
        expanded += size
    prefix = "bomb:\n" if nested else ""
    indent = "  " if nested else ""
    text = prefix + "".join(f"{indent}{line}\n" for line in lines) + EXAMPLES[schema].read_text()
    message, nodes = refused(schema, text)
    assert nodes <= 2 * yaml_files.MAX_NODES
    if kind == "self":
        assert "YAML alias '*a0' refers to a value that holds it" in message
    elif kind == "list" and expanded > yaml_files.MAX_NODES:
        assert f"more than {yaml_files.MAX_NODES:,} values" in message


@FUZZ
@given(
    schema=st.sampled_from(SCHEMAS),
    depth=st.integers(yaml_files.MAX_DEPTH, 5000),
    opening=st.sampled_from(["[", "{a: ", "[{a: ", "- "]),
)
def test_deep_nesting_is_refused_at_the_limit(schema, depth, opening):
    """Flow or block, thousands of levels: refused on the way down, never a RecursionError."""
    if opening == "- ":
        depth = min(depth, 300)  # each block level is indented further: the text grows as depth squared
        text = "key:\n" + "".join(" " * (2 * i + 2) + "-\n" for i in range(depth))
    else:
        text = "key: " + opening * depth + "\n"
    message, nodes = refused(schema, text)
    assert message.startswith(":1:" if opening != "- " else ":") and "nested more than 32 levels deep" in message
    assert nodes <= 2 * yaml_files.MAX_DEPTH + 3
