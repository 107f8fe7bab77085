"""WAV files: a reader for every common variant, and a writer for mu-law or 16-bit PCM.

The reader walks the RIFF chunks itself (stdlib ``wave`` reads only integer PCM): integer PCM
of 8/16/24/32 bits, IEEE float, mu-law, A-law, ``WAVE_FORMAT_EXTENSIBLE`` headers, and any
chunks (``LIST``, ``fact``, ``bext``...) before or after ``data``. A data size of
``0xFFFFFFFF`` (written by streaming encoders that cannot seek back) means "to the end".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Final, Literal

from ..exceptions import EmptyAudio, TruncatedAudio, UnknownAudioFormat, UnsupportedAudio
from .frames import MULAW_SAMPLE_RATE
from .samples import AudioFormat, Encoding

__all__ = ["WavFile", "parse_wav", "read_wav_header", "wav_bytes", "write_wav"]

_PCM: Final = 0x0001
_FLOAT: Final = 0x0003
_ALAW: Final = 0x0006
_MULAW: Final = 0x0007
_EXTENSIBLE: Final = 0xFFFE
_ENCODINGS: Final[dict[int, Encoding]] = {
    _PCM: "pcm",
    _FLOAT: "float",
    _ALAW: "alaw",
    _MULAW: "mulaw",
}
# The GUID of an extensible header is the format tag followed by these 14 bytes.
_GUID_TAIL: Final = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_SIZE_UNKNOWN: Final = 0xFFFFFFFF


@dataclass(frozen=True)
class WavFile:
    """A parsed WAV file.

    Attributes:
        format: what the samples are.
        data: the samples, without the header; whole sample frames only.
    """

    format: AudioFormat
    data: bytes


def parse_wav(data: bytes, name: str = "<bytes>") -> WavFile:
    """Parse a RIFF/WAVE file held in memory.

    Args:
        data: the whole file.
        name: how to name the file in error messages.

    Raises:
        UnknownAudioFormat: not a RIFF/WAVE file, or ``data`` before ``fmt``.
        UnsupportedAudio: a codec other than PCM, float, mu-law or A-law, or an odd width.
        TruncatedAudio: the file ends before the data its header declares.
        EmptyAudio: the data chunk holds no samples.
    """
    if data[:4] != b"RIFF":
        raise UnknownAudioFormat(f"{name}: not a WAV file (no RIFF/WAVE header)")
    found = _find_data(data, name, complete=True)
    assert found is not None  # complete=True raises instead
    fmt, body, size = found
    riff_size = struct.unpack_from("<I", data, 4)[0]
    return WavFile(fmt, _data_chunk(data, body, size, riff_size, fmt, name))


def read_wav_header(data: bytes, name: str = "<stream>") -> tuple[AudioFormat, int] | None:
    """The format and the offset of the first sample of a WAV stream's first bytes.

    For streams (TTS services that send a WAV header, then samples): returns ``None`` while
    ``data`` does not yet reach the ``data`` chunk. Raises like :func:`parse_wav`.
    """
    found = _find_data(data, name, complete=False)
    return None if found is None else found[:2]


def _find_data(data: bytes, name: str, *, complete: bool) -> tuple[AudioFormat, int, int] | None:
    """Walk the chunks up to ``data``: (format, offset of the samples, declared size)."""
    if len(data) >= 12 and (data[:4] != b"RIFF" or data[8:12] != b"WAVE"):
        raise UnknownAudioFormat(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt: AudioFormat | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = struct.unpack_from("<I", data, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt ":
            if body + size > len(data):
                break
            fmt = _parse_fmt(data[body : body + size], name)
        elif chunk_id == b"data":
            if fmt is None:
                raise UnknownAudioFormat(f"{name}: WAV data chunk comes before any fmt chunk")
            return fmt, body, size
        offset = body + size + (size & 1)  # chunks are padded to an even length
    if not complete:
        return None
    if len(data) < 12:
        raise TruncatedAudio(f"{name}: WAV file is cut short inside its header")
    if fmt is None:
        raise TruncatedAudio(f"{name}: WAV file has no complete fmt chunk (truncated?)")
    raise TruncatedAudio(f"{name}: WAV file has no data chunk (truncated after its header)")


def _data_chunk(
    data: bytes, body: int, size: int, riff_size: int, fmt: AudioFormat, name: str
) -> bytes:
    available = len(data) - body
    if size == _SIZE_UNKNOWN or (size == 0 and riff_size in (0, _SIZE_UNKNOWN)):
        size = available - available % fmt.frame_bytes  # streamed: take whole frames to the end
    if size > available:
        raise TruncatedAudio(
            f"{name}: WAV file is truncated: its header declares {size} bytes of audio but "
            f"only {available} follow; re-export or re-download the file"
        )
    if size % fmt.frame_bytes:
        raise TruncatedAudio(
            f"{name}: WAV data is {size} bytes, not a whole number of {fmt.frame_bytes}-byte "
            f"sample frames; the file is damaged"
        )
    if size == 0:
        raise EmptyAudio(f"{name}: WAV file holds no audio (its data chunk is empty)")
    return data[body : body + size]


def _parse_fmt(chunk: bytes, name: str) -> AudioFormat:
    if len(chunk) < 16:
        raise UnknownAudioFormat(f"{name}: WAV fmt chunk is {len(chunk)} bytes, expected 16+")
    tag, channels, sample_rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _EXTENSIBLE:
        if len(chunk) < 40 or chunk[26:40] != _GUID_TAIL:
            raise UnsupportedAudio(f"{name}: WAV extensible header with an unknown sub-format")
        tag = struct.unpack_from("<H", chunk, 24)[0]
    encoding = _ENCODINGS.get(tag)
    if encoding is None:
        raise UnsupportedAudio(
            f"{name}: WAV codec 0x{tag:04x} is not supported; convert it to PCM, float, "
            f"mu-law or A-law WAV (or MP3/FLAC/OGG) first"
        )
    if channels == 0 or sample_rate == 0 or bits == 0:
        raise UnknownAudioFormat(
            f"{name}: WAV header is damaged ({channels} channels, {sample_rate} Hz, {bits} bits)"
        )
    # The container width (block_align) is authoritative: 24 valid bits in 32-bit slots
    # are read as 32-bit samples, which are left-justified.
    sample_width = block_align // channels if block_align else (bits + 7) // 8
    try:
        return AudioFormat(sample_rate, sample_width, channels, encoding)
    except UnsupportedAudio as error:
        raise UnsupportedAudio(f"{name}: WAV has an {error}") from None


def wav_bytes(
    audio: bytes,
    *,
    encoding: Literal["mulaw", "pcm"] = "mulaw",
    sample_rate: int = MULAW_SAMPLE_RATE,
    channels: int = 1,
) -> bytes:
    """A complete WAV file holding ``audio``.

    Args:
        audio: headerless mu-law (``encoding="mulaw"``) or little-endian 16-bit PCM
            (``encoding="pcm"``), interleaved if ``channels`` > 1.
        encoding: ``mulaw`` (format 7, 8 bits) or ``pcm`` (format 1, 16 bits).
        sample_rate: samples per second per channel.
        channels: interleaved channels in ``audio``.
    """
    width = 1 if encoding == "mulaw" else 2
    block_align = width * channels
    if len(audio) % block_align:
        raise ValueError(f"{len(audio)} bytes is not a whole number of {block_align}-byte frames")
    tag = _MULAW if encoding == "mulaw" else _PCM
    fmt = struct.pack(
        "<HHIIHH", tag, channels, sample_rate, sample_rate * block_align, block_align, 8 * width
    )
    chunks = [b"fmt ", struct.pack("<I", len(fmt) + 2 if tag == _MULAW else len(fmt)), fmt]
    if tag == _MULAW:  # non-PCM formats carry cbSize and a fact chunk with the frame count
        chunks += [b"\x00\x00", b"fact", struct.pack("<II", 4, len(audio) // block_align)]
    chunks += [b"data", struct.pack("<I", len(audio)), audio, b"\x00" * (len(audio) & 1)]
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def write_wav(
    target: str | os.PathLike[str] | BinaryIO,
    audio: bytes,
    *,
    encoding: Literal["mulaw", "pcm"] = "mulaw",
    sample_rate: int = MULAW_SAMPLE_RATE,
    channels: int = 1,
) -> None:
    """Write ``audio`` as a WAV file (mu-law or 16-bit PCM) to a path or binary file.

    Args:
        target: a path, or a file object opened for binary writing.
        audio: headerless mu-law or little-endian 16-bit PCM, see :func:`wav_bytes`.
        encoding: ``mulaw`` or ``pcm``.
        sample_rate: samples per second per channel.
        channels: interleaved channels in ``audio``.
    """
    content = wav_bytes(audio, encoding=encoding, sample_rate=sample_rate, channels=channels)
    if isinstance(target, (str, os.PathLike)):
        with open(target, "wb") as file:
            file.write(content)
    else:
        target.write(content)
