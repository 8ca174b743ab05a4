"""The architecture the tree shows is the one the imports have (scripts/import_graph.py reads them)."""

from __future__ import annotations

import importlib.util

from tests.support.projects import REPO

FRONT_DOORS = {"terminal", "review", "eval", "serve"}
# What each capability package may import besides the root's shared modules (errors, signals, ...).
ALLOWED = {
    "config": set(),
    "audit": set(),
    "models": {"config", "audit"},
    "engine": {"config", "audit", "models", "reviewer_head"},
    # The reviewer's judgement head (issue 14): below the engine, which reads it.
    "reviewer_head": {"config", "audit", "models"},
    "terminal": {"engine", "config", "audit", "models"},
    "review": {"engine", "config", "audit"},
    "eval": {"engine", "config", "audit", "models"},
    "serve": {"engine", "config", "audit", "models"},
}


def _graph() -> dict[str, set[str]]:
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    arrows = module.graph(REPO / "chaperone")
    assert module.circles(arrows) == [], "import circles"
    return arrows


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else "root"


def test_no_import_circles_and_every_package_documented():
    arrows = _graph()
    for package in ALLOWED:
        init = REPO / "chaperone" / package / "__init__.py"
        doc = init.read_text().strip()
        assert doc.startswith('"""') and len(doc) > 80, f"{init}: needs a docstring saying what the package is"
    assert f"chaperone.{next(iter(ALLOWED))}" in arrows


def test_packages_import_only_what_their_floor_allows():
    wrong = []
    for module, targets in _graph().items():
        mine = _package(module)
        if mine == "root":
            continue
        for target in targets:
            theirs = _package(target)
            if theirs not in (mine, "root") and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_front_doors_never_import_each_other_nor_the_root_cli():
    arrows = _graph()
    assert not [m for m, targets in arrows.items() if "chaperone.cli" in targets]
    crossing = [
        f"{m} -> {t}"
        for m, targets in arrows.items()
        for t in targets
        if _package(m) in FRONT_DOORS and _package(t) in FRONT_DOORS and _package(t) != _package(m)
    ]
    assert crossing == []


def test_shared_root_modules_import_no_front_door():
    arrows = _graph()
    for module, targets in arrows.items():
        if _package(module) == "root" and module != "chaperone.cli":
            assert not {_package(t) for t in targets} & FRONT_DOORS, module
