"""Git context read once from the .git directory (no subprocess)."""

import re
from pathlib import Path
from typing import Dict, Optional

_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)$")


def normalize_repo_url(url: str) -> str:
    """Return an https URL for a remote (SSH or HTTPS), without credentials or `.git`."""
    url = url.strip()
    if url.startswith(("ssh://", "git://", "git+ssh://")):
        rest = url.split("://", 1)[1]
        host_part, _, path = rest.partition("/")
        host = host_part.rsplit("@", 1)[-1].split(":", 1)[0]
        url = f"https://{host}/{path}"
    elif not url.startswith(("http://", "https://")):
        match = _SCP_LIKE.match(url)
        if match and "/" not in match.group(1):
            url = f"https://{match.group(1)}/{match.group(2)}"
    if url.startswith(("http://", "https://")):
        scheme, _, rest = url.partition("://")
        netloc, slash, path = rest.partition("/")
        netloc = netloc.rsplit("@", 1)[-1]  # never keep a token that sits in a remote URL
        url = f"{scheme}://{netloc}{slash}{path}"
    url = url.rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return url


def _find_git_dir(start: Path) -> Optional[Path]:
    for folder in [start, *start.parents]:
        candidate = folder / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[7:].strip())
                return target if target.is_absolute() else (folder / target).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    marker = git_dir / "commondir"
    if marker.is_file():
        target = Path(marker.read_text(encoding="utf-8").strip())
        return target if target.is_absolute() else (git_dir / target).resolve()
    return git_dir


def _resolve_ref(git_dir: Path, common: Path, ref: str) -> Optional[str]:
    for base in (git_dir, common):
        path = base / ref
        if path.is_file():
            return path.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1].strip() == ref:
                return parts[0]
    return None


def _origin_url(common: Path) -> Optional[str]:
    config = common / "config"
    if not config.is_file():
        return None
    section = None
    urls: Dict[str, str] = {}
    for raw in config.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section and section.startswith("remote") and line.startswith("url"):
            name = section[len("remote") :].strip().strip('"')
            urls.setdefault(name, line.split("=", 1)[1].strip())
    return urls.get("origin") or next(iter(urls.values()), None)


def detect_git(cwd: Optional[str] = None) -> Dict[str, str]:
    """Return git_repo, git_branch and git_commit_hash for the working directory (what is known)."""
    try:
        git_dir = _find_git_dir(Path(cwd or ".").resolve())
        if git_dir is None:
            return {}
        common = _common_dir(git_dir)
        info: Dict[str, str] = {}
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref:"):
            ref = head[4:].strip()
            if ref.startswith("refs/heads/"):
                info["git_branch"] = ref[len("refs/heads/") :]
            commit = _resolve_ref(git_dir, common, ref)
        else:
            commit = head
        if commit:
            info["git_commit_hash"] = commit
        remote = _origin_url(common)
        if remote:
            info["git_repo"] = normalize_repo_url(remote)
        return info
    except (OSError, ValueError):
        return {}
