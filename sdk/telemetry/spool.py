"""The spool: append-only NDJSON files under {base}/raw, a cursor, and the dead letters."""

import errno
import json
import logging
import os
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from operator import add, itemgetter, methodcaller
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .models import new_id

logger = logging.getLogger("telemetry")

SPOOL_VERSION = 1
KINDS = ("run_started", "run_updated", "run_ended", "event", "commit", "heartbeat")
EVENTS_PREFIX = "events_"
REJECTED_PREFIX = "rejected_"
CURSOR_NAME = "cursor.json"
LOCK_NAME = ".sender.lock"
_write = os.write  # the one write per record; tests replace it to inject ENOSPC
# Files the SDK creates are its user's only (0600, directories 0700; the umask may
# make them stricter), and it never writes or reads its state through a symlink.
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | getattr(os, "O_BINARY", 0)
_RETRY_OPEN_SECONDS = 5.0


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def run_head(event_id: str, run_id: str, agent_name: str, job_type: str, start_time: str) -> str:
    """Return the JSON fragment of the five run fields every line carries."""
    return (
        f'"event_id":{_json(event_id)},"run_id":{_json(run_id)},'
        f'"agent_name":{_json(agent_name)},"job_type":{_json(job_type)},'
        f'"start_time":{_json(start_time)}'
    )


def make_line(
    kind: str, head: str, data: dict, ts: Optional[str] = None, line_id: Optional[str] = None
) -> bytes:
    """Return one complete spool line v1 (with its newline) as bytes."""
    if ts is None:
        ts = datetime.now(timezone.utc).isoformat()
    if line_id is None:
        line_id = new_id()
    return (f'{{"v":1,"id":"{line_id}","kind":"{kind}","ts":"{ts}",{head},"data":{_json(data)}}}\n').encode(
        "utf-8", "surrogatepass"
    )


def utc_day(ts: str) -> str:
    """Return YYYYMMDD of an ISO timestamp in UTC (as produced by make_line)."""
    return ts[0:4] + ts[5:7] + ts[8:10]


