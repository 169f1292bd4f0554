"""Every setting and every CLI command is documented (after sqlite-utils' test_docs)."""

from pathlib import Path

import pytest

from console.cli.registry import COMMANDS
from console.core.settings import documented_variables

DOCS = Path(__file__).resolve().parent.parent / "docs"


def all_docs() -> str:
    return "\n".join(p.read_text() for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("variable", documented_variables())
def test_setting_is_documented_in_configuration_md(variable):
    assert f"`{variable}`" in (DOCS / "configuration.md").read_text()


def test_every_cli_command_is_documented():
    from console.cli import main  # noqa: F401  (registers the commands)

    text = all_docs()
    missing = [name for name in COMMANDS if f"python -m console {name}" not in text]
    assert not missing, f"undocumented commands: {missing}"


def sdk_modules() -> list[str]:
    root = DOCS.parent
    return [str(path.relative_to(root)) for path in sorted(root.glob("sdk/telemetry/**/*.py"))]


def console_folders() -> list[str]:
    root = DOCS.parent
    return [f"{path.parent.relative_to(root)}/" for path in sorted(root.glob("console/*/__init__.py"))]


def test_every_folder_and_sdk_module_is_on_the_architecture_map():
    text = (DOCS / "architecture.md").read_text()
    missing = [name for name in console_folders() + sdk_modules() if f"`{name}`" not in text]
    assert console_folders() and sdk_modules() and not missing, f"missing from docs/architecture.md: {missing}"
