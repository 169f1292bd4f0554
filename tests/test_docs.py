"""Every setting and every CLI command is documented (after sqlite-utils' test_docs)."""

import re
import subprocess
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


def test_every_cli_option_is_documented_in_cli_md():
    from console.cli import main  # noqa: F401  (registers the commands)

    text = (DOCS / "cli.md").read_text()
    options = [(name, flag) for name, (_f, _h, args) in COMMANDS.items() for flags, _o in args for flag in flags]
    missing = [f"{name} {flag}" for name, flag in options if flag.startswith("--") and flag not in text]
    assert options and not missing, f"options missing from docs/cli.md: {missing}"


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


REPO = DOCS.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCS_REFERENCE = re.compile(r"(?<![\w./-])docs/[\w./-]*\w")


def markdown_files() -> list[Path]:
    return [REPO / name for name in subprocess.run(
        ["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()]


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def broken_links(path: Path, root: Path = REPO) -> list[str]:
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{path.relative_to(root)}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{path.relative_to(root)}: {target} (no such section)")
    return broken


def test_every_markdown_link_resolves():
    files = markdown_files()
    broken = [problem for path in files for problem in broken_links(path)]
    assert files and not broken, broken


def test_every_docs_reference_in_the_code_resolves():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    sources = [REPO / name for name in tracked if not name.endswith(".md") and not name.startswith("docs/")]
    missing = []
    for path in sources:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for reference in DOCS_REFERENCE.findall(text):
            if not (REPO / reference).exists():
                missing.append(f"{path.relative_to(REPO)}: {reference}")
    assert sources and not missing, missing


def test_a_broken_link_is_caught(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Base directory\n")
    page.write_text("[ok](other.md#base-directory) [gone](missing.md) [no section](other.md#nowhere)\n")
    problems = broken_links(page, tmp_path)
    assert len(problems) == 2 and "missing.md" in problems[0] and "nowhere" in problems[1]


def test_every_scheduled_job_is_documented():
    from console.jobs.scheduler import ALL_JOBS

    jobs_md = (DOCS / "jobs.md").read_text()
    missing = [name for name in ALL_JOBS if f"`{name}`" not in jobs_md]
    assert ALL_JOBS and not missing, f"jobs missing from docs/jobs.md: {missing}"
