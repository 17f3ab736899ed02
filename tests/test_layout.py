"""The house's shape: imports point one way (the import-linter contract in pyproject.toml), no module imports
another that imports it back (a graph pass over every `import` in the rooms), and the commands that only read
text (`ssp --help`, `ssp config`) import neither Ray nor torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("ssp", "serve", "trainer", "actors", "cluster")


def test_import_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency (pyproject.toml)"
    r = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 kept, 0 broken" in r.stdout, r.stdout[-3000:]


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (at any depth of the file, lazy imports included)."""
    mods = {}
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            graph[m].update(n for n in names if n in mods and n != m)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 60
    assert circles(graph) == []
    # the pass finds one when there is one
    graph["cluster.state"].add("cluster.local")  # local -> state already: a circle (via env too)
    assert any({"cluster.local", "cluster.state"} <= set(c) for c in circles(graph))


def test_text_only_commands_import_neither_ray_nor_torch():
    code = ("import sys\nfrom ssp.cli import main\n"
            "for argv in (['--help'], ['config', '--config', 'configs/tiny-cpu.yaml', 'rl.mode=bad']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('LOADED', sorted(m for m in ('ray', 'torch', 'vllm', 'deepspeed') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "LOADED []" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])
    assert "rl.mode" in r.stderr  # the bad value was refused, naming the key
