"""Imports run one way: backends and router (each imports nothing of the project) <- fleet <-
gateway (docs/architecture.md, README "Layout").

Every import statement of each package, at module level or inside a function, is read with
``ast``; a package may import only the project packages listed for it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"backends", "router", "fleet", "gateway", "deploy"}
ALLOWED = {
    "backends": set(),
    "router": set(),
    "fleet": {"backends", "router"},
    "gateway": {"backends", "router", "fleet"},
}


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - ALLOWED[package] - {package})
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}
