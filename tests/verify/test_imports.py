"""What auditors rely on: the verifier needs nothing but Python to read and run
(``docs/ledger-format.md``, the reference implementation)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Final

import amply.verify

PACKAGE: Final = Path(amply.verify.__file__).parent
# The one dependency outside the standard library, for Ed25519 signatures, and the one module
# that may import it.
ED25519_LIBRARY: Final = ("cryptography", "checkpoint.py")


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add("amply.verify" if node.level else str(node.module))
    return modules


def test_the_verifier_imports_only_the_standard_library() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert {path.name for path in files} >= {"__init__.py", "crypto.py", "chain.py"}
    for path in files:
        for module in _imports(path):
            top = module.partition(".")[0]
            if module == "amply.verify" or module.startswith("amply.verify."):
                continue
            if (top, path.name) == ED25519_LIBRARY:
                continue
            assert top in sys.stdlib_module_names, f"{path.name} imports {module}"
