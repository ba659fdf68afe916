"""The house rules: every import of ours points down the layers, no two packages import
each other, and the public names are pinned.

The rules are read from the code's own imports, every one of them: at module level,
inside functions (lazy), relative, ``from netbroker import x`` and
``importlib.import_module("...")`` with a constant name. There is no list of
exceptions: a module that needs one is in the wrong room.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import netbroker.api
import netbroker.db

ROOT = Path(__file__).resolve().parent.parent
OURS = ("netbroker", "collectors", "dispatcher", "pilot")

# The ground floor, storage and the core areas, with what each may import besides
# itself (the "May import" line of each package's docstring says the same).
GROUND = "netbroker.common"
STORAGE = "netbroker.db"
CORE_MAY_IMPORT = {
    "netbroker.network": set(),
    "netbroker.accounts": set(),
    "netbroker.clouds": {"netbroker.network"},
    "netbroker.registry": {"netbroker.clouds", "netbroker.network"},
    "netbroker.workload": {"netbroker.clouds", "netbroker.registry", "netbroker.network"},
    "netbroker.placement": {"netbroker.workload", "netbroker.clouds", "netbroker.registry",
                            "netbroker.network"},
}
# The edges: they may import the core and below, and one another as long as no two
# of them import each other (checked below); never the pilot.
EDGES = {"netbroker.__main__", "netbroker.api", "netbroker.web", "netbroker.cli",
         "netbroker.demo", "netbroker.sim", "netbroker.plots", "netbroker.service",
         "netbroker.ops", "collectors", "dispatcher"}
# Web frameworks and the CLI toolkit belong to the edges that speak HTTP or a terminal.
EDGE_ONLY_LIBRARIES = {"fastapi", "starlette", "uvicorn", "typer", "rich", "jinja2"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The package a module lives in: ``netbroker.<room>`` or a top-level package.

    >>> unit_of("netbroker.workload.tasks"), unit_of("dispatcher.core")
    ('netbroker.workload', 'dispatcher')
    """
    parts = module.split(".")
    if parts[0] != "netbroker":
        return parts[0]
    return ".".join(parts[:2])


def imports_of(path: Path, root: Path = ROOT) -> tuple[set[str], set[str]]:
    """(our modules, third-party top-level names) that the file at ``path`` (under
    ``root``) imports, wherever in the file the import is."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    ours: set[str] = set()
    others: set[str] = set()

    def add(name: str) -> None:
        (ours if name.split(".")[0] in OURS else others).add(name)

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            add(target)
            if target in OURS:  # from netbroker import clouds: the module imported is a room
                for alias in node.names:
                    if alias.name != "*" and (root / target / alias.name).exists():
                        add(f"{target}.{alias.name}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node.args[0].value)
    return ours, {name.split(".")[0] for name in others}


def all_imports() -> dict[str, tuple[set[str], set[str]]]:
    out = {}
    for package in OURS:
        for path in (ROOT / package).rglob("*.py"):
            out[module_name(path)] = imports_of(path)
    return out


IMPORTS = all_imports()


def layer_rank(unit: str) -> int:
    """0 the ground floor (with the package root, which holds the version, and the
    sample data), 1 storage, 2 the core, 3 the edges."""
    if unit in (GROUND, "netbroker", "netbroker.data"):
        return 0
    if unit == STORAGE:
        return 1
    if unit in CORE_MAY_IMPORT:
        return 2
    return 3


def test_every_module_has_a_room() -> None:
    known = {GROUND, STORAGE, "netbroker", "netbroker.data", "pilot"} | set(
        CORE_MAY_IMPORT) | EDGES
    for module in IMPORTS:
        assert unit_of(module) in known, f"{module} is in no room this test knows"
    top = {p.stem for p in (ROOT / "netbroker").glob("*.py")}
    assert top == {"__init__", "__main__"}, f"loose modules at the top: {top}"


def test_every_room_says_what_it_may_import() -> None:
    rooms = {GROUND, STORAGE} | set(CORE_MAY_IMPORT) | EDGES
    for unit in rooms - {"netbroker.__main__"}:
        init = ROOT / unit.replace(".", "/") / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "may import" in doc.lower() or "an edge" in doc.lower(), unit


@pytest.mark.parametrize("module", sorted(IMPORTS))
def test_imports_point_down(module: str) -> None:
    unit = unit_of(module)
    ours, _ = IMPORTS[module]
    for target in ours:
        to = unit_of(target)
        if to == unit:
            continue
        if unit == "pilot":
            pytest.fail(f"{module} imports {target}: the pilot imports nothing of ours")
        assert to != "pilot", f"{module} imports the pilot ({target})"
        if layer_rank(unit) == 0:
            pytest.fail(f"{module} imports {target}: the ground floor imports nothing of ours")
        if layer_rank(unit) == 2:
            allowed = CORE_MAY_IMPORT[unit] | {STORAGE, GROUND}
            assert to in allowed, f"{module} ({unit}) imports {target}; it may import {allowed}"
        else:
            assert layer_rank(to) <= layer_rank(unit), (
                f"{module} (layer {layer_rank(unit)}) imports {target} "
                f"(layer {layer_rank(to)})")


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, (ours, _) in IMPORTS.items():
        for target in ours:
            if unit_of(target) != unit_of(module):
                graph[unit_of(module)].add(unit_of(target))
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as loop:
        pytest.fail(f"packages import each other: {' -> '.join(loop.args[1])}")
    assert GROUND in order and STORAGE in order


def test_frameworks_stay_at_the_edges() -> None:
    for module, (_, others) in IMPORTS.items():
        if layer_rank(unit_of(module)) < 3 and unit_of(module) != "pilot":
            assert not others & EDGE_ONLY_LIBRARIES, (module, others & EDGE_ONLY_LIBRARIES)


def test_pilot_needs_only_the_standard_library_and_requests() -> None:
    allowed = set(sys.stdlib_module_names) | {"requests", "__future__"}
    for module, (_, others) in IMPORTS.items():
        if unit_of(module) == "pilot":
            assert others <= allowed, (module, others - allowed)


def test_the_checker_sees_lazy_relative_and_room_imports(tmp_path: Path) -> None:
    """The checker itself: a lazy upward import, a relative one and a room imported by
    ``from netbroker import`` are all seen."""
    (tmp_path / "netbroker" / "db").mkdir(parents=True)
    (tmp_path / "netbroker" / "workload").mkdir()
    probe = tmp_path / "netbroker" / "db" / "probe.py"
    probe.write_text("from . import schema\nfrom netbroker import workload\n"
                     "def f():\n    from netbroker.api import app\n    return app\n")
    ours, _ = imports_of(probe, tmp_path)
    assert ours == {"netbroker.db", "netbroker", "netbroker.workload", "netbroker.api"}
    assert layer_rank(unit_of("netbroker.api")) > layer_rank(unit_of("netbroker.db.probe"))


def test_public_names_are_pinned() -> None:
    assert netbroker.db.__all__ == ["atomic_write", "begin_immediate", "create_db_engine",
                                    "current_revision", "database_key", "describe_url",
                                    "head_revision", "is_sqlite", "metadata", "schema_drift",
                                    "upgrade"]
    assert netbroker.api.__all__ == ["create_app", "create_app_from_settings"]
