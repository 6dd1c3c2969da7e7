"""The import graph of ``retention/`` and ``audit/`` keeps the layers of docs/architecture.md.

Every module of the two apps (migrations aside) is parsed with ``ast``, never imported, and
every import statement in it, at module level or inside a function, becomes an edge to the
module of ours it names (``from retention.models import Member`` names ``retention.models``;
relative imports are resolved). A package is the first two dotted parts of a module's name
(``retention.wipes.runner`` is in ``retention.wipes``; ``retention.errors`` is its own).
Each test prints the files and lines that break its rule, so a failure says what to fix.

Rules kept here:
- no import cycle between files, nor between packages;
- ``audit`` imports nothing from ``retention`` (it is a leaf app);
- ``retention.api`` never imports ``retention.web``;
- ``retention.models`` imports no other package of ``retention`` (``audit`` it may);
- ``retention.records`` imports none of the concerns built on records;
- each package imports only packages in its own layer or below (``LAYERS``), and ``audit``;
- no file in ``retention/`` is over 500 lines, migrations aside;
- app code imports our own modules at module level. An import of ``retention`` or
  ``audit`` inside a function must say why, in a comment on the same line or in the comment
  lines directly above it (or above the block of imports it belongs to), written
  ``# import here: <the cycle or start-up cost that forces it>``; a comment naming the
  import ``cycle`` it breaks is accepted too (both matched without regard to case).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("retention", "audit")
MAX_LINES = 500

# Low to high: a package may import packages of its own layer or of a layer below, and
# ``audit``. Peers in one layer may import each other (``policies`` reads ``models``);
# the rules above say where that is not enough.
LAYERS: list[tuple[str, ...]] = [
    ("retention", "models", "errors", "policies", "dates"),  # "retention": the root's docstring
    ("records",),
    ("jobs",),  # the job-lease helper only: job functions live beside the code they run
    ("access",),
    ("notifications",),
    ("wipes",),
    ("exports",),
    ("governance",),
    ("rules",),
    ("reports",),
    (
        "api",
        "web",
        "templatetags",
        "admin",
        "admin_site",
        "demo",
        "bench",
        "management",
        "cron",
        "urls",
        "settings",
        "apps",
        "asgi",
        "wsgi",
    ),
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}

# What the record store may not know about: everything built on top of it.
ABOVE_RECORDS = ("governance", "wipes", "rules", "exports", "reports", "api", "web")

MARKER = re.compile(r"import here|cycle", re.IGNORECASE)


@dataclass(frozen=True)
class Edge:
    source: str  # module
    target: str  # module
    path: Path
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = " (inside a function)" if self.in_function else ""
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.source} -> {self.target}{where}"


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts or "tests" in rel.parts:
                continue
            found[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return found


def resolve(name: str) -> str | None:
    """The longest module of ours that ``name`` starts with."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def layer_name(package: str) -> str:
    return package if package == "retention" else package.removeprefix("retention.")


