"""Audio file signatures: which file format a run of bytes starts with.

Two readers ask. The protocol asks about a ``media`` payload: Twilio plays it as raw mu-law
8000 Hz (https://www.twilio.com/docs/voice/media-streams/websocket-messages#send-a-media-message),
so a payload that starts with a WAV, MP3, Ogg or FLAC header was a file sent as audio and the
caller hears a click and noise (:func:`container_format`). :mod:`mediastreams.audio` asks
about a file it is given, to choose a decoder (:func:`sniff_container`). Both read the
signatures here; this module is plain Python (the session imports it, numpy stays out).
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Final

__all__ = [
    "HEADER_FIRST_BYTES",
    "MPEG_FRAME_BYTES_MAX",
    "Container",
    "container_format",
    "has_id3_tag",
    "is_mpeg_stream",
    "mpeg_frame_bytes",
    "sniff_container",
]


class Container(StrEnum):
    """A file format known by its signature. Each is a ``str``: ``Container.OGG == "Ogg"``."""

    WAV = "WAV"
    RF64 = "RF64"
    MP3 = "MP3"
    FLAC = "FLAC"
    OGG = "Ogg"


HEADER_FIRST_BYTES: Final = frozenset(b"RIOf\xff")
"""The first byte of every signature here (``RIFF``/``RF64``, ``ID3``, ``OggS``, ``fLaC``, MPEG
frame sync ``0xFF``): a payload that starts with any other byte has no file header, and hot
paths test this before calling :func:`container_format`."""

# kbit/s by [MPEG-1?][layer 1..3][index 1..14] (index 0 "free" and 15 are refused).
_MPEG_BITRATES: Final = {
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# Hz by version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and index 0..2.
_MPEG_RATES: Final = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
MPEG_FRAME_BYTES_MAX: Final = 2881
"""The longest MPEG audio frame (Layer II, 160 kbit/s, 8 kHz, padded)."""
_ALL_LAYERS: Final = (1, 2, 3)
# Layer I (MP1) files are all but extinct, and its headers are as common in quiet mu-law as
# the others': a payload is held to be MP3 only for layers II and III.
_PAYLOAD_LAYERS: Final = (2, 3)


def _mpeg_header(header: bytes) -> tuple[int, int] | None:
    """``(layer, frame length)`` of the MPEG audio frame header at the start, or ``None``."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (header[1] >> 3) & 3, (header[1] >> 1) & 3
    bitrate_index, rate_index = header[2] >> 4, (header[2] >> 2) & 3
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer, mpeg1 = 4 - layer_bits, version == 3
    bitrate = 1000 * _MPEG_BITRATES[mpeg1, layer][bitrate_index - 1]
    rate = _MPEG_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        return layer, (12 * bitrate // rate + padding) * 4
    per_frame = 144 if layer == 2 or mpeg1 else 72
    return layer, per_frame * bitrate // rate + padding


def mpeg_frame_bytes(header: bytes) -> int | None:
    """Length of the MPEG audio frame whose 4-byte header starts ``header``, or ``None``.

    ``None`` for anything that is not a valid header: reserved version, layer, bitrate or
    rate index. This rejects 0xFF 0xFF..., the start of mu-law silence.
    """
    parsed = _mpeg_header(header)
    return None if parsed is None else parsed[1]


def is_mpeg_stream(data: bytes, *, layers: Collection[int] = _ALL_LAYERS) -> bool:
    """Whether ``data`` starts with two MPEG audio frame headers of ``layers``, one frame apart.

    One valid-looking header happens in raw mu-law (quiet audio is 0x7x/0xFx bytes), so a
    second header must follow where the first frame ends: this needs the first frame and 4
    bytes more.
    """
    first = _mpeg_header(data[:4])
    if first is None or first[0] not in layers:
        return False
    length = first[1]
    second = _mpeg_header(data[length : length + 4])
    return second is not None and second[0] in layers


def has_id3_tag(data: bytes) -> bool:
    """Whether ``data`` starts with an ID3v2 tag (``ID3`` and a major version below 10)."""
    return data[:3] == b"ID3" and len(data) >= 4 and data[3] < 0x0A


def sniff_container(data: bytes, *, mpeg_layers: Collection[int] = _ALL_LAYERS) -> Container | None:
    """The file format whose signature starts ``data``, or ``None``.

    An MP3 is known by an ID3 tag, or by two MPEG frame headers (of ``mpeg_layers``) one
    frame apart.
    """
    head = data[:12]
    if head[8:12] == b"WAVE":
        if head[:4] == b"RIFF":
            return Container.WAV
        if head[:4] == b"RF64":
            return Container.RF64
    if has_id3_tag(head) or is_mpeg_stream(data, layers=mpeg_layers):
        return Container.MP3
    if head[:4] == b"fLaC":
        return Container.FLAC
    if head[:4] == b"OggS":
        return Container.OGG
    return None


def container_format(payload: bytes) -> str | None:
    """The file format whose header starts ``payload`` (``"WAV"``, ``"MP3"``...), or ``None``.

    Raw mu-law is headerless, so these signatures mean a file was sent as audio: ``"WAV"``
    (RF64 included), ``"MP3 (ID3)"``, ``"MP3"``, ``"Ogg"``, ``"FLAC"``. MP3 frame sync (0xFFE)
    is also common in quiet mu-law (0xFF is silence), so an MP3 is recognised only by an ID3
    tag or by two valid layer II or III frame headers one frame apart.
    """
    if not payload or payload[0] not in HEADER_FIRST_BYTES:
        return None
    container = sniff_container(payload, mpeg_layers=_PAYLOAD_LAYERS)
    if container is None:
        return None
    if container is Container.RF64:
        return Container.WAV.value
    if container is Container.MP3 and has_id3_tag(payload):
        return "MP3 (ID3)"
    return container.value
