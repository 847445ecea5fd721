"""The gateway's layers import downwards only: storage knows nothing of jobs, APIs or security."""

from __future__ import annotations

import ast
from pathlib import Path

import itk_gateway

PACKAGE = Path(itk_gateway.__file__).parent
# Layer -> packages it must never import.
FORBIDDEN = {
    "storage": ("itk_gateway.jobs", "itk_gateway.api", "itk_gateway.security", "itk_gateway.dispatch"),
    "jobs/runner": ("itk_gateway.api", "itk_gateway.jobs.service"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_lower_layers_do_not_import_higher_ones() -> None:
    problems = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for module in imported_modules(path):
                if module.startswith(forbidden):
                    problems.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not problems, problems
