"""Read a user's YAML file and validate it against a schema, with errors that name file, line and field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from chaperone.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

MAX_FILE_BYTES = 2 << 20  # configuration is small; a huge file is a mistake, not a config


def _line_index(node: yaml.Node, path: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    """Map every key path in the document to its 1-based line."""
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
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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
