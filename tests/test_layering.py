"""The house rules that keep layers pointing one way, and the pinned public names."""

from __future__ import annotations

import ast
from pathlib import Path

import netbroker.api
import netbroker.db

ROOT = Path(__file__).resolve().parent.parent


def imported_roots(package: str) -> dict[str, set[str]]:
    """Map each module file of ``package`` to the top-level packages it imports."""
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = roots
    return out


def is_edge(module: str) -> bool:
    """The API, the CLI, the demo and the simulator are edges: they may call collectors
    and the dispatcher."""
    return module.startswith(("netbroker/api/", "netbroker/cli/", "netbroker/demo/",
                              "netbroker/sim/")) or (
        module in ("netbroker/service.py", "netbroker/drill.py"))


def test_core_never_imports_collectors_dispatcher_or_pilot() -> None:
    for module, roots in imported_roots("netbroker").items():
        if not is_edge(module):
            assert not roots & {"collectors", "dispatcher", "pilot"}, module
        assert "pilot" not in roots, module


def test_core_below_the_api_never_imports_fastapi() -> None:
    for module, roots in imported_roots("netbroker").items():
        if not is_edge(module):
            assert "fastapi" not in roots and "typer" not in roots, module


def test_pilot_needs_only_the_standard_library_and_requests() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"requests", "pilot", "__future__"}
    for module, roots in imported_roots("pilot").items():
        assert roots <= allowed, (module, roots - allowed)


def test_public_names_are_pinned() -> None:
    assert netbroker.db.__all__ == ["atomic_write", "begin_immediate", "create_db_engine",
                                    "current_revision", "database_key", "describe_url",
                                    "head_revision", "is_sqlite", "metadata", "schema_drift",
                                    "upgrade"]
    assert netbroker.api.__all__ == ["create_app", "create_app_from_settings"]
