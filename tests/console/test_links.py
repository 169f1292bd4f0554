"""Commit and repository links."""

from __future__ import annotations

import pytest

from console.domain.links import commit_url, repo_url


@pytest.mark.parametrize(("repo", "expected"), [
    ("https://github.com/o/r", "https://github.com/o/r"),
    ("https://github.com/o/r.git", "https://github.com/o/r"),
    ("http://github.com/o/r/", "https://github.com/o/r"),
    ("https://user:secret@github.com/o/r.git", "https://github.com/o/r"),
    ("git@github.com:o/r.git", "https://github.com/o/r"),
    ("ssh://git@github.com/o/r.git", "https://github.com/o/r"),
    ("git@gitlab.com:group/sub/r.git", "https://gitlab.com/group/sub/r"),
    ("https://bitbucket.org/o/r", "https://bitbucket.org/o/r"),
    ("https://GitHub.com/o/r", "https://github.com/o/r"),
    ("https://example.org/o/r", None),
    ("https://github.com/only-owner", None),
    ("not a url", None),
    ("", None),
    (None, None),
])
def test_repo_url(repo, expected):
    assert repo_url(repo) == expected


@pytest.mark.parametrize(("repo", "expected"), [
    ("https://github.com/o/r", "https://github.com/o/r/commit/abc1234"),
    ("git@gitlab.com:o/r.git", "https://gitlab.com/o/r/-/commit/abc1234"),
    ("git@bitbucket.org:o/r.git", "https://bitbucket.org/o/r/commits/abc1234"),
    ("https://example.org/o/r", None),
])
def test_commit_url(repo, expected):
    assert commit_url(repo, "abc1234") == expected


def test_no_commit_hash_means_no_commit_url():
    assert commit_url("https://github.com/o/r", None) is None
    assert commit_url("https://github.com/o/r", "") is None


def test_self_hosted_hosts_are_mapped_to_a_flavour():
    hosts = (("git.acme.io", "gitlab"), ("code.acme.io", "bitbucket"))
    assert commit_url("git@git.acme.io:t/r.git", "abc1234", hosts) == "https://git.acme.io/t/r/-/commit/abc1234"
    assert commit_url("https://code.acme.io/t/r", "abc1234", hosts) == "https://code.acme.io/t/r/commits/abc1234"
    assert repo_url("https://git.acme.io/t/r", hosts) == "https://git.acme.io/t/r"
    assert repo_url("https://other.acme.io/t/r", hosts) is None
