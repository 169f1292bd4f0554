"""The console's packages are layers, and a module imports only from its own layer or lower ones.

Every `import` is read with `ast`, those inside functions included, so that a
lazy import cannot hide an upward one. The domain and everything below it import
no Flask: they take a SQLAlchemy session and can run without a request.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A package may import from its own layer and the ones before it.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("store",),
    ("domain",),
    ("jobs", "alerts"),
    ("http",),
    ("api", "web"),
    ("app",),
    ("server", "cli"),
]
NO_FLASK = {"core", "store", "domain", "jobs", "alerts"}
LAYER_OF = {package: rank for rank, names in enumerate(LAYERS) for package in names}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from console import store` imports the package console.store.
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "console" and parts[1] in LAYER_OF else None


def violations(root: Path) -> list[str]:
    """Every upward import, and every Flask import below the HTTP layers, under root/console."""
    found = []
    for path in sorted((root / "console").rglob("*.py")):
        here = layer(module_name(path, root))
        if here is None:
            continue
        for line, target in imported_modules(path, root):
            where = f"{path.relative_to(root)}:{line}"
            there = layer(target)
            if there is not None and LAYER_OF[there] > LAYER_OF[here]:
                found.append(f"{where}: {here} imports {target} from the higher layer {there}")
            if here in NO_FLASK and target.split(".")[0] == "flask":
                found.append(f"{where}: {here} imports flask")
    return found


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in (ROOT / "console").glob("*/__init__.py")}
    assert packages == set(LAYER_OF), f"packages without a layer, or layers without a package: {packages ^ set(LAYER_OF)}"


def test_no_module_imports_a_higher_layer():
    assert violations(ROOT) == []


def test_an_injected_upward_import_is_caught(tmp_path):
    for package in ("domain", "web"):
        (tmp_path / "console" / package).mkdir(parents=True)
        (tmp_path / "console" / package / "__init__.py").write_text("")
    (tmp_path / "console" / "domain" / "runs.py").write_text(
        "def view():\n    from console.web import render  # hidden in a function\n    import flask\n"
    )
    found = violations(tmp_path)
    assert len(found) == 2
    assert "console/domain/runs.py:2: domain imports console.web.render from the higher layer web" in found[0]
    assert "domain imports flask" in found[1]


def test_the_command_line_has_no_import_circle():
    modules = {module_name(p, ROOT): p for p in (ROOT / "console" / "cli").glob("*.py")}
    edges = {name: set() for name in modules}
    for name, path in modules.items():
        for _line, target in imported_modules(path, ROOT):
            for other in modules:
                if target == other or target.startswith(other + "."):
                    if other != name and other != "console.cli":
                        edges[name].add(other)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    circles = [name for name in modules if reaches(name, name, set())]
    assert modules and not circles, f"import circle through {circles}"


def test_the_architecture_doc_states_the_layers():
    text = (ROOT / "docs" / "architecture.md").read_text()
    order = " < ".join(", ".join(names) for names in LAYERS)
    assert order in text, f"docs/architecture.md should state the layer order: {order}"
    missing = [p for p in LAYER_OF if f"`console/{p}/`" not in text]
    assert not missing, f"packages missing from docs/architecture.md: {missing}"
