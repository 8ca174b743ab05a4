"""Read a user's YAML file and validate it against a schema, with errors that name file, line and field.

A configuration file is read as a bounded tree: at most MAX_NODES values and MAX_DEPTH mappings and lists
inside each other, an alias (`*name`) counted as the value it stands for written out (an alias bomb is
refused at the alias that passes the bound, one that refers to itself always); no merge keys (`<<`); no
key twice in one mapping. Each is refused with one ConfigError naming the file and the line
(docs/configuration.md, "What a file may hold").
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from chaperone.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

MAX_FILE_BYTES = 2 << 20  # configuration is small; a huge file is a mistake, not a config
MAX_DEPTH = 32  # mappings and lists inside each other; the shipped files nest 5 deep
MAX_NODES = 20_000  # keys, values and list items in one file; the shipped files hold at most ~200
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """Raised while reading, at a place in the text; read_yaml turns it into a ConfigError."""

    def __init__(self, mark: Any, message: str, where: str | None = None):
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else None
        self.message = message
        self.where = where


def _shown(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader composing a bounded tree: nesting and size counted, each alias as the value it
    stands for written out (so an alias bomb is refused at the alias that passes the bound; a cycle is).

    The bounds are checked as the parser's events arrive (the parser keeps its own stack, it does not
    recurse), so a refused file costs no more than the text before the place refused."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0
        self.deepest = 0  # the deepest level reached within the node being composed
        self.nodes = 0  # nodes read, each alias as the nodes it stands for: the tree is never larger
        self.anchored: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, levels) of its value

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event, parent, index)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(event.start_mark, f"more than {MAX_NODES:,} values; configuration files are limited to that")
        anchor = getattr(event, "anchor", None)
        before, outer, self.deepest = self.nodes, self.deepest, self.depth
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self.depth += 1
            self.deepest = max(self.deepest, self.depth)
            if self.depth > MAX_DEPTH:
                raise _Refused(
                    event.start_mark,
                    f"nested more than {MAX_DEPTH} levels deep; configuration files are limited to that",
                )
            try:
                node = super().compose_node(parent, index)
            finally:
                self.depth -= 1
        else:
            node = super().compose_node(parent, index)
        if anchor is not None:  # what an alias of it stands for: its nodes and levels as if written out
            self.anchored[anchor] = (self.nodes - before + 1, self.deepest - self.depth)
        self.deepest = max(outer, self.deepest)
        return node

    def _alias(self, event: yaml.AliasEvent, parent: Any, index: Any) -> yaml.Node:
        """An alias counts as the value it stands for, written out: its nodes and its levels."""
        name = _shown(event.anchor)
        if event.anchor in self.anchors and event.anchor not in self.anchored:
            raise _Refused(event.start_mark, f"YAML alias '*{name}' refers to a value that holds it (a cycle)")
        nodes, levels = self.anchored.get(event.anchor, (0, 0))
        self.nodes += nodes
        if self.nodes > MAX_NODES:
            raise _Refused(
                event.start_mark,
                f"YAML alias '*{name}' makes the file more than {MAX_NODES:,} values once expanded; "
                "configuration files are limited to that",
            )
        if self.depth + levels > MAX_DEPTH:
            raise _Refused(
                event.start_mark,
                f"YAML alias '*{name}' nests the file more than {MAX_DEPTH} levels deep once expanded",
            )
        self.deepest = max(self.deepest, self.depth + levels)
        return super().compose_node(parent, index)  # an undefined alias: PyYAML's own error

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # a date that is none (2024-13-45), say
            raise _Refused(node.start_mark, f"cannot read this value: {exc}") from None


def _check_keys(loader: ConfigLoader, node: yaml.Node, path: tuple = ()) -> None:
    """No merge key, and no key twice in one mapping (YAML itself would keep the last one silently).

    Keys are compared as read (`1` and `01` are one key), as the mapping the schema gets would hold them."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                raise _Refused(key_node.start_mark, "merge keys (<<) are not allowed in configuration files")
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key (a list, say): the constructor refuses it later
                first = None
            else:
                if first is not None:
                    raise _Refused(
                        key_node.start_mark,
                        f"duplicate key '{_shown(key)}' (first given on line {first}; YAML would silently keep "
                        "the last)",
                        where=_shown(".".join(str(p) for p in (*path, key)), 120),
                    )
                seen[key] = key_node.start_mark.line + 1
            _check_keys(loader, value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(loader, item, (*path, i))


def _line_index(node: yaml.Node, path: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    """Map every key path in the document to its 1-based line (a tree: each node is visited once)."""
    index = {} if index is None else index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            index[(*path, key)] = key_node.start_mark.line + 1
            _line_index(value_node, (*path, key), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[(*path, i)] = item.start_mark.line + 1
            _line_index(item, (*path, i), index)
    return index


def parse(text: str) -> tuple[Any, yaml.Node | None, ConfigLoader]:
    """One YAML document read within the bounds: (data, its node tree, the loader that read it).

    Raises _Refused or yaml.YAMLError."""
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, loader
        _check_keys(loader, node)
        return loader.construct_document(node), node, loader
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse one YAML document safely; return the data and a key-path → line index."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "file not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(path, f"file is {size:,} bytes; configuration files are limited to {MAX_FILE_BYTES:,}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text (byte {exc.start}); expected a YAML file") from None
    if "\x00" in text:
        raise ConfigError(path, "contains NUL bytes; expected a YAML text file")
    try:
        data, node, _ = parse(text)
    except _Refused as exc:
        raise ConfigError(path, exc.message, where=exc.where, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise ConfigError(path, f"YAML syntax error: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"YAML error: {exc}") from None
    if node is None:
        raise ConfigError(path, "file is empty; expected a YAML mapping")
    return data, _line_index(node)


def _describe(err: dict, model: type[BaseModel], loc: tuple) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        known = _known_fields(model, loc[:-1])
        hint = difflib.get_close_matches(key, known, n=1)
        msg = f"unknown field '{key}'"
        if hint:
            msg += f" (did you mean '{hint[0]}'?)"
        elif known:
            msg += f"; expected one of: {', '.join(sorted(known))}"
        return msg
    if kind == "missing":
        return "required field is missing"
    return err.get("msg", "invalid value")


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Best effort: the field names allowed at loc, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def validate(model: type[T], data: Any, path: Path, lines: dict[tuple, int] | None = None) -> T:
    """Validate data against model; the first error becomes a ConfigError naming file, line and field."""
    lines = lines or {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # pydantic puts union tags and validator names into loc; keep the parts that are real keys
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or (p in _flatten_keys(lines)))
        if err.get("type") in ("extra_forbidden", "missing") and err["loc"]:
            loc = (*loc, err["loc"][-1]) if (not loc or loc[-1] != err["loc"][-1]) else loc
        line = None
        for depth in range(len(loc), -1, -1):
            if loc[:depth] in lines:
                line = lines[loc[:depth]]
                break
        field = ".".join(str(p) for p in loc) or None
        more = len(exc.errors()) - 1
        message = _describe(err, model, loc)
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(path, message, where=field, line=line) from None


def _flatten_keys(lines: dict[tuple, int]) -> set:
    return {p for key in lines for p in key}


def load(model: type[T], path: Path) -> T:
    data, lines = read_yaml(path)
    return validate(model, data, path, lines)
