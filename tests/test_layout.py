"""The folders are the data flow: each top-level package imports only the ones before it in README's layer list."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _packages() -> set[str]:
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}


def _imported_modules(source: Path) -> set[str]:
    """Every absolute import in the file, deferred ones inside functions included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the files that import it."""
    packages = _packages()
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for package in packages:
        for source in sorted((ROOT / package).rglob("*.py")):
            for module in _imported_modules(source):
                target = module.split(".")[0]
                if target in packages and target != package:
                    graph[package][target].append(str(source.relative_to(ROOT)))
    return graph


def readme_layers() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^Layers, each importing only from those before it: (.+)\.$", text, re.MULTILINE)
    assert match, "README's architecture section lists the layers"
    return [name.strip(" `") for name in match.group(1).split(",")]


def test_readme_lists_every_package_once() -> None:
    layers = readme_layers()
    assert sorted(layers) == sorted(_packages())


def test_each_package_imports_only_earlier_layers() -> None:
    rank = {name: i for i, name in enumerate(readme_layers())}
    upward = [
        f"{package} -> {target} ({', '.join(sorted(set(files)))})"
        for package, targets in import_graph().items()
        for target, files in targets.items()
        if rank[target] >= rank[package]
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_core_imports_nothing_of_the_project() -> None:
    assert dict(import_graph().get("core", {})) == {}


def test_the_layer_check_sees_deferred_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from stages.job import run\n    import engine.lane\n")
    assert _imported_modules(source) == {"stages.job", "engine.lane"}
