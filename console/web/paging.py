"""Numbered pages of a list: the page asked for in the URL, and the pager a template draws."""

from __future__ import annotations

from typing import Any, Optional

from flask import request

MAX_PAGE = 1_000_000


def page_number() -> tuple[int, Optional[str]]:
    """The page asked for in `?page=` (1 when absent), and an error for one that is not a page number."""
    raw = (request.values.get("page") or "").strip()
    if not raw:
        return 1, None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        return 1, f"The page must be a whole number from 1, not {raw[:50]!r}."
    return int(raw), None


def page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def past_the_end(number: int, total: int, per_page: int, noun: str) -> Optional[str]:
    """An error when page `number` lies past the last page of `total` items, else None."""
    pages = page_count(total, per_page)
    if number <= pages:
        return None
    return f"There is no page {number}: {total} {noun} fill {pages} page{'' if pages == 1 else 's'}."


def pager(number: int, total: int, per_page: int, shown: int, *, more: bool = False) -> dict[str, Any]:
    """What `_pages.html` draws: the page, the count, the range shown, and the page numbers
    to link (the first, the last and two either side of this one; None marks a gap)."""
    pages = page_count(total, per_page)
    near = {1, pages, *range(max(1, number - 2), min(pages, number + 2) + 1)}
    numbers: list[Optional[int]] = []
    for n in sorted(near):
        if numbers and numbers[-1] is not None and n > numbers[-1] + 1:
            numbers.append(None)
        numbers.append(n)
    first = (number - 1) * per_page + 1
    return {"number": number, "pages": pages, "total": total, "more": more, "numbers": numbers,
            "first": first, "last": first + shown - 1}
