"""The floors of docs/architecture.md: every import runs down, none in a circle.

A module may import one on a lower floor, or one of its own package on its
floor (the services call each other); never one above it. Read from the source,
so an import added inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kinwise_auth"

# Bottom to top; a module belongs to the first entry that is it or its package.
FLOORS: list[tuple[str, ...]] = [
    ("conf", "errors", "crypto", "normalization", "signals", "models", "tokens"),
    (
        "audit",
        "ratelimit",
        "publishing",
        "maintenance",
        "parsers",
        "exceptions",
        "site",
    ),
    ("serializers", "outbox", "relying_party"),
    ("services.secrets", "services.meta"),
    ("services",),
    ("emails", "backends", "authentication"),
    ("views", "tasks", "admin", "management", "receivers"),
    ("browser",),
    ("openapi", "urls", "checks"),
    ("apps",),
]


def floor_of(module: str) -> int:
    for floor, names in enumerate(FLOORS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return floor
    raise AssertionError(f"{module} is on no floor: add it to FLOORS and the docs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def exists(module: str) -> bool:
    target = PACKAGE.joinpath(*module.split("."))
    return target.is_dir() or target.with_suffix(".py").is_file()


def imports_of(path: Path) -> set[str]:
    """The package's modules ``path`` imports (``from . import x`` names ``x``)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif (node.module or "").startswith("kinwise_auth"):
                target = (node.module or "").removeprefix("kinwise_auth").lstrip(".")
            else:
                continue
            for alias in node.names:
                named = f"{target}.{alias.name}".lstrip(".")
                found.add(named if exists(named) else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kinwise_auth."):
                    found.add(alias.name.removeprefix("kinwise_auth."))
    found.discard(module)
    found.discard("")
    return found


def graph() -> dict[str, set[str]]:
    return {
        module_name(path): imports_of(path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts
    }


def test_every_import_runs_down_a_floor() -> None:
    upward = []
    for module, imported in graph().items():
        if not module:
            continue
        for target in imported:
            own, theirs = floor_of(module), floor_of(target)
            same_package = module.split(".")[0] == target.split(".")[0]
            if theirs > own or (theirs == own and not same_package):
                upward.append(f"{module} (floor {own}) imports {target} ({theirs})")
    assert not upward, "\n".join(upward)


def test_no_module_imports_one_that_imports_it_back() -> None:
    edges = graph()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in edges.get(module, ()):
            if target in path:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif len(path) < len(edges):
                visit(target, [*path, target])

    for module in edges:
        visit(module, [module])
    assert not circles, "\n".join(sorted(set(circles)))


def test_module_names_say_their_job() -> None:
    assert not [p for p in PACKAGE.rglob("*.py") if p.stem in {"utils", "helpers"}]


@pytest.mark.parametrize(
    ("module", "imports"),
    [
        ("outbox", {"publishing"}),
        ("tasks", {"emails", "outbox"}),
        ("emails", {"outbox", "services.secrets"}),
    ],
)
def test_the_reader_finds_the_imports_it_judges(module: str, imports: set[str]) -> None:
    # Guards the guard: a parser that found nothing would pass the two above.
    assert imports <= graph()[module]
