"""The runs page's downloads: the filtered runs as CSV or JSON, encoded page by page.

The encoders take an iterator of row pages and yield text chunks, so a download of
any size holds one page in memory. Spreadsheet formulas are defused in CSV: a text
cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
`'` (OWASP's advice against CSV injection).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from console.domain.records import INTERNAL_COLUMNS, RUN_COLUMNS, run_to_dict

# The most runs one download holds (newest first); narrow the filter for older ones.
MAX_ROWS = 100_000
FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
# A run as the API returns it, in column order.
COLUMNS = [name for name in RUN_COLUMNS if name not in INTERNAL_COLUMNS] + ["commit_url", "repo_url"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_chunks(pages: Iterable[list[Mapping[str, Any]]], git_hosts: tuple = ()) -> Iterator[str]:
    """A header line, then one CSV line per run (objects as JSON text)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for page in [[], *pages]:
        for row in page:
            writer.writerow({key: _cell(value) for key, value in run_to_dict(row, git_hosts).items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def json_chunks(pages: Iterable[list[Mapping[str, Any]]], git_hosts: tuple = ()) -> Iterator[str]:
    """A JSON array of runs as the API returns them, one run per line."""
    first = True
    yield "["
    for page in pages:
        parts = []
        for row in page:
            parts.append(("\n" if first else ",\n") + json.dumps(run_to_dict(row, git_hosts), default=str))
            first = False
        yield "".join(parts)
    yield "\n]\n"
