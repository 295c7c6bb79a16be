"""The package's structure, read from its source with `ast`: no import cycles between its modules; and the tests'
one way to start a process."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "shadow_addon"

# Cycles through imports made for type annotations only (under `if TYPE_CHECKING:`), still to be untangled: the
# sender's pool holds both kinds of connection, and each connection names its pool's type. A runtime cycle is
# never allowed.
TYPE_ONLY_CYCLES_ALLOWED = [{"shadow_addon.connection", "shadow_addon.h2sender", "shadow_addon.sender"}]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path, modules: dict[str, Path], type_only: bool = True) -> set[str]:
    """The package's modules that module `name` imports (anywhere in it: inside functions too); `type_only`: with
    the imports under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped: set[int] = set()
    if not type_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _type_checking(node):
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                if f"{module}.{a.name}" in modules:
                    found.add(f"{module}.{a.name}")  # `from . import routing`: the module itself
                elif module in modules:
                    found.add(module)
    found.discard(name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            w = next(edges, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_cycles_are_found(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []
    modules = {"p": Path("p/__init__.py"), "p.a": Path("p/a.py"), "p.b": Path("p/b.py")}
    tree = "from . import b\nif TYPE_CHECKING:\n    from .b import X\ndef f():\n    from p.a import y\n"
    path = tmp_path / "a.py"
    path.write_text(tree)
    assert imports("p.a", path, modules) == {"p.b"}
    assert imports("p.a", path, modules, type_only=False) == {"p.b"}
    path.write_text("if TYPE_CHECKING:\n    from .b import X\nfrom . import c\n")
    assert imports("p.a", path, modules) == {"p.b", "p"}
    assert imports("p.a", path, modules, type_only=False) == {"p"}


def test_the_package_has_no_import_cycles() -> None:
    modules = _modules()
    assert {"shadow_addon.shadow", "shadow_addon.replay", "shadow_addon.compare.pairing"} <= set(modules)
    runtime = {n: imports(n, p, modules, type_only=False) for n, p in modules.items()}
    assert cycles(runtime) == [], "modules that import each other at run time"
    every = {n: imports(n, p, modules) for n, p in modules.items()}
    left = [c for c in cycles(every) if c not in TYPE_ONLY_CYCLES_ALLOWED]
    assert left == [], "modules that import each other (type annotations count: give one side a Protocol)"


def test_comparison_does_not_import_the_transport() -> None:
    modules = _modules()
    transport = {
        "shadow_addon.sender",
        "shadow_addon.h2sender",
        "shadow_addon.h2session",
        "shadow_addon.h2answer",
        "shadow_addon.reader",
    }
    for name, path in modules.items():
        if name.startswith("shadow_addon.compare"):
            assert not imports(name, path, modules) & transport, name


def test_tests_do_not_import_from_other_test_modules() -> None:
    """Shared helpers live in support modules (support.py, grpcsupport.py), so a test module runs on its own."""
    tests = Path(__file__).resolve().parent
    scripts = tests.parent / "scripts"
    sources = [*tests.glob("*.py"), *(p for p in scripts.rglob("*") if p.is_file() and p.suffix in ("", ".py"))]
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == "" and not text.startswith("#!/usr/bin/env python"):
            continue  # a shell script
        for node in ast.walk(ast.parse(text)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0].startswith("test_")], f"{path.name} imports {names}"


# How a module could start a process other than through support.py's helpers (`run_process`, `spawn`, `started`).
PROCESS_STARTERS = {
    "subprocess": {"Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
    "os": {"system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty", "spawnv", "spawnvp"},
}
PROCESS_HELPERS_AT = {"support.py", "conftest.py"}  # the helpers, and the guard that refuses unmarked process starts


def process_starts(source: str) -> list[str]:
    """`module.name` for every use (call, annotation or import) of a process starter in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.attr in PROCESS_STARTERS.get(node.value.id, ()) or node.attr.startswith("create_subprocess"):
                found.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in PROCESS_STARTERS:
            found += [f"{node.module}.{a.name}" for a in node.names if a.name in PROCESS_STARTERS[node.module]]
    return found


def test_process_starts_are_found() -> None:
    source = (
        "import asyncio, os, subprocess\nfrom subprocess import run\n"
        "def f(p: subprocess.Popen[bytes]) -> subprocess.CompletedProcess[str]:\n"
        "    subprocess.run(['true'])\n    os.system('true')\n"
        "    return asyncio.create_subprocess_exec('true')\n"
    )
    assert sorted(process_starts(source)) == [
        "asyncio.create_subprocess_exec",
        "os.system",
        "subprocess.Popen",
        "subprocess.run",
        "subprocess.run",
    ]
    assert process_starts("import subprocess\nx: subprocess.CompletedProcess[str]\nsubprocess.TimeoutExpired\n") == []


def test_tests_start_processes_only_through_support() -> None:
    """One way to start a process: support.py's helpers run it in a session of its own, bounded, and stop its
    whole group; a test with its own pipes and waits is where a stuck read or a leftover process comes from."""
    tests = Path(__file__).resolve().parent
    for path in sorted(tests.glob("*.py")):
        if path.name not in PROCESS_HELPERS_AT:
            starts = process_starts(path.read_text(encoding="utf-8"))
            assert not starts, f"{path.name} starts processes with {starts}: use support.run_process/spawn/started"


def test_every_subpackage_is_installed() -> None:
    """`pip install .` installs only the packages pyproject.toml lists: a new subpackage left out of it works from
    a checkout and is missing from an installed mitmshadow."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(PACKAGE.parent).parts)
        for p in PACKAGE.rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found == listed