class SpoolWriter:
    """Append whole lines to today's spool file with one write() on an O_APPEND descriptor."""

    def __init__(self, raw_dir: Path, fsync: bool = False):
        self.raw_dir = Path(raw_dir)
        self.fsync = fsync
        self.written = 0
        self.lost = 0
        self.last_error: Optional[str] = None
        self._day: Optional[str] = None
        self._fd: Optional[int] = None
        self._torn = False  # a short write left a line without its newline
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def append(self, line: bytes, day: str) -> bool:
        """Append one line; return False (and count it lost) when the OS refuses it."""
        fd = self._fd if day == self._day else self._open(day)
        if fd is None:
            self.lost += 1
            return False
        if self._torn:
            line = b"\n" + line
        try:
            n = _write(fd, line)
        except OSError as exc:
            return self._fail(exc)
        if n != len(line):
            self._torn = True
            return self._fail(OSError(errno.ENOSPC, f"short write ({n} of {len(line)} bytes)"))
        self._torn = False
        if self.fsync:
            try:
                os.fsync(fd)
            except OSError as exc:
                return self._fail(exc)
        self.written += 1
        return True

    def _fail(self, exc: OSError) -> bool:
        self.lost += 1
        self.last_error = f"spool write failed: {exc}"
        if self.lost == 1 or self.lost % 1000 == 0:
            logger.error("telemetry: %s (%d records lost so far)", self.last_error, self.lost)
        return False

    def _open(self, day: str) -> Optional[int]:
        with self._lock:
            if day == self._day and self._fd is not None:
                return self._fd
            now = time.monotonic()
            if now < self._retry_at:
                return None
            try:
                make_private_dir(self.raw_dir)
                fd = os.open(str(self.raw_dir / f"{EVENTS_PREFIX}{day}.ndjson"), _OPEN_FLAGS, 0o600)
            except OSError as exc:
                self._retry_at = now + _RETRY_OPEN_SECONDS
                self.last_error = f"cannot open spool in {self.raw_dir}: {exc}"
                logger.error("telemetry: %s; records are counted as lost", self.last_error)
                return None
            old, self._fd, self._day = self._fd, fd, day
            if old is not None:
                try:
                    os.close(old)
                except OSError:
                    pass
            return fd

    def close(self) -> None:
        """Close the open spool file."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
            self._fd, self._day = None, None


def spool_files(raw_dir: Path) -> List[str]:
    """Return the names of the daily spool files, oldest first."""
    try:
        names = os.listdir(raw_dir)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(EVENTS_PREFIX) and n.endswith(".ndjson"))


def open_spool(path: Path):
    """Open a spool file to read, refusing a symlink (it would send another file's content)."""
    return open(os.open(str(path), os.O_RDONLY | NOFOLLOW | getattr(os, "O_BINARY", 0)), "rb")


def make_private_dir(path: Path) -> None:
    """Create a directory and its missing parents with mode 0700."""
    missing = []
    path = Path(path)
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass


def load_cursor(raw_dir: Path) -> dict:
    """Return the saved cursor state ({"files": {name: offset}, ...}); empty when missing."""
    try:
        fd = os.open(str(Path(raw_dir) / CURSOR_NAME), os.O_RDONLY | NOFOLLOW)
        with open(fd, encoding="utf-8") as fh:
            state = json.load(fh)
        if isinstance(state, dict) and isinstance(state.get("files"), dict):
            return state
    except (OSError, ValueError):
        pass
    return {"files": {}}


def save_cursor(raw_dir: Path, state: dict) -> None:
    """Write the cursor state atomically (a new temporary file of an unpredictable name, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{CURSOR_NAME}.", suffix=".tmp", dir=raw_dir)
    try:
        with open(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, separators=(",", ":"))
        os.replace(tmp, Path(raw_dir) / CURSOR_NAME)  # replaces a symlink there, never writes through it
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_lines(
    path: Path, offset: int, limit: int, max_bytes: int = 8 << 20
) -> Tuple[List[Tuple[int, bytes]], int]:
    """Return up to `limit` complete lines after `offset` as (end_offset, line) and the new offset."""
    try:
        with open_spool(path) as fh:
            fh.seek(offset)
            chunk, eof = _read_enough(fh, limit, max_bytes)
    except OSError:
        return [], offset
    # Split and number the lines in C (split, accumulate, map, zip): the sender runs
    # in the agent's process, and a Python loop per line would hold the GIL for
    # milliseconds per batch while the agent's calls wait.
    complete = chunk.rfind(b"\n") + 1
    bodies = chunk[:complete].split(b"\n")[:-1] if complete else []
    whole = len(bodies)
    del bodies[limit:]
    ends = list(map(add, accumulate(map(len, bodies)), range(offset + 1, offset + 1 + len(bodies))))
    out: List[Tuple[int, bytes]] = list(zip(ends, bodies))
    pos = ends[-1] - offset if ends else 0
    if whole < limit:
        # An incomplete tail: a writer may still be in the middle of it, unless
        # the file is finished (an earlier day's) or has not changed for a while,
        # in which case it is a torn line (a crash or a full disk mid-write) and
        # is handed on, so that the sender reports it instead of waiting forever.
        tail = chunk[complete:]
        if tail.strip() and eof and tail_is_abandoned(path):
            out.append((offset + len(chunk), tail))
            pos = len(chunk)
    return out, offset + pos


def _read_enough(fh, limit: int, max_bytes: int) -> Tuple[bytes, bool]:
    """Read blocks until `limit` lines, the end of the file or `max_bytes`: a batch of a
    large backlog costs the batch, not the backlog. Return (bytes, whether the end was reached)."""
    parts: List[bytes] = []
    size = lines = 0
    block = 64 << 10
    while size < max_bytes:
        part = fh.read(min(block, max_bytes - size))
        if not part:
            return b"".join(parts), True
        parts.append(part)
        size += len(part)
        lines += part.count(b"\n")
        if lines >= limit:
            break
        block *= 2
    return b"".join(parts), False


# A line without its newline this long after the file last changed was torn.
TORN_TAIL_SETTLE_SECONDS = 10.0


def tail_is_abandoned(path: Path, now: Optional[float] = None) -> bool:
    """True when nobody will finish the file's last line: an earlier day's file, or a quiet one."""
    name = Path(path).name
    today = datetime.now(timezone.utc).strftime("%Y%m%d")
    if name.startswith(EVENTS_PREFIX) and name[len(EVENTS_PREFIX) : len(EVENTS_PREFIX) + 8] < today:
        return True
    try:
        quiet = (now or time.time()) - os.stat(path).st_mtime
    except OSError:
        return False
    return quiet >= TORN_TAIL_SETTLE_SECONDS


def _has_unfinished_tail(path: Path, offset: int) -> bool:
    try:
        with open_spool(path) as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size <= offset:
                return False
            fh.seek(size - 1)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def count_lines(path: Path, start: int = 0, end: Optional[int] = None) -> int:
    """Return the number of complete lines between two offsets of a file."""
    total = 0
    try:
        with open_spool(path) as fh:
            fh.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                size = 1 << 20 if remaining is None else min(1 << 20, remaining)
                block = fh.read(size)
                if not block:
                    break
                total += block.count(b"\n")
                if remaining is not None:
                    remaining -= len(block)
    except OSError:
        pass
    return total


def spool_counts(raw_dir: Path) -> Dict[str, int]:
    """Return the pending and delivered line counts of a spool directory."""
    raw_dir = Path(raw_dir)
    offsets = load_cursor(raw_dir)["files"]
    pending = delivered = 0
    for name in spool_files(raw_dir):
        offset = int(offsets.get(name, 0))
        delivered += count_lines(raw_dir / name, 0, offset)
        pending += count_lines(raw_dir / name, offset)
        # A last line without its newline is pending too, until it is delivered or reported.
        pending += 1 if _has_unfinished_tail(raw_dir / name, offset) else 0
    return {"pending": pending, "delivered": delivered}


def apply_retention(raw_dir: Path, offsets: Dict[str, int], days: float) -> List[str]:
    """Remove fully delivered daily spool files older than `days`; return their names."""
    cutoff = (datetime.now(timezone.utc) - timedelta(days=days)).strftime("%Y%m%d")
    removed = []
    for name in spool_files(raw_dir):
        day = name[len(EVENTS_PREFIX) : -len(".ndjson")]
        if day >= cutoff:
            continue
        path = Path(raw_dir) / name
        try:
            if path.stat().st_size > offsets.get(name, 0):
                continue  # undelivered lines: never removed
            path.unlink()
        except OSError:
            continue
        offsets.pop(name, None)
        removed.append(name)
    return removed


# Every spool line starts with these bytes (make_line).
LINE_START = b'{"v":1,"id":"'


def split_glued(body: bytes) -> Tuple[bytes, bytes]:
    """Split another writer's torn fragment off the front of a whole line.

    When one process's write was cut short (a full disk) and another appended its
    line right after, the two share a line. The whole line after the fragment is
    still good: return (fragment, line), or (b"", body) when nothing is glued.
    Only a line that holds the line start twice is parsed, so the usual cost is one
    find.
    """
    start = body.find(LINE_START, 1)
    if start < 0 or is_spool_line(body):
        return b"", body
    while start >= 0:  # the line start may also stand inside a payload: try each
        if is_spool_line(body[start:]):
            return body[:start], body[start:]
        start = body.find(LINE_START, start + 1)
    return b"", body


def sort_lines(start: int, lines: List[Tuple[int, bytes]]) -> Tuple[List[Tuple[int, bytes]], List[bytes]]:
    """Split lines read from `start` (`read_lines`) into lines to post, as (start offset,
    body), and torn lines, which go to the dead letters. Blank lines are neither."""
    bodies = list(map(itemgetter(1), lines))
    if _all_whole(bodies):
        starts = [start, *map(itemgetter(0), lines[:-1])]
        return list(zip(starts, bodies)), []
    good: List[Tuple[int, bytes]] = []
    torn: List[bytes] = []
    for end, line in lines:
        body = line.rstrip(b"\r")
        if body.strip():
            fragment, body = split_glued(body)
            if fragment:
                torn.append(fragment)
            if body[:1] == b"{" and body[-1:] == b"}":
                good.append((start, body))
            else:
                torn.append(body)
        start = end
    return good, torn


def _all_whole(bodies: List[bytes]) -> bool:
    """True when every line is one whole spool line, checked in C (the usual batch).

    Each starts with the line start and ends with `}`, and the line start occurs
    once per line (it cannot span two lines: it holds no `}`), so no line has a
    fragment glued to it, none is blank or torn: sort_lines' loop would keep them all.
    """
    return (
        bool(bodies)
        and all(map(_starts_whole, bodies))
        and all(map(_ends_whole, bodies))
        and b"".join(bodies).count(LINE_START) == len(bodies)
    )


_starts_whole = methodcaller("startswith", LINE_START)
_ends_whole = methodcaller("endswith", b"}")


def is_spool_line(body: bytes) -> bool:
    """True when `body` parses as a spool line (an object with an id and a kind)."""
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and "id" in value and "kind" in value
