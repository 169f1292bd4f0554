"""The SDK as a package: its version, its documented environment, the wheel it builds."""

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import telemetry
from telemetry.cli import main

SDK_SRC = Path(telemetry.__file__).parent
SDK_ROOT = SDK_SRC.parent
DOCS = SDK_ROOT.parent / "docs" / "sdk.md"
ENV_HELPER = re.compile(r"_env_\w+$")


def _is_environ(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _env_reads(tree):
    """Yield (name node, enclosing function) for every environment read in a module."""

    def walk(node, func):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.Call) and child.args:
                f = child.func
                if (
                    (isinstance(f, ast.Attribute) and f.attr == "get" and _is_environ(f.value))
                    or (isinstance(f, ast.Attribute) and f.attr == "getenv")
                    or (isinstance(f, ast.Name) and (f.id == "getenv" or ENV_HELPER.match(f.id)))
                ):
                    yield child.args[0], func
            if isinstance(child, ast.Subscript) and _is_environ(child.value):
                yield child.slice, func
            if isinstance(child, ast.Compare) and any(_is_environ(c) for c in child.comparators):
                yield child.left, func
            yield from walk(child, inner)

    yield from walk(tree, None)


def environment_names():
    """Every environment name the SDK reads, with where; computed names only inside _env_* helpers."""
    names, computed = {}, []
    for path in sorted(SDK_SRC.rglob("*.py")):
        for node, func in _env_reads(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(SDK_ROOT)}:{node.lineno}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.setdefault(node.value, where)
            elif not (func and ENV_HELPER.match(func)):
                computed.append(where)
    return names, computed


def test_every_environment_name_the_sdk_reads_is_in_docs_sdk_md():
    names, computed = environment_names()
    # The reads this test must see, or it has gone blind to a way of reading.
    assert {"TELEMETRY_API_URL", "METRICS_API_ENABLED", "TELEMETRY_MAX_LINE_ATTEMPTS", "HOME"} <= set(names)
    assert not computed, f"environment read with a computed name (name it literally): {computed}"
    text = DOCS.read_text()
    missing = {name: where for name, where in names.items() if f"`{name}`" not in text}
    assert not missing, f"read by the SDK but not in docs/sdk.md: {missing}"


def test_the_environment_scan_sees_every_way_of_reading(tmp_path):
    source = (
        "import os\nfrom os import environ, getenv\n"
        "a = os.environ.get('A1')\nb = os.getenv('A2')\nc = os.environ['A3']\n"
        "d = 'A4' in os.environ\ne = environ.get('A5')\nf = getenv('A6')\ng = _env_bool('A7', True)\n"
        "def h(name):\n    return os.environ.get(name)\n"
    )
    reads = list(_env_reads(ast.parse(source)))
    assert [n.value for n, _ in reads if isinstance(n, ast.Constant)] == [f"A{i}" for i in range(1, 8)]
    assert [(type(n).__name__, func) for n, func in reads if not isinstance(n, ast.Constant)] == [
        ("Name", "h")
    ]


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"telemetry {telemetry.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", telemetry.__version__)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the SDK's wheel from a copy of sdk/ (the build leaves build/ behind)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "sdk"
    shutil.copytree(SDK_ROOT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(work / "dist")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = (work / "dist").glob("local_telemetry_sdk-*.whl")
    return path


def test_the_wheel_carries_py_typed_the_license_and_one_version(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path)
    assert "telemetry/py.typed" in names and "telemetry/cli.py" in names
    (dist_info,) = tmp_path.glob("local_telemetry_sdk-*.dist-info")
    dist = importlib.metadata.Distribution.at(dist_info)
    assert dist.version == telemetry.__version__  # read from telemetry.__version__ at build time
    assert dist.metadata["License-Expression"] == "MIT"
    assert "Typing :: Typed" in dist.metadata.get_all("Classifier")
    assert "# Local Telemetry SDK" in dist.read_text("METADATA")  # the README is the description
    assert "Local Telemetry authors" in (dist_info / "licenses" / "LICENSE").read_text()
    assert [str(r) for r in dist.requires if "extra" not in str(r)] == ["requests<3,>=2.25"]
    telemetry_script = [ep for ep in dist.entry_points if ep.name == "telemetry"]
    assert telemetry_script and telemetry_script[0].value == "telemetry.cli:main"
