"""A line that fails alone with HTTP 500 while other lines are accepted: its attempts, and the probe.

A 500 for a batch may be one line the console cannot handle, or the console
itself failing. The sender halves the batch until the line is alone; then it
posts the lines after it (`probe`). Only when one of those is accepted does the
lone failure count as an attempt of that line (`LineAttempts`): a console that
fails every line is an outage, and an outage never dead-letters anything.
"""

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .delivery import ACKED, BAD_BATCH, SERVER_ERROR, Verdict

# How many lines after a lone failure are posted, one by one, looking for one the
# console accepts (a run's started, updated and ended lines may all carry the bad field).
PROBE_LINES = 4

Key = Tuple[str, int]  # (spool file name, byte offset where the line starts)


class LineAttempts:
    """Counted lone failures per line, kept in the cursor file as {file: {offset: {attempts, answer}}}."""

    def __init__(self, state: Optional[Dict[str, Any]] = None):
        self._lines: Dict[Key, Dict[str, Any]] = {}
        for name, per_file in (state or {}).items():
            if not isinstance(per_file, dict):
                continue
            for offset, entry in per_file.items():
                try:
                    self._lines[(name, int(offset))] = {
                        "attempts": int(entry["attempts"]),
                        "answer": str(entry.get("answer", "")),
                    }
                except (KeyError, TypeError, ValueError):
                    continue

    def count(self, key: Key, answer: str) -> int:
        """Count one more lone failure of a line; return its attempts so far."""
        entry = self._lines.setdefault(key, {"attempts": 0, "answer": ""})
        entry["attempts"] += 1
        entry["answer"] = answer
        return entry["attempts"]

    def forget(self, key: Key) -> None:
        """Drop a line's count (it was dead-lettered or accepted)."""
        self._lines.pop(key, None)

    def entries(self) -> List[Dict[str, Any]]:
        """Every counted line as {file, offset, attempts, answer}."""
        return [
            {"file": name, "offset": offset, **entry} for (name, offset), entry in sorted(self._lines.items())
        ]

    def state(self, offsets: Dict[str, int]) -> Dict[str, Dict[str, Dict[str, Any]]]:
        """The counts of lines not yet behind the cursor, as saved in the cursor file."""
        out: Dict[str, Dict[str, Dict[str, Any]]] = {}
        for (name, offset), entry in sorted(self._lines.items()):
            if offset >= offsets.get(name, 0):
                out.setdefault(name, {})[str(offset)] = dict(entry)
        return out


def held_lines(state: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The lines being retried after lone failures, from a cursor file's `line_attempts`."""
    ledger = LineAttempts(state.get("line_attempts") if isinstance(state, dict) else None)
    return ledger.entries()


def probe(
    post: Callable[[List[bytes]], Verdict], after: Iterable[Tuple[Key, bytes]]
) -> Tuple[Optional[Verdict], List[Tuple[Key, Verdict]]]:
    """Post the lines after a lone failure one by one until the console accepts one.

    Return (the accepting verdict or None, the lines that also failed alone with a
    500 on the way). None means no evidence that the console works: an outage.
    """
    failed: List[Tuple[Key, Verdict]] = []
    for n, (key, line) in enumerate(after):
        if n >= PROBE_LINES:
            break
        verdict = post([line])
        if verdict.kind == ACKED:
            return verdict, failed
        if verdict.kind == SERVER_ERROR:
            failed.append((key, verdict))
        elif verdict.kind != BAD_BATCH:
            break  # 502/503/504, refused, timed out...: says nothing about the lines
    return None, failed
