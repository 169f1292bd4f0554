"""The dead letters: lines the console rejected, kept in {raw}/rejected_YYYYMMDD.ndjson, and their replay."""

import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .spool import NOFOLLOW, REJECTED_PREFIX, SpoolWriter, count_lines, is_spool_line

try:
    import fcntl
except ImportError:  # Windows: no lock; a replay there may race a sender writing a dead letter
    fcntl = None

logger = logging.getLogger("telemetry")

_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | NOFOLLOW | getattr(os, "O_BINARY", 0)


def dead_letter_files(raw_dir: Path) -> List[Path]:
    """The dead-letter files, oldest first."""
    try:
        names = os.listdir(raw_dir)
    except OSError:
        return []
    return [
        Path(raw_dir) / n for n in sorted(names) if n.startswith(REJECTED_PREFIX) and n.endswith(".ndjson")
    ]


def count_dead_letters(raw_dir: Path) -> int:
    """How many lines the dead-letter files hold."""
    return sum(count_lines(path) for path in dead_letter_files(raw_dir))


def _open_locked(path: Path) -> int:
    """Open a dead-letter file locked; the replay may have replaced or removed it meanwhile."""
    while True:
        fd = os.open(str(path), _OPEN_FLAGS, 0o600)
        if fcntl is None:
            return fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the file we locked is no longer the one at `path`: open that one


def dead_letter(raw_dir: Path, line: bytes, reason: str, status: Optional[int] = None) -> bool:
    """Append a rejected line with its reason to {raw}/rejected_YYYYMMDD.ndjson."""
    now = datetime.now(timezone.utc)
    record = {
        "rejected_at": now.isoformat(),
        "reason": reason,
        "http_status": status,
        "line": line.decode("utf-8", "replace"),
    }
    path = Path(raw_dir) / f"{REJECTED_PREFIX}{now:%Y%m%d}.ndjson"
    try:
        fd = _open_locked(path)
        try:
            os.write(fd, (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        return True
    except OSError as exc:
        logger.error("telemetry: cannot write dead letter %s: %s", path, exc)
        return False


def last_dead_letter(raw_dir: Path) -> Optional[Dict[str, Any]]:
    """The newest dead letter's time, reason and HTTP status (not its line), or None."""
    files = dead_letter_files(raw_dir)
    if not files:
        return None
    try:
        with open(files[-1], "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - (1 << 20)))
            last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        record = json.loads(last)
        return {key: record.get(key) for key in ("rejected_at", "reason", "http_status")}
    except (OSError, ValueError, AttributeError):
        return None


def replay_dead_letters(raw_dir: Path, writer: SpoolWriter, day: str) -> Tuple[int, int]:
    """Put every dead-lettered spool line back in the spool file of `day`; return (replayed, kept).

    Torn lines (not a whole spool line) can never be accepted and stay. A line is
    appended to the spool before its dead letter is removed, so a crash in between
    sends it twice (the console ignores the duplicate) but never loses it.
    """
    replayed = kept_total = 0
    for path in dead_letter_files(raw_dir):
        fd = _open_locked(path)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            keep: List[bytes] = []
            for raw in b"".join(chunks).splitlines():
                line = _replayable(raw)
                if line is None:
                    if raw.strip():
                        keep.append(raw + b"\n")
                elif not writer.append(line + b"\n", day):
                    raise OSError(writer.last_error or "cannot write the spool")
                else:
                    replayed += 1
            _rewrite(path, keep)
            kept_total += len(keep)
        finally:
            os.close(fd)
    return replayed, kept_total


def _replayable(raw: bytes) -> Optional[bytes]:
    try:
        line = json.loads(raw)["line"].encode("utf-8")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return line if line[:1] == b"{" and line[-1:] == b"}" and is_spool_line(line) else None


def _rewrite(path: Path, keep: List[bytes]) -> None:
    """Leave only `keep` in a dead-letter file (removed when empty); the caller holds its lock."""
    if not keep:
        os.unlink(path)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.write(fd, b"".join(keep))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
