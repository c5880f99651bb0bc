"""The package's shape: small modules, and a stated reason where one is not."""

from __future__ import annotations

import ast
from pathlib import Path

import dcgan

PACKAGE = Path(dcgan.__file__).parent
LIMIT = 400


def test_every_module_over_the_limit_says_why_in_its_docstring():
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") <= LIMIT:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if f"Over {LIMIT} lines on purpose:" not in doc:
            unexplained.append(f"{path.relative_to(PACKAGE)} ({text.count(chr(10))} lines)")
    assert not unexplained, unexplained
