"""The YAML reader's bounds (chaperone/config/yaml_files.py; docs/configuration.md, "What a file may hold"):
aliases counted as their value, no merge keys, bounded nesting and size, no duplicate keys. Each refusal is one
ConfigError naming file and line, and a refused file costs no more than the text read before the refusal: the
tests count the nodes the loader composes (structure, not wall-clock time)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import ClassVar
from unittest import mock

import pytest

from chaperone.config import yaml_files
from chaperone.config.schema import PolicySpec, Scenario
from chaperone.errors import ConfigError
from tests.support.projects import REPO

POLICY = "name: p\ntitle: t\nrubric: r\ncategories: {x: y}\n"


def alias_bomb(levels: int, width: int = 9) -> str:
    """The billion laughs: each level a list of `width` aliases of the one before (width**levels leaves)."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "extra:\n" + "".join(f"  {line}\n" for line in lines)


class Recording(yaml_files.ConfigLoader):
    """The loader, remembered: a test reads how many nodes it composed."""

    made: ClassVar[list[yaml_files.ConfigLoader]] = []

    def __init__(self, stream: str):
        super().__init__(stream)
        Recording.made.append(self)


def load(tmp_path: Path, text: str, schema=PolicySpec):
    """(the ConfigError or None, the nodes the loader composed)."""
    path = tmp_path / "file.yaml"
    path.write_text(text)
    Recording.made = []
    with mock.patch.object(yaml_files, "ConfigLoader", Recording):
        try:
            yaml_files.load(schema, path)
        except ConfigError as exc:
            return exc, Recording.made[0].nodes
    return None, Recording.made[0].nodes


def test_an_alias_bomb_is_refused_where_it_passes_the_bound(tmp_path):
    """The finding: nine levels grew `scenario` to 4.5 GB (the line index re-walked the shared node at every
    reference). 9**9 leaves; each alias counts as the value it stands for, and the first alias of a3
    (7,381 values) passes 20,000: refused there, never expanded."""
    err, nodes = load(tmp_path, POLICY + alias_bomb(9))
    assert err is not None and err.line == 10
    assert f"YAML alias '*a3' makes the file more than {yaml_files.MAX_NODES:,} values once expanded" in str(err)
    assert nodes <= yaml_files.MAX_NODES + 7381


def test_an_alias_bomb_leaves_memory_flat(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(POLICY + alias_bomb(9))
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="once expanded"):
            yaml_files.load(PolicySpec, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # the old reader needed ~9 MB at five levels, 4.5 GB at nine


def test_a_small_alias_is_read_as_its_value(tmp_path):
    """What yaml.safe_dump writes for a value used twice (&id001 / *id001) loads as if written out."""
    err, nodes = load(tmp_path, "name: p\ntitle: &t t\nrubric: *t\ncategories: &c {x: y}\nextra: *c\n")
    assert err is not None and err.line == 5 and "unknown field 'extra'" in str(err)
    assert nodes == 15  # the document, 5 keys, 2 scalars, the alias of one, the 3 of categories twice


def test_an_alias_inside_its_own_value_is_refused(tmp_path):
    err, _ = load(tmp_path, "name: p\ntitle: t\nrubric: r\ncategories: &c [*c]\n")
    assert err is not None and err.line == 4 and "YAML alias '*c' refers to a value that holds it" in str(err)


def test_an_alias_counts_its_levels(tmp_path):
    inner = "[" * 20 + "]" * 20
    err, _ = load(tmp_path, f"name: &x [{inner}]\ntitle: [[[[[[[[[[[[*x]]]]]]]]]]]]\n")
    assert err is not None and err.line == 2 and "nests the file more than 32 levels deep once expanded" in str(err)


def test_an_anchor_nobody_refers_to_is_harmless(tmp_path):
    err, _ = load(tmp_path, "name: p\ntitle: &t t\nrubric: r\ncategories: {x: y}\n")
    assert err is None


def test_merge_keys_are_refused(tmp_path):
    err, _ = load(tmp_path, POLICY + "<<: {title: u}\n")
    assert err is not None and err.line == 5 and "merge keys (<<) are not allowed" in str(err)


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "])
def test_deep_nesting_is_refused_at_the_limit(tmp_path, opening):
    """The finding: 5,000 nested `[` gave a RecursionError traceback."""
    depth = 5000 if opening != "- " else 200  # block style: each level is indented further
    if opening == "- ":
        text = "name:\n" + "".join(" " * (2 * i + 2) + "-\n" for i in range(depth))
    else:
        text = "name: " + opening * depth + "x" + ("]" if opening == "[" else "}") * depth + "\n"
    err, nodes = load(tmp_path, text)
    assert err is not None and f"nested more than {yaml_files.MAX_DEPTH} levels deep" in str(err)
    assert err.line is not None
    assert nodes <= 2 * yaml_files.MAX_DEPTH + 3  # refused on the way down, nothing below it composed


def test_nesting_up_to_the_limit_is_read(tmp_path):
    depth = yaml_files.MAX_DEPTH - 1  # the document's mapping is the first level
    err, _ = load(tmp_path, "name: " + "[" * depth + "x" + "]" * depth + "\n")
    assert err is not None and "nested" not in str(err) and "name" in str(err)  # the schema's complaint


def test_too_many_values_are_refused(tmp_path):
    items = ", ".join("x" for _ in range(yaml_files.MAX_NODES))
    err, nodes = load(tmp_path, f"name: p\ntitle: t\nrubric: r\ncategories: {{x: y}}\nallowances: [{items}]\n")
    assert err is not None and err.line == 5 and f"more than {yaml_files.MAX_NODES:,} values" in str(err)
    assert nodes == yaml_files.MAX_NODES + 1


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    err, _ = load(tmp_path, "name: p\ntitle: t\nrubric: r\ncategories: {x: y}\ntitle: u\n")
    assert str(err) == (
        f"{tmp_path / 'file.yaml'}:5: title: duplicate key 'title' (first given on line 2; "
        "YAML would silently keep the last)"
    )


def test_duplicate_keys_are_found_nested_and_as_values(tmp_path):
    """`1` and `01` are one key once read, as are a quoted and a plain spelling."""
    err, _ = load(tmp_path, POLICY.replace("{x: y}", "\n  x: y\n  z: w\n  'x': v"))
    assert err is not None and err.line == 7 and err.where == "categories.x"
    err, _ = load(tmp_path, "name: x\nturns:\n  - user: hi\n    expect: {1: a, 01: b}\n", Scenario)
    assert err is not None and err.line == 4 and err.where == "turns.0.expect.1" and "duplicate key '1'" in str(err)


def test_a_value_yaml_cannot_build_is_a_clean_error(tmp_path):
    """`2024-13-45` is read as a date, which PyYAML fails on with a ValueError (a traceback before)."""
    err, _ = load(tmp_path, "name: x\nturns:\n  - user: 2024-13-45\n", Scenario)
    assert err is not None and err.line == 3 and "cannot read this value: month must be in 1..12" in str(err)


def test_the_shipped_files_are_within_the_bounds():
    for path in [*REPO.glob("agents/*.yaml"), *REPO.glob("config/**/*.yaml"), *REPO.glob("scenarios/*.yaml")]:
        yaml_files.read_yaml(path)
