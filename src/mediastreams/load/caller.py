"""What the load generator's callers send: prebuilt audio, stamped frames, and the turns.

Every caller frame is a template filled with four values: the sequence number, the chunk, the
timestamp and the payload. The template is what :func:`~mediastreams.messages.serialize`
writes for the call's ``streamSid`` (so the wire form has one definition), cut where those
values go. The payload is a 24-byte *stamp* and 136 bytes of prebuilt audio, each already in
base64 (24 bytes are 32 characters with no padding, so the two texts join into one payload).

The stamp carries a magic number, the send time and the magic again. An app
that echoes the caller's audio sends it back, and the generator reads the lag from the echo.
It is written as nibbles in the quietest mu-law codes (``0xF0``-``0xFF``, under -60 dBFS), so
that 3 ms of it in a frame of silence still sounds like silence to the app's speech detection.
"""

from __future__ import annotations

import binascii
import functools
import importlib.resources
from dataclasses import dataclass

from ..messages import Mark, Media, serialize
from ..wireformat import FRAME_BYTES, SILENCE_FRAME

__all__ = [
    "STAMP_BYTES",
    "CallerAudio",
    "Turns",
    "mark_prefix",
    "media_template",
    "read_stamp",
    "stamp",
]

STAMP_BYTES = 24
_MAGIC = 0xA55A
_QUIET = bytes.maketrans(b"0123456789abcdef", bytes(range(0xF0, 0x100)))
_LOUD = bytes.maketrans(bytes(range(0xF0, 0x100)), b"0123456789abcdef")
_MAGIC_QUIET = f"{_MAGIC:04x}".encode().translate(_QUIET)
_TIME_MASK = (1 << 64) - 1
_SPEECH = "caller-request.wav"  # the demo's caller: a real voice, 3.2 s


def stamp(sent_us: int) -> bytes:
    """The base64 text of a stamp: the magic, ``sent_us`` (64 bits), the magic again."""
    value = (_MAGIC << 80) | ((sent_us & _TIME_MASK) << 16) | _MAGIC
    encoded = value.to_bytes(12, "big").hex().encode().translate(_QUIET)
    return binascii.b2a_base64(encoded, newline=False)


def read_stamp(audio: bytes) -> int | None:
    """The send time (µs) from audio that starts with a stamp, else ``None``."""
    if audio[:4] != _MAGIC_QUIET or audio[20:STAMP_BYTES] != _MAGIC_QUIET:
        return None
    try:
        return int(audio[4:20].translate(_LOUD), 16)
    except ValueError:  # quiet codes that are not a stamp
        return None


def media_template(stream_sid: str, track: str = "inbound") -> bytes:
    """Twilio's ``media`` frame for ``stream_sid`` with ``%d``/``%d``/``%d``/``%s%s`` for the
    sequence number, the chunk, the timestamp and the two parts of the payload."""
    marks = {"sequence": 1_111_111_111, "chunk": 2_222_222_222, "timestamp": 3_333_333_333}
    text = serialize(
        Media(
            stream_sid=stream_sid,
            payload=b"\xff\xff\xff",  # "////"
            track=track,
            chunk=marks["chunk"],
            timestamp=marks["timestamp"],
            sequence_number=marks["sequence"],
        )
    ).replace("%", "%%")
    for value in marks.values():
        assert text.count(str(value)) == 1
        text = text.replace(str(value), "%d")
    assert text.count('"////"') == 1
    return text.replace('"////"', '"%s%s"').encode()


def mark_prefix(stream_sid: str) -> bytes:
    """The start of the app's ``mark`` frame for ``stream_sid``, up to the name's text."""
    text = serialize(Mark(stream_sid=stream_sid, name="\0"))
    return text[: text.index('"\\u0000"') + 1].encode()


@dataclass(frozen=True)
class Turns:
    """How the caller talks: ``talk_ms`` of speech, then ``listen_ms`` of silence, repeated.

    ``listen_ms`` 0 (the default) is a caller who talks all the time.
    """

    talk_ms: int = 1000
    listen_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> Turns:
        """``"TALK/LISTEN"`` in milliseconds, such as ``"2000/3000"``.

        Raises:
            ValueError: not two whole numbers, or a talk of 0 ms.
        """
        talk, slash, listen = text.partition("/")
        if not slash or not talk.strip().isdigit() or not listen.strip().isdigit():
            raise ValueError(f"{text!r}: write TALK_MS/LISTEN_MS, such as 2000/3000")
        turns = cls(int(talk), int(listen))
        if turns.talk_ms < 20:
            raise ValueError(f"{text!r}: the caller must talk for at least 20 ms")
        return turns

    def talking(self, frame: int, frame_ms: int) -> bool:
        """Whether the caller talks during frame number ``frame`` (from 0)."""
        if not self.listen_ms:
            return True
        return (frame * frame_ms) % (self.talk_ms + self.listen_ms) < self.talk_ms


class CallerAudio:
    """The audio after the stamp, prebuilt in base64: a loop of speech, and silence."""

    def __init__(self, speech: bytes) -> None:
        frames = [speech[i : i + FRAME_BYTES] for i in range(0, len(speech), FRAME_BYTES)]
        frames = [f for f in frames if len(f) == FRAME_BYTES] or [SILENCE_FRAME]
        self.speech = [_rest(frame) for frame in frames]
        self.silence = _rest(SILENCE_FRAME)

    def frame(self, talking: bool, frame: int) -> bytes:
        """The base64 text after the stamp for frame number ``frame``."""
        return self.speech[frame % len(self.speech)] if talking else self.silence


def _rest(frame: bytes) -> bytes:
    return binascii.b2a_base64(frame[STAMP_BYTES:], newline=False)


@functools.lru_cache(maxsize=1)
def caller_audio() -> CallerAudio:
    """The demo caller's voice, in mu-law, as :class:`CallerAudio` (read once a process)."""
    from ..audio import to_mulaw

    wav = importlib.resources.files("mediastreams.demo").joinpath("prompts", _SPEECH)
    return CallerAudio(to_mulaw(wav.read_bytes()))
