"""Every distribution the console runs on is pinned, and every install uses the pins."""

from __future__ import annotations

import importlib.metadata as metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def requirement_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def pins(path: Path) -> dict[str, str]:
    """name -> version of each `name==version` line."""
    found = {}
    for line in requirement_lines(path):
        name, sep, version = line.partition("==")
        assert sep and version, f"{path.name}: {line!r} is not pinned with =="
        found[canonicalize_name(name)] = version.strip()
    return found


def installed_tree(roots: list[str]) -> dict[str, str]:
    """name -> installed version of every distribution the `roots` need, transitively."""
    tree: dict[str, str] = {}
    seen: set[tuple[str, frozenset]] = set()
    todo = [Requirement(line) for line in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        tree[name] = metadata.distribution(name).version
        for line in metadata.requires(name) or []:
            child = Requirement(line)
            # A marker naming an extra applies only when that extra was asked for.
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(child)
    return tree


def test_every_distribution_of_the_runtime_tree_is_pinned_at_its_installed_version():
    tree = installed_tree(requirement_lines(ROOT / "requirements.txt"))
    pinned = pins(ROOT / "constraints.txt")
    assert {"flask", "werkzeug", "jinja2", "markupsafe", "psycopg-binary", "pydantic-core"} <= set(tree)
    missing = sorted(set(tree) - set(pinned))
    assert not missing, f"not pinned in constraints.txt: {missing}"
    drift = {name: (version, pinned[name]) for name, version in tree.items() if pinned[name] != version}
    assert not drift, f"installed version differs from constraints.txt (run make install): {drift}"


def test_the_direct_requirements_match_the_pins_and_the_dev_tree_agrees():
    runtime = pins(ROOT / "constraints.txt")
    dev = pins(ROOT / "constraints-dev.txt")
    for path, tree in ((ROOT / "requirements.txt", runtime), (ROOT / "requirements-dev.txt", dev)):
        for line in requirement_lines(path):
            requirement = Requirement(line)
            assert tree[canonicalize_name(requirement.name)] in requirement.specifier, (path.name, line)
    assert {name: dev.get(name) for name in runtime} == runtime, "constraints-dev.txt disagrees with constraints.txt"
    dev_tree = installed_tree(requirement_lines(ROOT / "requirements-dev.txt")
                              + requirement_lines(ROOT / "requirements.txt"))
    assert not sorted(set(dev_tree) - set(dev)), "constraints-dev.txt misses part of the dev tree"


def test_werkzeug_is_past_the_advisories_of_3_1_3():
    version = tuple(int(part) for part in metadata.version("werkzeug").split(".")[:3])
    assert version >= (3, 1, 9)


def test_make_ci_and_docker_install_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-r requirements-dev\.txt -c constraints-dev\.txt", makefile)
    assert re.search(r"pip install .*-c constraints-dev\.txt -e sdk", makefile)
    assert "make install" in (ROOT / ".ci" / "run").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.txt constraints.txt" in dockerfile
    assert re.search(r"pip install --no-cache-dir -r requirements\.txt -c constraints\.txt", dockerfile)
    assert re.search(r"pip install --no-cache-dir -c constraints\.txt \./sdk", dockerfile)
    every_install = re.findall(r"pip install[^&\n]*", makefile + dockerfile)
    unpinned = [line for line in every_install if " -r " in line and " -c " not in line]
    assert not unpinned, unpinned
