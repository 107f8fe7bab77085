"""Audio files to raw samples: format sniffing, WAV through our own parser, the rest through
miniaudio.

miniaudio decodes MP3, FLAC and Ogg/Vorbis from a 1.9 MB wheel with no numpy, and was the
fastest MP3 decoder measured (see ``docs/audio.md``). Files are decoded at their native rate
and channel count; resampling is soxr's job, because miniaudio's own converter aliases.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import miniaudio

from ..containers import MPEG_FRAME_BYTES_MAX, Container, mpeg_frame_bytes, sniff_container
from ..exceptions import (
    AudioError,
    CorruptedAudio,
    EmptyAudio,
    TruncatedAudio,
    UnknownAudioFormat,
    UnsupportedAudio,
)
from .frames import bytes_to_ms
from .samples import MULAW_8K, AudioFormat
from .wav import parse_wav

__all__ = [
    "MPEG_FRAME_BYTES_MAX",
    "RAW_MULAW_SUFFIXES",
    "DecodedAudio",
    "decode_bytes",
    "decode_file",
    "mpeg_frame_bytes",
    "read_bytes",
    "sniff",
]

RAW_MULAW_SUFFIXES: Final = frozenset({".ulaw", ".mulaw", ".ul", ".raw", ".mu"})
"""File suffixes read as headerless mu-law/8000 when the bytes carry no known header."""

# MP3 files may lose this many sample frames at the end to encoder padding; more is a cut.
_MP3_SLACK_FRAMES: Final = 2 * 1152
# Read by Python callers and on the command line alike, so it names both ways to declare.
_DECLARE_RAW: Final = (
    "for raw samples declare the format: AudioFormat(8000, 1, 1, 'mulaw') in Python, "
    "--input-rate 8000 --input-encoding mulaw with mediastreams convert"
)


@dataclass(frozen=True)
class DecodedAudio:
    """Samples decoded from a file, at its native rate and channel count.

    Attributes:
        container: what the input was: ``WAV``, ``MP3``, ``FLAC``, ``Ogg/Vorbis``, ``raw``.
        format: the samples' format.
        data: interleaved samples (whole sample frames).
    """

    container: str
    format: AudioFormat
    data: bytes | memoryview

    @property
    def duration_ms(self) -> float:
        """Duration of the audio in milliseconds."""
        return bytes_to_ms(
            len(self.data),
            sample_rate=self.format.sample_rate,
            sample_width=self.format.sample_width,
            channels=self.format.channels,
        )

    def describe(self) -> str:
        """E.g. ``MP3: 16-bit PCM, 44100 Hz, stereo, 60.00 s``."""
        return f"{self.container}: {self.format.describe()}, {self.duration_ms / 1000:.2f} s"


def sniff(data: bytes) -> Container | None:
    """Name the container by its signature: ``WAV``, ``MP3``, ``FLAC``, ``Ogg``, or ``None``.

    A bare MPEG stream (no ID3 tag) is recognised by two consecutive frame headers, so it
    needs the first frame and 4 bytes more. RF64 is not decoded here: ``None``.
    """
    container = sniff_container(data)
    return None if container is Container.RF64 else container


_UNSUPPORTED_SIGNATURES: Final = {
    b"RIFX": "big-endian WAV (RIFX)",
    b"RF64": "RF64 (64-bit WAV)",
    b"FORM": "AIFF",
    b"\x1aE\xdf\xa3": "WebM/Matroska",
    b"caff": "CAF",
}


def _unsupported_container(data: bytes) -> str | None:
    if data[4:8] == b"ftyp":
        return "MP4/M4A (AAC)"
    return _UNSUPPORTED_SIGNATURES.get(data[:4])


def decode_bytes(data: bytes, name: str = "<bytes>") -> DecodedAudio:
    """Decode a whole file held in memory, choosing the decoder by its signature.

    Args:
        data: the file's bytes (WAV, MP3, FLAC or Ogg/Vorbis).
        name: how to name the input in error messages.

    Raises:
        EmptyAudio: zero bytes, or a file with no samples.
        UnknownAudioFormat: no known signature (raw audio must be declared, see ``to_mulaw``).
        UnsupportedAudio: a known container with a codec not decoded here.
        TruncatedAudio: the file is cut short.
    """
    if not data:
        raise EmptyAudio(f"{name}: is empty (0 bytes)")
    container = sniff(data)
    if container is Container.WAV:
        wav = parse_wav(data, name)
        return DecodedAudio("WAV", wav.format, wav.data)
    if container is None:
        other = _unsupported_container(data)
        if other:
            raise UnsupportedAudio(
                f"{name}: {other} is not supported; convert it to WAV, MP3, FLAC or Ogg/Vorbis"
            )
        if mpeg_frame_bytes(data[:4]) is not None:
            raise UnknownAudioFormat(
                f"{name}: starts like an MP3 frame but no second frame follows: a damaged MP3, "
                f"or raw audio; {_DECLARE_RAW}"
            )
        raise UnknownAudioFormat(
            f"{name}: unknown audio format (no WAV, MP3, FLAC or Ogg signature at the start); "
            f"{_DECLARE_RAW}"
        )
    if container is Container.OGG and b"OpusHead" in data[:64]:
        raise UnsupportedAudio(f"{name}: Ogg/Opus is not supported; use Ogg/Vorbis, MP3 or FLAC")
    return _decode_compressed(data, container, name)


# What miniaudio decodes: the name in messages, and the function that reads the header.
_COMPRESSED: Final = {
    Container.MP3: ("MP3", miniaudio.mp3_get_info),
    Container.FLAC: ("FLAC", miniaudio.flac_get_info),
    Container.OGG: ("Ogg/Vorbis", miniaudio.vorbis_get_info),
}


def _decode_compressed(data: bytes, container: Container, name: str) -> DecodedAudio:
    label, info_of = _COMPRESSED[container]
    try:
        info = info_of(data)
        sound = miniaudio.decode(
            data,
            output_format=miniaudio.SampleFormat.SIGNED16,
            nchannels=info.nchannels,
            sample_rate=info.sample_rate,
        )
    except miniaudio.MiniaudioError as error:
        raise CorruptedAudio(
            f"{name}: looks like {label} but cannot be decoded (corrupted or truncated): {error}"
        ) from None
    expected = info.num_frames
    if (expected and sound.num_frames + _MP3_SLACK_FRAMES < expected) or (
        container is Container.OGG and not expected and sound.num_frames
    ):
        raise TruncatedAudio(
            f"{name}: {label} file is truncated: it decodes to {sound.num_frames} sample "
            f"frames of the {expected or 'unknown number'} its header promises; re-export it"
        )
    if sound.num_frames == 0:
        raise EmptyAudio(f"{name}: {label} file holds no audio")
    fmt = AudioFormat(sound.sample_rate, 2, sound.nchannels, "pcm")
    return DecodedAudio(label, fmt, memoryview(sound.samples).cast("B"))


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file; an :class:`AudioError` naming it if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise AudioError(f"{os.fspath(path)}: cannot read: {error.strerror or error}") from None


def decode_file(path: str | os.PathLike[str]) -> DecodedAudio:
    """Read and decode an audio file.

    Files with a WAV, MP3, FLAC or Ogg signature are decoded as such, whatever their suffix.
    A file with no signature and a raw suffix (``.ulaw``, ``.mulaw``, ``.ul``, ``.raw``,
    ``.mu``) is headerless mu-law/8000, Twilio's own format.

    Raises:
        AudioError: see :func:`decode_bytes`; also when the file cannot be read.
    """
    file = Path(path)
    data = read_bytes(file)
    if sniff(data) is None and file.suffix.lower() in RAW_MULAW_SUFFIXES:
        if not data:
            raise EmptyAudio(f"{file}: is empty (0 bytes)")
        return DecodedAudio("raw", MULAW_8K, data)
    return decode_bytes(data, str(file))
