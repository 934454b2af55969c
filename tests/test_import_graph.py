"""The import graph of hybridnas/ has no cycles and no private names crossing packages.

Data flows one way (spec -> space -> search -> run directory -> export /
dashboard); a cycle or a reach into another package's ``_private`` name is how
that direction erodes, so this test reads every module with ``ast`` and checks.
"""
from __future__ import annotations

import ast
from pathlib import Path

import hybridnas

ROOT = Path(hybridnas.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports() -> list[tuple[str, str, str | None]]:
    """(importer, imported module, imported name or None) for every import in hybridnas/."""
    mods = _modules()
    out = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out += [(name, a.name, None) for a in node.names if a.name.startswith("hybridnas")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_pkg, node)
                if not target.startswith("hybridnas"):
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    out.append((name, sub, None) if sub in mods else (name, target, a.name))
    return out


def _package(module: str) -> str:
    """The room a module belongs to: ``hybridnas.search.runner`` -> ``hybridnas.search``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def test_no_cycles_between_packages():
    edges: dict[str, set[str]] = {}
    for src, dst, _ in _imports():
        a, b = _package(src), _package(dst)
        if a != b and b != "hybridnas":  # the top-level facade imports lazily, for users
            edges.setdefault(a, set()).add(b)
    assert _cycles(edges) == []


def test_no_cycles_between_modules():
    edges: dict[str, set[str]] = {}
    for src, dst, _ in _imports():
        # a module importing its own package (``from . import x``) is how Python
        # packages work, not a cycle of rooms
        if src != dst and not src.startswith(dst + "."):
            edges.setdefault(src, set()).add(dst)
    assert _cycles(edges) == []


def test_no_private_names_across_packages():
    """``hybridnas.room._mod`` and ``_name`` stay inside their room;
    ``hybridnas._mod`` (the root package's helpers) is shared by all rooms."""
    bad = []
    for src, dst, name in _imports():
        if _package(src) == _package(dst):
            continue
        inner = dst.split(".")[2:]  # below the room
        if any(map(_private, inner)) or (name is not None and _private(name)):
            bad.append(f"{src} imports {dst}{'.' + name if name else ''}")
    assert bad == []


def test_the_checks_can_fail():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _package("hybridnas.search.runner") == "hybridnas.search"


#: Rooms that must never import another: data flows spec -> space -> search ->
#: run directory -> export / dashboard, and plug-ins register themselves.
FORBIDDEN = {
    "hybridnas.search": {"hybridnas.export", "hybridnas.dashboard", "hybridnas.temporal",
                         "hybridnas.supernet"},
    # the one-shot search reaches export and dashboard through SearchHooks, as search does
    "hybridnas.supernet": {"hybridnas.export", "hybridnas.dashboard", "hybridnas.temporal"},
    "hybridnas.rundir": {"hybridnas.search", "hybridnas.export", "hybridnas.dashboard"},
    "hybridnas.builder": {"hybridnas.temporal"},
    "hybridnas.data": {"hybridnas.temporal"},
    "hybridnas.spec": {"hybridnas.builder", "hybridnas.temporal"},
}


def test_data_flows_one_way():
    bad = sorted({f"{_package(s)} -> {_package(d)}" for s, d, _ in _imports()
                  if _package(d) in FORBIDDEN.get(_package(s), ())})
    assert bad == []


#: Private attributes of Optuna objects (``study._storage``, ``trial._trial_id``):
#: they change between Optuna releases; ``study.tell(number, ...)``,
#: ``study.get_trials`` and ``trial.number`` are the public routes.
OPTUNA_PRIVATE = {"_storage", "_trial_id", "_study_id", "_cached_frozen_trial"}


def _private_attribute_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of each ``x.<private Optuna attribute>`` in ``tree``,
    ``self.<name>`` (a class's own attribute) excepted."""
    return [(node.lineno, node.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in OPTUNA_PRIVATE
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")]


def test_no_private_optuna_attributes():
    bad = []
    for name, path in _modules().items():
        for line, attr in _private_attribute_uses(ast.parse(path.read_text(), str(path))):
            bad.append(f"{name}:{line} uses .{attr}")
    assert bad == []
    # the check finds what it looks for
    caught = ast.parse("study._storage.set_trial_state_values(t._trial_id, 1)\nself._storage = 1")
    assert sorted(a for _, a in _private_attribute_uses(caught)) == ["_storage", "_trial_id"]
