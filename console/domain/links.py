"""Commit and repository links for GitHub, GitLab, Bitbucket and mapped self-hosted hosts."""

from __future__ import annotations

import re
from typing import Optional

_FLAVOURS = {"github.com": "github", "gitlab.com": "gitlab", "bitbucket.org": "bitbucket"}
_COMMIT_PATHS = {"github": "/commit/{sha}", "gitlab": "/-/commit/{sha}", "bitbucket": "/commits/{sha}"}
# ssh://git@host[:port]/owner/repo may carry a port; scp-like git@host:owner/repo never does
# (git@github.com:1234/repo is the owner "1234", not port 1234).
_SSH = re.compile(r"^ssh://git@(?P<host>[^:/]+)(?::\d+)?/(?P<path>.+)$")
_SCP = re.compile(r"^(?:ssh://)?git@(?P<host>[^:/]+)[:/](?P<path>.+)$")
_HTTP = re.compile(r"^(?:https?|git)://(?:[^@/]+@)?(?P<host>[^/:]+)(?::\d+)?/(?P<path>.+)$")


def parse_repo(git_repo: Optional[str], git_hosts: tuple = ()) -> Optional[tuple[str, str, str]]:
    """(host, owner/repo path, flavour) for a repository URL, or None when unknown."""
    if not git_repo:
        return None
    text = git_repo.strip()
    match = _SSH.match(text) or _SCP.match(text) or _HTTP.match(text)
    if not match:
        return None
    host = match["host"].lower()
    path = match["path"].strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    if not path or "/" not in path:
        return None
    flavour = dict(git_hosts).get(host) or _FLAVOURS.get(host)
    if flavour is None:
        return None
    return host, path, flavour


def repo_url(git_repo: Optional[str], git_hosts: tuple = ()) -> Optional[str]:
    parsed = parse_repo(git_repo, git_hosts)
    if parsed is None:
        return None
    host, path, _flavour = parsed
    return f"https://{host}/{path}"


def commit_url(git_repo: Optional[str], commit_hash: Optional[str], git_hosts: tuple = ()) -> Optional[str]:
    parsed = parse_repo(git_repo, git_hosts)
    if parsed is None or not commit_hash:
        return None
    host, path, flavour = parsed
    return f"https://{host}/{path}" + _COMMIT_PATHS[flavour].format(sha=commit_hash.strip())
