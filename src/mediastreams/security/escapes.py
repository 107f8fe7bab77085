"""What a peer sent, escaped before it goes in a log line: it cannot forge or flood the log."""

from __future__ import annotations

__all__ = ["loggable"]


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def loggable(value: object, *, max_chars: int = 200) -> str:
    """``value`` made safe for a log line: what a peer sends cannot forge or flood the log.

    Every character that is not printable (line breaks, other control and format
    characters, lone surrogates) is escaped as in a Python literal (``\\n``, ``\\x1b``,
    ``\\u2028``), backslashes are doubled so an escape cannot be faked, and the text is cut
    at ``max_chars`` with the full length said. Use it on every value from the wire: SIDs,
    paths, headers, peer strings, error texts that quote a frame.

    Args:
        value: anything; it is converted with ``str()``.
        max_chars: the longest text kept, escapes included.

    Returns:
        One line of printable text, at most ``max_chars`` plus a short suffix.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[:max_chars]
    if not (head.isprintable() and "\\" not in head):
        head = "".join(_escaped(char) for char in head)
    if len(head) <= max_chars and len(text) <= max_chars:
        return head
    return f"{head[:max_chars]}...({len(text)} chars)"


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
