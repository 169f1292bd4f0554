"""JSON read and checked with bounded work: the one place hostile values are refused.

A request body is parsed once by `loads`: the non-standard `NaN` / `Infinity` and
integers past Python's 4,300-digit limit never raise there: they become
`Unstorable`, a value that no field accepts, and `1e999` becomes a float infinity,
which no field accepts either; so the one record holding one is refused (422) and
the other records of a batch are not. Nesting past the parser's recursion limit
refuses the body. Fields the console does not read are ignored whatever they hold.

`check_json_value` walks a JSON field's value (metrics, context, event payloads,
also when sent as a string holding JSON) without recursion, and refuses what a
database would refuse or store unfaithfully: NUL and lone surrogates (PostgreSQL
refuses NUL in text and JSONB), numbers that are not finite (JSONB refuses NaN),
integers with too many digits, over-long keys, and nesting deeper than MAX_FIELD_DEPTH.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A request body nested deeper than this is refused (422): a single record's body
# whole, an item of a top-level array (a batch, ingest) alone.
MAX_JSON_DEPTH = 64
# A JSON field's value: at most this many levels of objects and arrays.
MAX_FIELD_DEPTH = 60
# A key inside a JSON field's value: at most this many characters.
MAX_KEY_CHARS = 1024
# An integer: at most this many digits. Room for any finite float as PostgreSQL
# writes it back (1.7e308 as an integer of 309 digits). A float is any finite one.
MAX_INT_DIGITS = 400

_INT_BOUND = 10**MAX_INT_DIGITS

BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class Unstorable:
    """A value as sent that no field stores (NaN, a huge integer, an item nested too deep):
    why, in words, never the value itself."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unstorable({self.reason!r})"


class TooDeep(ValueError):
    """JSON nested past what the parser follows."""


def _int(text: str) -> Any:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        return Unstorable(f"an integer with more than {MAX_INT_DIGITS} digits")
    return int(text)


def _constant(name: str) -> Unstorable:
    return Unstorable(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Strict JSON with bounded work: NaN, Infinity and over-long integers become `Unstorable`.

    ValueError (json.JSONDecodeError, UnicodeDecodeError) for text that is not JSON;
    TooDeep when it nests past the parser's recursion limit. `1e999` is a float
    infinity, refused wherever a field holds it.
    """
    try:
        try:
            return json.loads(text, parse_constant=_constant)
        except ValueError as exc:
            if type(exc) is not ValueError:  # not JSON at all
                raise
        # An integer past Python's digit limit: again, each integer checked (rare and slower).
        return json.loads(text, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise TooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


def check_text(value: str) -> str:
    """Refuse NUL characters and lone surrogates (422), which no database stores faithfully."""
    if BAD_CHARS.search(value):
        raise ValueError("text must not contain NUL characters or lone surrogates")
    return value


def check_json_value(value: Any) -> None:
    """ValueError naming the first hostile part of a JSON field's value, with its path.

    Without recursion; scalars are checked where they are met and only containers
    are stacked with their path, so an ordinary value costs little more than a walk.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        _check_scalar(value, "")
        return
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth >= MAX_FIELD_DEPTH:
            raise ValueError(f"JSON value nested deeper than {MAX_FIELD_DEPTH} levels")
        is_dict = type(node) is dict
        for key, item in node.items() if is_dict else enumerate(node):
            if is_dict:
                if len(key) > MAX_KEY_CHARS:
                    raise ValueError(f"{_at(path)}a key is longer than {MAX_KEY_CHARS} characters")
                if BAD_CHARS.search(key):
                    raise ValueError(f"{_at(path)}a key must not contain NUL characters or lone surrogates")
            kind = type(item)
            if kind is str:
                fine = not BAD_CHARS.search(item)
            elif kind is float:
                fine = math.isfinite(item)
            elif kind is int:
                fine = -_INT_BOUND < item < _INT_BOUND
            elif kind is dict or kind is list:
                stack.append((item, depth + 1, _child(path, key, is_dict)))
                continue
            else:
                fine = item is None or kind is bool
            if not fine:
                _check_scalar(item, _child(path, key, is_dict))


def _check_scalar(value: Any, path: str) -> None:
    kind = type(value)
    if kind is str:
        if BAD_CHARS.search(value):
            raise ValueError(f"{_at(path)}text must not contain NUL characters or lone surrogates")
    elif kind is Unstorable:
        raise ValueError(f"{_at(path)}{value.reason}")
    elif kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{_at(path)}JSON numbers must be finite")
    elif kind is int:
        if not -_INT_BOUND < value < _INT_BOUND:
            raise ValueError(f"{_at(path)}an integer with more than {MAX_INT_DIGITS} digits")
    elif value is not None and kind is not bool:
        raise ValueError(f"{_at(path)}{kind.__name__} is not a JSON value")


def _child(path: str, key: Any, in_object: bool) -> str:
    if not in_object:
        return f"{path}[{key}]"
    return f"{path}.{key[:40]}" if path else key[:40]


def _at(path: str) -> str:
    return f"at {path}: " if path else ""


def json_field(value: Any) -> Any:
    """A JSON field's value: any JSON value; a string holding JSON (older clients) is parsed.

    A string that is not JSON at all stays a JSON string. A string that is JSON but
    not strict (NaN, Infinity, over-long numbers) or too deep is refused.
    """
    if type(value) is str:
        try:
            value = loads(value)
        except TooDeep:
            raise ValueError(f"JSON value nested deeper than {MAX_FIELD_DEPTH} levels") from None
        except ValueError:
            pass  # plain text stays a JSON string
    check_json_value(value)
    return value


def nested_deeper_than(document: Any, limit: int) -> bool:
    """True when containers nest more than `limit` levels (a scalar is level 0).

    Walks containers only, without recursion: about 1 ms for a 500-line ingest batch.
    """
    if type(document) is not dict and type(document) is not list:
        return False
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
    return False
