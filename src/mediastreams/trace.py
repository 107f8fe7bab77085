"""Frame traces: every frame of a call, both ways, one JSON object per line.

The format, written by the emulator and read by ``mediastreams inspect``::

    {"t": 0.021, "from": "twilio", "text": "<the frame exactly as sent>"}
    {"t": 0.305, "from": "app", "binary": "<base64 of a binary frame>"}

``t`` is seconds since the WebSocket opened. A line may also carry ``"redacted":
["media.payload"]`` when the payload was left out to keep the trace small (the frame then has
``"payload": ""`` and the line ``"payload_bytes": N``); :func:`frame_text` puts back a
stand-in of the same length so the frame can still be checked.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import strictjson
from .wireformat import FRAME_BYTES, SENDERS, SILENCE_BYTE, Sender

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "TraceEntry",
    "TraceError",
    "TraceWriter",
    "frame_text",
    "read_trace",
]

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest redacted payload a trace line may claim (a stand-in of that size is built)."""


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One frame of a trace. Exactly one of ``text`` and ``binary`` is set."""

    line: int
    t: float
    sender: Sender
    text: str | None = None
    binary: bytes | None = None
    redacted: tuple[str, ...] = ()
    payload_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class TraceError:
    """A line of a trace that could not be read."""

    line: int
    message: str


def read_trace(lines: IO[str]) -> Iterator[TraceEntry | TraceError]:
    """Each line of a trace as an entry, or as an error saying why it could not be read."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        yield _read_line(number, raw)


def _read_line(number: int, raw: str) -> TraceEntry | TraceError:
    try:
        record = strictjson.load(raw)  # bounded: a trace is untrusted input too
    except strictjson.StrictJSONError:
        return TraceError(number, "not a JSON object (cut short, or not a trace line)")
    if not isinstance(record, dict):
        return TraceError(number, "not a JSON object")
    sender = record.get("from")
    if sender not in SENDERS:
        return TraceError(number, '"from" must be "twilio" or "app"')
    t = record.get("t", 0.0)
    if not isinstance(t, int | float) or isinstance(t, bool) or not _finite(t):
        return TraceError(number, '"t" must be a number of seconds')
    return _entry(number, float(t), sender, record)


def _finite(t: float) -> bool:
    try:
        return math.isfinite(t)
    except OverflowError:  # an integer too large for a float
        return False


def _entry(
    number: int, t: float, sender: Sender, record: dict[str, Any]
) -> TraceEntry | TraceError:
    text, binary = record.get("text"), record.get("binary")
    redacted = record.get("redacted", [])
    payload_bytes = record.get("payload_bytes")
    if isinstance(text, str) and binary is None:
        if not isinstance(redacted, list) or not all(isinstance(r, str) for r in redacted):
            return TraceError(number, '"redacted" must be a list of field names')
        size = payload_bytes if isinstance(payload_bytes, int) else None
        if size is not None and not 0 < size <= MAX_PAYLOAD_BYTES:
            return TraceError(number, f'"payload_bytes" must be 1 to {MAX_PAYLOAD_BYTES}')
        return TraceEntry(
            number, t, sender, text=text, redacted=tuple(redacted), payload_bytes=size
        )
    if isinstance(binary, str) and text is None:
        try:
            return TraceEntry(number, t, sender, binary=base64.b64decode(binary, validate=True))
        except ValueError:
            return TraceError(number, '"binary" is not valid base64')
    return TraceError(number, 'a line needs either "text" (a string) or "binary" (base64)')


def frame_text(entry: TraceEntry) -> str:
    """The frame's text, with a redacted payload replaced by mu-law silence of its length."""
    assert entry.text is not None
    if "media.payload" not in entry.redacted:
        return entry.text
    try:
        frame = strictjson.load(entry.text)
        silence = bytes([SILENCE_BYTE]) * (entry.payload_bytes or FRAME_BYTES)
        frame["media"]["payload"] = base64.b64encode(silence).decode()
    except (strictjson.StrictJSONError, KeyError, TypeError):
        return entry.text
    return json.dumps(frame, separators=(",", ":"))


class TraceWriter:
    """Writes a trace as frames go by.

    Args:
        path: where to write; the file is replaced.
        payloads: keep media payloads (large); by default they are left out.
        parameters: keep custom parameter values; by default they are written as ``"***"``,
            since apps put tokens there.
    """

    def __init__(self, path: str | Path, *, payloads: bool = False, parameters: bool = False):
        self.path = Path(path)
        self._file = self.path.open("w", encoding="utf-8")
        self._payloads = payloads
        self._parameters = parameters

    def write(
        self, t: float, sender: Sender, frame: str | bytes, *, keep_payload: bool = False
    ) -> None:
        """Add one frame, sent ``t`` seconds after the socket opened.

        ``keep_payload`` keeps this frame's payload even when payloads are left out: the
        evidence of a violation in the payload itself (a file header, bad base64).
        """
        record: dict[str, Any] = {"t": round(t, 6), "from": sender}
        if isinstance(frame, bytes):
            record["binary"] = base64.b64encode(frame).decode("ascii")
        elif keep_payload and not self._payloads:
            self._payloads = True
            try:
                record.update(self._redact(frame))
            finally:
                self._payloads = False
        else:
            record.update(self._redact(frame))
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")

    def _redact(self, text: str) -> dict[str, Any]:
        if (self._payloads or '"payload"' not in text) and (
            self._parameters or '"customParameters"' not in text
        ):
            return {"text": text}
        try:
            frame = json.loads(text)
        except ValueError:
            return {"text": text}
        extra: dict[str, Any] = {}
        media = frame.get("media") if isinstance(frame, dict) else None
        if not self._payloads and isinstance(media, dict) and isinstance(media.get("payload"), str):
            encoded = media["payload"]
            media["payload"] = ""
            size = len(encoded) * 3 // 4 - encoded[-2:].count("=")
            extra = {"redacted": ["media.payload"], "payload_bytes": size}
        start = frame.get("start") if isinstance(frame, dict) else None
        if not self._parameters and isinstance(start, dict):
            params = start.get("customParameters")
            if isinstance(params, dict):
                start["customParameters"] = {key: "***" for key in params}
        return {"text": json.dumps(frame, separators=(",", ":"), ensure_ascii=False), **extra}

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
