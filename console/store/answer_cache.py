"""Answers read from the whole database (the /metrics counts, the default stats), kept
in this process until anything commits.

A dashboard or a scraper asks the same question every few seconds; between writes
the answer cannot change, and at 10,000,000 runs reading it again costs 5–50 ms
where checking the change stamp costs well under one. An answer is kept
only when the stamp read before computing it equals the one read after, so it is
exactly what the database held at that stamp; any commit since (by this process,
another worker, another host, another tool) moves the stamp and the next read
computes afresh. Keys carry everything else an answer depends on (its parameters,
the hour a default range starts); what moves with the clock (recent_24h, stale
runs) is never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from console.store.change_stamp import ChangeStamp

T = TypeVar("T")


class AnswerCache:
    """answer(session, key, compute) -> compute(session), or the same answer kept since the last commit."""

    def __init__(self, stamp: ChangeStamp, *, entries: int = 32):
        self._stamp = stamp
        self._entries = entries
        self._kept: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, session: Session, key: Hashable, compute: Callable[[Session], T],
               *, keep: Callable[[T], bool] = lambda _answer: True) -> T:
        """The answer for `key`; callers treat it as read-only (it is shared). `keep`
        says whether a computed answer is worth the memory (a large one is not)."""
        if not self._entries:
            return compute(session)
        before = self._stamp(session)
        if before is not None:
            with self._lock:
                found = self._kept.get(key)
                if found is not None and found[0] == before:
                    self._kept.move_to_end(key)
                    return found[1]
        value = compute(session)
        if before is not None and keep(value) and self._stamp(session) == before:
            with self._lock:
                self._kept[key] = (before, value)
                self._kept.move_to_end(key)
                while len(self._kept) > self._entries:
                    self._kept.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
