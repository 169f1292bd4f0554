"""Every setting and every CLI command is documented (after sqlite-utils' test_docs)."""

from pathlib import Path

import pytest

from console.cli import COMMANDS
from console.settings import documented_variables

DOCS = Path(__file__).resolve().parent.parent / "docs"


def all_docs() -> str:
    return "\n".join(p.read_text() for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("variable", documented_variables())
def test_setting_is_documented_in_configuration_md(variable):
    assert f"`{variable}`" in (DOCS / "configuration.md").read_text()


def test_every_cli_command_is_documented():
    from console import commands  # noqa: F401  (registers the commands)

    text = all_docs()
    missing = [name for name in COMMANDS if f"python -m console {name}" not in text]
    assert not missing, f"undocumented commands: {missing}"


def python_modules() -> list[str]:
    root = DOCS.parent
    found = sorted(root.glob("console/**/*.py")) + sorted(root.glob("sdk/telemetry/**/*.py"))
    return [str(path.relative_to(root)) for path in found]


def test_every_module_is_on_the_architecture_map():
    text = (DOCS / "architecture.md").read_text()
    missing = [module for module in python_modules() if f"`{module}`" not in text]
    assert python_modules() and not missing, f"modules missing from docs/architecture.md: {missing}"
