"""The layering rules: the host never imports a plugin; plugins use only framework's public face."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_framework_never_imports_plugins():
    offenders = [(str(p.relative_to(ROOT)), m) for p in (ROOT / "framework").rglob("*.py")
                 for m in imports(p) if m == "plugins" or m.startswith("plugins.")]
    assert offenders == []


def test_plugins_import_only_the_public_face():
    allowed = {"framework", "framework.testing"}
    offenders = [(str(p.relative_to(ROOT)), m) for p in (ROOT / "plugins").rglob("*.py") if "tests" not in p.parts
                 for m in imports(p) if (m == "framework" or m.startswith("framework.")) and m not in allowed]
    assert offenders == []