def _function_level(tree: ast.AST) -> set[int]:
    """The ids of the import nodes that sit inside a function or method."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)}
    return inside


@cache
def edges() -> tuple[Edge, ...]:
    found: list[Edge] = []
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nested = _function_level(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [resolve(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [resolve(f"{base}.{a.name}") or resolve(base) for a in node.names]
            else:
                continue
            for target in dict.fromkeys(t for t in targets if t and t != name):
                found.append(Edge(name, target, path, node.lineno, id(node) in nested))
    return tuple(found)


def graph(level=lambda module: module) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for edge in edges():
        source, target = level(edge.source), level(edge.target)
        out.setdefault(source, set())
        if source != target:
            out[source].add(target)
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(g):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def report(title: str, problems: list[str]) -> str:
    return f"{title} ({len(problems)}):\n" + "\n".join(f"  {p}" for p in problems)


def cycle_report(level) -> list[str]:
    lines = []
    for component in cycles(graph(level)):
        members = set(component)
        lines.append("cycle: " + " <-> ".join(component))
        lines += [
            f"    {edge}"
            for edge in edges()
            if level(edge.source) in members
            and level(edge.target) in members
            and level(edge.source) != level(edge.target)
        ]
    return lines


# --- the tests ------------------------------------------------------------------------------


def test_the_graph_sees_both_apps():
    names = modules()
    assert "retention.models" in names and "audit.models" in names
    assert any(edge.target.startswith("audit.") for edge in edges())


def test_no_import_cycle_between_files():
    problems = cycle_report(lambda module: module)
    assert not problems, report(
        "file-level import cycles, with the imports that make them", problems
    )


def test_no_import_cycle_between_packages():
    problems = cycle_report(package_of)
    assert not problems, report(
        "package-level import cycles, with the imports that make them", problems
    )


def test_audit_imports_nothing_from_retention():
    problems = [
        str(e)
        for e in edges()
        if e.source.split(".")[0] == "audit" and e.target.split(".")[0] == "retention"
    ]
    assert not problems, report("audit imports retention", problems)


def test_the_api_never_imports_the_web_pages():
    problems = [
        str(e)
        for e in edges()
        if package_of(e.source) == "retention.api" and package_of(e.target) == "retention.web"
    ]
    assert not problems, report("retention.api imports retention.web", problems)


def test_models_import_no_other_retention_package():
    problems = [
        str(e)
        for e in edges()
        if package_of(e.source) == "retention.models"
        and e.target.split(".")[0] == "retention"
        and package_of(e.target) != "retention.models"
    ]
    assert not problems, report("retention.models imports other retention packages", problems)


def test_records_import_nothing_built_on_them():
    forbidden = {f"retention.{name}" for name in ABOVE_RECORDS}
    problems = [
        str(e)
        for e in edges()
        if package_of(e.source) == "retention.records" and package_of(e.target) in forbidden
    ]
    assert not problems, report(
        f"retention.records imports one of {', '.join(sorted(ABOVE_RECORDS))}", problems
    )


def test_every_package_has_a_layer():
    packages = {layer_name(package_of(m)) for m in modules() if m.split(".")[0] == "retention"}
    missing = sorted(packages - set(LAYER_OF))
    assert not missing, report(
        "retention packages missing from LAYERS in tests/test_architecture.py", missing
    )


def test_each_package_imports_only_its_layer_and_below():
    problems = []
    for e in edges():
        if e.source.split(".")[0] != "retention" or e.target.split(".")[0] != "retention":
            continue  # audit is below every package of retention; its own rule is above
        source, target = layer_name(package_of(e.source)), layer_name(package_of(e.target))
        if source in LAYER_OF and target in LAYER_OF and LAYER_OF[target] > LAYER_OF[source]:
            problems.append(
                f"{e}   [{source} (layer {LAYER_OF[source]}) imports {target} "
                f"(layer {LAYER_OF[target]})]"
            )
    assert not problems, report("imports of a higher layer", problems)


def test_no_file_in_retention_is_over_500_lines():
    problems = []
    for path in sorted((ROOT / "retention").rglob("*")):
        if not path.is_file() or "migrations" in path.parts or "__pycache__" in path.parts:
            continue
        lines = len(path.read_bytes().splitlines())
        if lines > MAX_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not problems, report(f"files over {MAX_LINES} lines", problems)


def _says_why(source_lines: list[str], line: int) -> bool:
    """Whether the import on ``line`` (1-based) carries the marker: in a comment on its own
    line, or in the block of comment lines directly above it or above the run of imports it
    belongs to (one comment explains a block of imports)."""
    if "#" in source_lines[line - 1] and MARKER.search(source_lines[line - 1].split("#", 1)[1]):
        return True
    above = line - 2
    while above >= 0 and source_lines[above].lstrip().startswith(("from ", "import ")):
        above -= 1
    while above >= 0 and source_lines[above].lstrip().startswith("#"):
        if MARKER.search(source_lines[above]):
            return True
        above -= 1
    return False


def test_function_level_imports_of_our_modules_say_why():
    problems = []
    texts: dict[Path, list[str]] = {}
    for e in edges():
        if not e.in_function:
            continue
        lines = texts.setdefault(e.path, e.path.read_text(encoding="utf-8").splitlines())
        if not _says_why(lines, e.line):
            problems.append(f"{e}: {lines[e.line - 1].strip()}")
    assert not problems, report(
        "function-level imports without a '# import here: <why>' (or 'cycle') comment",
        sorted(set(problems)),
    )
