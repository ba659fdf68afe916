"""The core packages hold no SQL: every statement lives in a DB class of ``netbroker.db``.

A core module may name the connection types (``sqlalchemy.engine``) and catch
the database's exceptions (``sqlalchemy.exc``); it may not import the schema's
tables nor build statements with ``sqlalchemy`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import netbroker

CORE = ("network", "clouds", "registry", "workload", "placement", "accounts")
ALLOWED_SQLALCHEMY = ("sqlalchemy.engine", "sqlalchemy.exc")
ROOT = Path(netbroker.__file__).parent


def _forbidden(name: str) -> bool:
    """Whether a core module may not import this dotted name."""
    def within(prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")
    if within("netbroker.db.schema"):
        return True
    return within("sqlalchemy") and not any(within(ok) for ok in ALLOWED_SQLALCHEMY)


def _offences(path: Path) -> list[str]:
    """Each forbidden import of one module, as ``module: name``."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    found = []
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import: resolved against the module's package
                parent = package[:len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [f"{module} imports {name}" for name in names if _forbidden(name)]
    return sorted(set(found))


def test_core_modules_import_no_schema_and_no_sqlalchemy() -> None:
    modules = sorted(p for pkg in CORE for p in (ROOT / pkg).rglob("*.py"))
    assert modules, "no core modules found"
    offences = [o for p in modules for o in _offences(p)]
    assert not offences, "SQL in the core modules:\n" + "\n".join(offences)
