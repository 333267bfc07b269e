"""The numpy golden and the torch reference are two references only if they share no code: no module
of one imports the other (shared facts live in cases/ or harness/)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [("backends/torch", "backends.numpy"), ("backends/numpy", "backends.torch")]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("folder, forbidden", PAIRS)
def test_references_do_not_import_each_other(folder, forbidden):
    modules = sorted((ROOT / folder).glob("*.py"))
    assert len(modules) >= 5                      # one per op at least: the scan saw the folder
    offenders = {m.name: sorted(n for n in _imports(m) if n == forbidden or n.startswith(forbidden + "."))
                 for m in modules}
    assert {k: v for k, v in offenders.items() if v} == {}
