"""The audio the emulator needs: files to mu-law/8000, mu-law to PCM, WAV files.

A private stand-in for :mod:`mediastreams.audio` until that package is on this branch; it
offers the same names (``to_mulaw``, ``mulaw_to_pcm``, ``wav_bytes``) so that swapping it for
the real one is a one-line change.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import miniaudio
import numpy as np

from ..exceptions import AudioError

__all__ = ["SILENCE_BYTE", "mulaw_to_pcm", "pcm_to_mulaw", "to_mulaw", "wav_bytes"]

SILENCE_BYTE = 0xFF
_RAW_SUFFIXES = (".ulaw", ".mulaw", ".ul", ".raw", ".u8k")
_BIAS = 0x84


def _decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((codes & 0x0F) << 3) + _BIAS) << ((codes & 0x70) >> 4)
    return np.where(codes & 0x80, _BIAS - magnitude, magnitude - _BIAS).astype("<i2")


def _encode_table() -> np.ndarray:
    samples = np.arange(65536, dtype=np.int32)
    samples = np.where(samples >= 32768, samples - 65536, samples)
    value = samples >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), 8159) + (_BIAS >> 2)
    bounds = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(bounds, magnitude)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


_DECODE = _decode_table()
_ENCODE = _encode_table()


def mulaw_to_pcm(mulaw: bytes) -> bytes:
    """Mu-law bytes as little-endian 16-bit PCM at the same rate."""
    return bytes(_DECODE[np.frombuffer(mulaw, dtype=np.uint8)].tobytes())


def pcm_to_mulaw(pcm16: bytes) -> bytes:
    """Little-endian 16-bit PCM as mu-law bytes."""
    return bytes(_ENCODE[np.frombuffer(pcm16, dtype="<u2")].tobytes())


def to_mulaw(source: str | os.PathLike[str] | bytes) -> bytes:
    """Any audio file (or its bytes) as headerless mu-law, 8000 Hz, mono.

    Raises:
        AudioError: the file cannot be read or decoded.
    """
    if isinstance(source, bytes):
        data, name = source, "<bytes>"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise AudioError(f"cannot read {path}: {error.strerror}") from None
        name = str(path)
        if path.suffix.lower() in _RAW_SUFFIXES:
            return data
    if not data:
        raise AudioError(f"{name} is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and _wav_format_tag(data) == 7:
        return _mulaw_wav_data(data, name)
    try:
        decoded = miniaudio.decode(
            data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=8000
        )
    except miniaudio.DecodeError:
        raise AudioError(f"{name}: not an audio file this toolkit can read") from None
    return pcm_to_mulaw(bytes(decoded.samples.tobytes()))


def _chunks(data: bytes) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data):
        tag, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        found.setdefault(tag, data[offset + 8 : offset + 8 + size])
        offset += 8 + size + (size & 1)
    return found


def _wav_format_tag(data: bytes) -> int:
    fmt = _chunks(data).get(b"fmt ", b"")
    return int(struct.unpack("<H", fmt[:2])[0]) if len(fmt) >= 2 else 0


def _mulaw_wav_data(data: bytes, name: str) -> bytes:
    chunks = _chunks(data)
    _, channels, sample_rate = struct.unpack("<HHI", chunks[b"fmt "][:8])
    if channels != 1 or sample_rate != 8000:
        raise AudioError(f"{name}: mu-law WAV at {sample_rate} Hz x {channels} channels")
    return chunks.get(b"data", b"")


def wav_bytes(
    audio: bytes, *, encoding: str = "mulaw", sample_rate: int = 8000, channels: int = 1
) -> bytes:
    """A complete WAV file of mu-law (format 7) or 16-bit PCM (format 1) audio."""
    width = 1 if encoding == "mulaw" else 2
    tag = 7 if encoding == "mulaw" else 1
    block = width * channels
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block, block, 8 * width)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(audio)) + audio + b"\x00" * (len(audio) & 1)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
