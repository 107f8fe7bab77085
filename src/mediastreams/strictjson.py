"""Strict, bounded JSON for frames that failed the fast path.

``json.loads`` reads what other parsers read differently or refuse: two equal keys in one
object (it keeps the last; another parser may keep the first), lone UTF-16 surrogates
(``"\\ud800"``, which no UTF-8 text can carry), ``NaN`` and ``Infinity``, integers of any
length (whose conversion takes time quadratic in their length), and nesting as deep as the
stack allows, then ``RecursionError``. :func:`load` refuses each of these with its own
:class:`StrictJSONError` subclass, in time linear in the length of the text.

Bounds: :data:`MAX_DEPTH` levels of objects and arrays (a Media Streams frame has 3),
:data:`MAX_MEMBERS` keys and objects in all, :data:`MAX_INT_DIGITS` digits in an integer.
"""

from __future__ import annotations

import json
import sys
from array import array
from itertools import accumulate
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_MEMBERS",
    "DuplicateKey",
    "LoneSurrogate",
    "NotJSON",
    "NumberTooLong",
    "StrictJSONError",
    "TooDeep",
    "TooManyMembers",
    "load",
]

MAX_DEPTH = 32
"""Objects and arrays nested deeper than this are refused (a frame nests 3 deep)."""
MAX_MEMBERS = 1024
"""Keys and objects in all of one frame (a ``start`` frame has about 20, plus parameters)."""
MAX_INT_DIGITS = 4300
"""Digits in one JSON integer: Python's own default bound (``sys.get_int_max_str_digits``),
kept when a program lifts it, since converting a long integer takes time quadratic in its
length. Twilio's largest is a sample rate."""


class StrictJSONError(ValueError):
    """The text is not JSON that a frame may be; ``str()`` says why, in a sentence."""


class NotJSON(StrictJSONError):
    """Not JSON at all: a syntax error, ``NaN``, ``Infinity``."""


class TooDeep(StrictJSONError):
    """Objects and arrays nested more than :data:`MAX_DEPTH` levels."""


class TooManyMembers(StrictJSONError):
    """More than :data:`MAX_MEMBERS` keys in all."""


class DuplicateKey(StrictJSONError):
    """One object has the same key twice.

    Attributes:
        key: the repeated key.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {_quote(key)} appears twice in one object")
        self.key = key


class LoneSurrogate(StrictJSONError):
    """A string holds half of a UTF-16 surrogate pair, which UTF-8 cannot encode."""


class NumberTooLong(StrictJSONError):
    """An integer of more than :data:`MAX_INT_DIGITS` digits."""


def load(text: str) -> Any:
    """Decode ``text`` as JSON, refusing what a frame may not be.

    Raises:
        StrictJSONError: one of its subclasses, saying what is wrong.
    """
    _check_raw_surrogates(text)
    _check_depth(text)
    members = _MemberCount()
    # Python refuses integers past its bound by itself (a ValueError below); a hook per integer
    # costs a call each, so it runs only where a program lifted that bound.
    bound = sys.get_int_max_str_digits()
    parse_int = _bounded_int if bound == 0 or bound > MAX_INT_DIGITS else None
    try:
        value = json.loads(
            text,
            object_pairs_hook=members.object,
            parse_constant=_refuse_constant,
            parse_int=parse_int,
        )
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise TooDeep(_TOO_DEEP) from None
    except StrictJSONError:
        raise
    except json.JSONDecodeError as error:  # with the line and column
        raise NotJSON(str(error)) from None
    except ValueError:  # only int() raises another: past sys.get_int_max_str_digits()
        raise NumberTooLong(f"an integer of more than {MAX_INT_DIGITS} digits") from None
    _check_escaped_surrogates(text, value)
    return value


_TOO_DEEP = f"objects and arrays are nested more than {MAX_DEPTH} levels deep"


class _MemberCount:
    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0

    def object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # An object counts as a member too, so that thousands of {} stop here as well.
        self.total += len(pairs) + 1
        if self.total > MAX_MEMBERS:
            raise TooManyMembers(f"the frame has more than {MAX_MEMBERS} keys and objects")
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:  # pragma: no branch - a repeat is there
                if key in seen:
                    raise DuplicateKey(key)
                seen.add(key)
        return obj


def _refuse_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON value (JSON has no NaN or Infinity)")


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise NumberTooLong(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(digits)


# --- lone surrogates ------------------------------------------------------------------------


def _check_raw_surrogates(text: str) -> None:
    if not text.isascii():  # O(1) on str: a flag of the string
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise LoneSurrogate("the text holds a lone UTF-16 surrogate character") from None


def _check_escaped_surrogates(text: str, value: Any) -> None:
    # json.loads joins a valid pair ("\ud83d\ude00") into one character and leaves a lone
    # half as it is, which UTF-8 cannot encode. The depth is bounded, so dumps cannot recurse far.
    if "\\u" not in text:
        return
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except UnicodeEncodeError:
        raise LoneSurrogate(
            "a string holds a lone UTF-16 surrogate escape such as \\ud800"
        ) from None


# --- nesting depth --------------------------------------------------------------------------
# Linear and in C but for the last step. Drop the insides of strings (once escaped backslashes
# and quotes are gone, the quotes left delimit strings) and keep only brackets, as +1/-1 bytes.
# A run of MAX_DEPTH + 1 openers is found by one substring search (the usual attack: thousands
# of "["). Then leaves ("[]", "{}") are dropped twice over, which removes most of any long
# flat text; in balanced brackets every deepest point is a leaf, so each round lowers the depth
# by exactly one, and in unbalanced ones (not JSON) by at most one. The depth of what is left,
# plus the rounds, is the depth (or more, for text that is not JSON anyway).

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_TOO_MANY_OPENERS = b"\x01" * (MAX_DEPTH + 1)
_LEAF = b"\x01\xff"
_LEAF_ROUNDS = 2


def _check_depth(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside_strings = "".join(unescaped.split('"')[0::2])
    signs = outside_strings.encode("utf-8", "surrogatepass").translate(_SIGNS, _NOT_BRACKETS)
    if _TOO_MANY_OPENERS in signs:
        raise TooDeep(_TOO_DEEP)
    for _ in range(_LEAF_ROUNDS):
        signs = signs.replace(_LEAF, b"")
    bound = MAX_DEPTH - _LEAF_ROUNDS
    if next(filter(bound.__lt__, accumulate(array("b", signs))), None) is not None:
        raise TooDeep(_TOO_DEEP)


def _quote(key: str) -> str:
    return "`" + (key if len(key) <= 64 else key[:64] + "…") + "`"
