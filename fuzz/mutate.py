"""Mutations: bytes, JSON-aware, XML-aware and trace-aware, from a seeded random source.

Byte mutations (flip, insert, delete, repeat, splice with another input) find what a parser
does with broken text; the structural ones aim where hostile frames hit: a key twice, deep
nesting, lone surrogates, digits that are not ASCII, huge numbers, a value of the wrong type,
thousands of unknown keys, a file header in a payload, a DOCTYPE with entities.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Mutator"]

_TOKENS = [
    b'"',
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\ud83d\\ude00",
    b"\xed\xa0\x80",  # a surrogate encoded as UTF-8: not UTF-8
    b"\xff",
    b"\x00",
    b":",
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b"null",
    b"true",
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"-0",
    b"0.0",
    "٣".encode(),
    "²".encode(),
    "\u0663".encode(),
    b'"event"',
    b'"media"',
    b'"streamSid"',
    b'"payload"',
    b'"sequenceNumber"',
    b'"mark"',
    b'"clear"',
    b"\n",
    b" ",
]
_STRANGE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    10**70,
    1.5,
    "",
    "٣",
    "²",
    "\ud800",
    "\udc00x",
    " 5",
    "5_0",
    "+5",
    "0x10",
    [],
    {},
    ["inbound"],
    {"a": "b"},
    "A" * 5000,
]
_FILE_HEADERS = [
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"ID3\x04\x00\x00\x00\x00\x00\x00",
    b"OggS\x00\x02",
    b"fLaC\x00\x00\x00\x22",
    b"\xff\xfb\x90\x00" + bytes(413) + b"\xff\xfb\x90\x00",
]
_EVENTS = ["connected", "start", "media", "dtmf", "mark", "stop", "clear", "hangup", "Media", ""]
_XML_TOKENS = [
    b"<",
    b">",
    b"/>",
    b"</",
    b"&",
    b"&amp;",
    b"&lol;",
    b"&#0;",
    b"&#x110000;",
    b"<![CDATA[x]]>",
    b"<!-- c -->",
    b"<?pi x?>",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b'<?xml version="1.0" encoding="ISO-8859-1"?>',
    b"\xed\xa0\x80",
    b"<Stream>",
    b"<Parameter/>",
    b' url="wss://x/"',
    b' loop="99999999999999999999"',
    b' length="-1"',
    b' track="both_tracks"',
    b'xmlns="urn:x"',
]
_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>'
    b"<Response><Say>&lol2;</Say></Response>"
)


class Mutator:
    """Makes inputs of one kind (``"frame"``, ``"twiml"`` or ``"trace"``) from seeds.

    Args:
        seeds: the inputs to start from; inputs found interesting join them with :meth:`keep`.
        kind: which structural mutations apply.
        rng: the random source; a fixed seed gives the same inputs every run.
        max_bytes: inputs are cut to this length (a little over the frame limit, so that the
            limit itself is crossed too).
    """

    def __init__(
        self, seeds: Sequence[bytes], kind: str, rng: random.Random, *, max_bytes: int
    ) -> None:
        if not seeds:
            raise ValueError("a mutator needs at least one seed")
        self.seeds = list(seeds)
        self.kept: list[bytes] = []
        self.kind = kind
        self.rng = rng
        self.max_bytes = max_bytes
        structural: dict[str, list[Callable[[bytes], bytes]]] = {
            "frame": [self._json] * 6,
            "twiml": [self._xml] * 6,
            "trace": [self._trace_line] * 6,
        }
        self._mutations = [
            self._flip,
            self._insert_token,
            self._delete,
            self._repeat,
            self._splice,
            self._truncate,
            *structural[kind],
        ]

    def keep(self, data: bytes, *, limit: int = 4000) -> None:
        """Add an input to the pool (one that did something new), up to ``limit`` inputs.

        Large inputs are not kept: mutating them again makes every later input large and
        slow to build, while the large-input mutations reach that size from any seed.
        """
        if len(self.kept) < limit and len(data) <= 4096:
            self.kept.append(data)

    def next(self) -> bytes:
        """One new input: a seed or a kept input, mutated one to four times."""
        pool = self.kept if self.kept and self.rng.random() < 0.4 else self.seeds
        data = self.rng.choice(pool)
        for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3, 4))):
            data = self.rng.choice(self._mutations)(data)
        return data[: self.max_bytes]

    # --- bytes ------------------------------------------------------------------------------

    def _at(self, data: bytes) -> int:
        return self.rng.randrange(len(data) + 1)

    def _flip(self, data: bytes) -> bytes:
        if not data:
            return bytes([self.rng.randrange(256)])
        i = self.rng.randrange(len(data))
        return data[:i] + bytes([data[i] ^ (1 << self.rng.randrange(8))]) + data[i + 1 :]

    def _insert_token(self, data: bytes) -> bytes:
        tokens = _XML_TOKENS if self.kind == "twiml" else _TOKENS
        i = self._at(data)
        return data[:i] + self.rng.choice(tokens) + data[i:]

    def _delete(self, data: bytes) -> bytes:
        i = self._at(data)
        return data[:i] + data[i + self.rng.randint(1, 16) :]

    def _repeat(self, data: bytes) -> bytes:
        i = self._at(data)
        j = min(len(data), i + self.rng.randint(1, 8))
        times = self.rng.choice((2, 2, 3, 10, 10, 100, 3000))
        return data[:i] + data[i:j] * times + data[j:]

    def _splice(self, data: bytes) -> bytes:
        other = self.rng.choice(self.seeds)
        return data[: self._at(data)] + other[self._at(other) :]

    def _truncate(self, data: bytes) -> bytes:
        return data[: self._at(data)]

    # --- JSON -------------------------------------------------------------------------------

    def _json(self, data: bytes) -> bytes:
        try:
            frame = json.loads(data)
        except (ValueError, RecursionError):
            return self._insert_token(data)
        if not isinstance(frame, dict):
            return self._insert_token(data)
        return self.rng.choice(
            (
                self._duplicate_key,
                self._deepen,
                self._retype,
                self._unicode_counter,
                self._many_keys,
                self._rename,
                self._drop,
                self._file_payload,
                self._swap_event,
                self._spaced,
                self._escaped,
            )
        )(frame)

    def _paths(self, frame: dict[str, Any]) -> list[list[str]]:
        found: list[list[str]] = []
        stack: list[tuple[list[str], dict[str, Any]]] = [([], frame)]
        while stack:
            prefix, obj = stack.pop()
            for key, value in obj.items():
                found.append([*prefix, key])
                if isinstance(value, dict):
                    stack.append(([*prefix, key], value))
        return found

    def _parent(self, frame: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
        paths = self._paths(frame)
        if not paths:
            return None
        path = self.rng.choice(paths)
        parent = frame
        for key in path[:-1]:
            parent = parent[key]
        return parent, path[-1]

    def _dump(self, frame: Any) -> bytes:
        return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )

    def _duplicate_key(self, frame: dict[str, Any]) -> bytes:
        text = self._dump(frame)
        found = self._parent(frame)
        if found is None or not text.endswith(b"}"):
            return text
        _, key = found
        copy = self._dump({key: self.rng.choice([*_STRANGE_VALUES[:9], "clear", "MZx"])})[1:-1]
        if self.rng.random() < 0.5:
            return text[:-1] + b"," + copy + b"}"
        return b"{" + copy + b"," + text[1:]

    def _deepen(self, frame: dict[str, Any]) -> bytes:
        depth = self.rng.choice((2, 20, 32, 33, 100, 999, 1001, 5000, 30000))
        opener, closer = self.rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
        inner = b"1" if opener != b"[" else b""
        found = self._parent(frame)
        marker = "\x00deep\x00"
        if found is None:
            frame["x"] = marker
        else:
            parent, key = found
            parent[key] = marker
        text = self._dump(frame)
        closed = self.rng.random() < 0.8
        return text.replace(
            json.dumps(marker).encode(),
            opener * depth + inner + (closer * depth if closed else b""),
        )

    def _retype(self, frame: dict[str, Any]) -> bytes:
        found = self._parent(frame)
        if found is not None:
            parent, key = found
            parent[key] = self.rng.choice(_STRANGE_VALUES)
        return self._dump(frame)

    def _unicode_counter(self, frame: dict[str, Any]) -> bytes:
        digit = self.rng.choice(("٣", "²", "３", "𝟑", "0٣", "1\u00a0"))
        for holder, key in ((frame, "sequenceNumber"), (frame.get("media"), "timestamp")):
            if isinstance(holder, dict) and key in holder:
                holder[key] = digit
        text = self._dump(frame)
        if self.rng.random() < 0.5:  # the same, as \u escapes in ASCII text
            return json.dumps(json.loads(text)).encode()
        return text

    def _many_keys(self, frame: dict[str, Any]) -> bytes:
        count = self.rng.choice((3, 10, 10, 100, 1000, 1025, 8000))
        target = frame
        if isinstance(frame.get("media"), dict) and self.rng.random() < 0.5:
            target = frame["media"]
        prefix = self.rng.choice(("k", "pay", "playload", "x" * 70))
        target.update((prefix + str(n), n) for n in range(count))
        return self._dump(frame)

    def _rename(self, frame: dict[str, Any]) -> bytes:
        found = self._parent(frame)
        if found is not None:
            parent, key = found
            new = self.rng.choice(("playload", "stream_sid", "Event", "data", "sid", key.upper()))
            parent[new] = parent.pop(key)
        return self._dump(frame)

    def _drop(self, frame: dict[str, Any]) -> bytes:
        found = self._parent(frame)
        if found is not None:
            parent, key = found
            del parent[key]
        return self._dump(frame)

    def _file_payload(self, frame: dict[str, Any]) -> bytes:
        media = frame.get("media")
        if isinstance(media, dict):
            audio = self.rng.choice(_FILE_HEADERS) + self.rng.randbytes(self.rng.randint(0, 300))
            media["payload"] = base64.b64encode(audio).decode()
        return self._dump(frame)

    def _swap_event(self, frame: dict[str, Any]) -> bytes:
        frame["event"] = self.rng.choice(_EVENTS)
        return self._dump(frame)

    def _spaced(self, frame: dict[str, Any]) -> bytes:
        return json.dumps(frame, indent=self.rng.choice((None, 1))).encode()

    def _escaped(self, frame: dict[str, Any]) -> bytes:
        text = json.dumps(frame)  # every non-ASCII character as \u escapes
        return text.replace('"', '"\\ud800', self.rng.randint(0, 1)).encode()

    # --- XML --------------------------------------------------------------------------------

    def _xml(self, data: bytes) -> bytes:
        choice = self.rng.randrange(6)
        i = data.find(b"<Response>")
        at = i + len(b"<Response>") if i >= 0 else self._at(data)
        if choice == 0:
            depth = self.rng.choice((10, 100, 1000, 5000, 20000))
            tag = self.rng.choice((b"X", b"Say", b"Connect", b"Stream"))
            return data[:at] + b"<" + tag + b">" * 1 + (b"<" + tag + b">") * depth + data[at:]
        if choice == 1:
            return _LAUGHS if self.rng.random() < 0.5 else b"<!DOCTYPE x>" + data
        if choice == 2:
            value = self.rng.choice((b"a" * 60000, b"9" * 5000, b"&amp;" * 10000, b"\xc3\xa9" * 5))
            name = self.rng.choice((b"url", b"loop", b"length", b"name", b"track", b"value"))
            return data[:at] + b"<Pause " + name + b'="' + value + b'"/>' + data[at:]
        if choice == 3:
            return data.replace(b"<", b"<" + self.rng.choice((b"x:", b"Unknown", b"")), 1)
        if choice == 4:
            encoding = self.rng.choice(("utf-16", "latin-1"))
            return data.decode("utf-8", "replace").encode(encoding, "replace")
        return data[:at] + self.rng.choice(_XML_TOKENS) * self.rng.randint(1, 50) + data[at:]

    # --- traces -----------------------------------------------------------------------------

    def _trace_line(self, data: bytes) -> bytes:
        lines = data.split(b"\n")
        i = self.rng.randrange(len(lines))
        try:
            record = json.loads(lines[i])
        except (ValueError, RecursionError):
            lines[i] = self._insert_token(lines[i])
            return b"\n".join(lines)
        if not isinstance(record, dict):
            return data
        choice = self.rng.randrange(5)
        if choice == 0 and isinstance(record.get("text"), str):  # a hostile frame inside
            text = record["text"].encode("utf-8", "surrogatepass")
            record["text"] = self._json(text).decode("utf-8", "replace")
        elif choice == 1:
            record["t"] = self.rng.choice([*_STRANGE_VALUES, 1e308, -5, 10**60])
        elif choice == 2:
            record["from"] = self.rng.choice(("app", "twilio", "caller", None, 1))
        elif choice == 3:
            record["binary"] = self.rng.choice(("AAAA", "!!", "", base64.b64encode(b"{}").decode()))
        else:
            record["redacted"] = self.rng.choice((["media.payload"], "x", [1], []))
            record["payload_bytes"] = self.rng.choice((160, -1, 10**9, "x", None))
        lines[i] = self._dump(record)
        if self.rng.random() < 0.1:
            lines.insert(i, lines[i])
        return b"\n".join(lines)
