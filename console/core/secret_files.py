"""Secrets read from files: `NAME_FILE=/run/secrets/x` (Docker and Kubernetes secrets) sets `NAME`."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from console.core.values import SettingsError

# A secret in a file (Docker and Kubernetes secrets) is small; anything bigger is a wrong path.
SECRET_FILE_MAX_BYTES = 64 * 1024


def _read_secret_file(variable: str, path: str) -> str:
    """The secret in `path`, its trailing newline stripped; a one-line SettingsError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hang the start
    except OSError as exc:
        raise SettingsError(f"{variable}={path!r} cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SettingsError(f"{variable}={path!r} is not allowed: name a regular file that holds the secret")
        data = os.read(fd, SECRET_FILE_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise SettingsError(f"{variable}={path!r} is not allowed: the file is larger than {SECRET_FILE_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{variable}={path!r} is not allowed: the file is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def with_secret_files(env: Mapping[str, str], names: list[str]) -> Mapping[str, str]:
    """`env` with each `NAME_FILE` read into `NAME`; both set is an error (which one would win?)."""
    read: dict[str, str] = {}
    for name in names:
        path = env.get(f"{name}_FILE", "")
        if not path.strip():
            continue
        if (env.get(name) or "").strip():
            raise SettingsError(f"{name} and {name}_FILE are both set: set only one of them")
        read[name] = _read_secret_file(f"{name}_FILE", path.strip())
    return {**env, **read} if read else env
