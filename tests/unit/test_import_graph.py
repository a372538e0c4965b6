"""svdablate's modules import one another without a circle: every absolute import, at the top of a
module or inside a function (or under TYPE_CHECKING), read from the source's syntax tree."""

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "svdablate"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """svdablate module → the svdablate modules it imports (`from a.b import c` names the module
    a.b.c when there is one, else a.b)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}" in modules
                    else node.module
                    for a in node.names
                ]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert graph.number_of_edges() > 100  # the walk found the imports
    circles = [" → ".join([*c, c[0]]) for c in nx.simple_cycles(graph)]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_a_circle_is_found(tmp_path, monkeypatch):
    """The check can fail: two modules importing each other (one inside a function) are caught."""
    package = tmp_path / "svdablate"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from svdablate.b import g\n")
    (package / "b.py").write_text("def g():\n    from svdablate import a\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", package)
    assert list(nx.simple_cycles(import_graph())) != []


def test_the_cli_starts_without_torch_ray_or_mlflow():
    """`svdablate --help`, `status` and `report` start in a fraction of a second: the commands'
    modules import torch, Ray and MLflow only in the commands that use them."""
    program = (
        "import sys, svdablate.cli; print(sorted({'torch', 'ray', 'mlflow'} & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "[]"
