"""Any source to what Twilio plays (headerless mu-law/8000 mono), and mu-law back to PCM.

- :func:`to_mulaw` / :func:`convert`: a path, file bytes (sniffed), raw bytes of a declared
  :class:`AudioFormat`, or a numpy array with its sample rate.
- :class:`MulawEncoder` and :func:`stream_to_mulaw`: chunks of PCM (TTS output) converted as
  they come, with any WAV header at the start of the stream read and stripped.
- :class:`MulawDecoder` and :func:`mulaw_to_pcm`: inbound mu-law to 16-bit PCM at 8/16/24/48 kHz.
- :func:`mulaw_chunks` and :func:`describe_source`: what a session's ``play()`` does with a
  source that is not plain mu-law bytes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from ..containers import Container
from ..exceptions import EmptyAudio, TruncatedAudio, UnknownAudioFormat, UnsupportedAudio
from . import mulaw
from .decode import (
    DecodedAudio,
    decode_bytes,
    decode_file,
    mpeg_frame_bytes,
    read_bytes,
    sniff,
)
from .frames import MULAW_SAMPLE_RATE, bytes_to_ms
from .resample import Resampler
from .samples import MULAW_8K, AudioFormat, to_mono_int16
from .wav import read_wav_header

__all__ = [
    "AudioSource",
    "Conversion",
    "MulawDecoder",
    "MulawEncoder",
    "Progress",
    "convert",
    "describe_source",
    "mulaw_chunks",
    "mulaw_to_pcm",
    "stream_to_mulaw",
    "to_mulaw",
]

AudioSource: TypeAlias = (
    "str | os.PathLike[str] | bytes | bytearray | memoryview | npt.NDArray[Any]"
)
"""What :func:`to_mulaw` takes: a path, file bytes, raw bytes (with a format) or an array."""

Progress: TypeAlias = Callable[[float, float], None]
"""Called as ``progress(done_ms, total_ms)`` while a long input is converted."""

# Long inputs are resampled in blocks this long, so progress can be reported between them.
_BLOCK_SAMPLES_MAX: Final = 1 << 18

# File signatures a stream may start with (an MPEG frame sync is checked on its own).
_SIGNATURES: Final = (b"RIFF", b"ID3", b"OggS", b"fLaC")

_ARRAY_ENCODINGS: Final = {
    "i": "pcm",
    "u": "pcm",
    "f": "float",
}


@dataclass(frozen=True)
class Conversion:
    """The result of :func:`convert`.

    Attributes:
        mulaw: headerless mu-law, 8000 Hz, mono: what Twilio plays.
        container: what the input was (``WAV``, ``MP3``, ``FLAC``, ``Ogg/Vorbis``, ``raw``,
            ``array``).
        input_format: the input's samples.
        input_duration_ms: the input's duration.
        reencoded: ``False`` when the input already was mu-law/8000 mono and only lost its
            header.
    """

    mulaw: bytes
    container: str
    input_format: AudioFormat
    input_duration_ms: float
    reencoded: bool

    @property
    def duration_ms(self) -> float:
        """Duration of :attr:`mulaw` in milliseconds."""
        return bytes_to_ms(len(self.mulaw))


def _array_source(array: npt.NDArray[Any], sample_rate: int | None) -> DecodedAudio:
    if sample_rate is None:
        raise UnknownAudioFormat("a numpy array needs its sample_rate (e.g. sample_rate=24000)")
    if array.ndim not in (1, 2) or array.size == 0:
        raise UnsupportedAudio(
            f"a numpy array of audio must be non-empty, shaped (samples,) or (samples, "
            f"channels); got shape {array.shape}"
        )
    encoding = _ARRAY_ENCODINGS.get(array.dtype.kind)
    width = array.dtype.itemsize
    if (
        encoding is None
        or (array.dtype.kind == "u" and width != 1)
        or (array.dtype.kind == "i" and width == 1)
    ):
        raise UnsupportedAudio(
            f"numpy arrays of {array.dtype} are not audio samples: use int16, int32, uint8 "
            f"(8-bit PCM), float32 or float64"
        )
    channels = 1 if array.ndim == 1 else array.shape[1]
    fmt = AudioFormat(sample_rate, width, channels, "float" if encoding == "float" else "pcm")
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return DecodedAudio("array", fmt, np.ascontiguousarray(little).tobytes())


def _raw_source(data: bytes, fmt: AudioFormat, name: str) -> DecodedAudio:
    if not data:
        raise EmptyAudio(f"{name}: is empty (0 bytes)")
    if len(data) % fmt.frame_bytes:
        raise TruncatedAudio(
            f"{name}: {len(data)} bytes is not a whole number of {fmt.frame_bytes}-byte sample "
            f"frames of {fmt.describe()}; is the declared format right?"
        )
    return DecodedAudio("raw", fmt, data)


def _open(source: AudioSource, fmt: AudioFormat | None, sample_rate: int | None) -> DecodedAudio:
    if isinstance(source, np.ndarray):
        return _array_source(source, sample_rate)
    if isinstance(source, (str, os.PathLike)):
        if fmt is None:
            return decode_file(source)
        data, name = read_bytes(source), os.fspath(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    else:
        raise TypeError(f"not an audio source: {type(source).__name__}")
    if sniff(data) is not None or fmt is None:
        return decode_bytes(data, name)  # a header is never sent as audio
    return _raw_source(data, fmt, name)


def _decoded_to_mulaw(decoded: DecodedAudio, progress: Progress | None) -> bytes:
    if decoded.format == MULAW_8K:
        return bytes(decoded.data)  # already what Twilio plays: strip the header, keep the bytes
    mono = to_mono_int16(decoded.data, decoded.format)
    resampler = Resampler(decoded.format.sample_rate, MULAW_SAMPLE_RATE)
    total_ms = decoded.duration_ms
    parts: list[bytes] = []
    for start in range(0, mono.size, _BLOCK_SAMPLES_MAX):
        block = mono[start : start + _BLOCK_SAMPLES_MAX]
        parts.append(mulaw.encode_array(resampler.process(block)).tobytes())
        if progress is not None:
            progress(
                min(total_ms, (start + block.size) * 1000 / decoded.format.sample_rate), total_ms
            )
    parts.append(mulaw.encode_array(resampler.flush()).tobytes())
    return b"".join(parts)


def convert(
    source: AudioSource,
    *,
    format: AudioFormat | None = None,
    sample_rate: int | None = None,
    progress: Progress | None = None,
) -> Conversion:
    """Convert any source to headerless mu-law/8000 mono, and say what the input was.

    Args:
        source: a path to a WAV/MP3/FLAC/Ogg-Vorbis file (or raw mu-law named ``*.ulaw``,
            ``*.raw``...); bytes of such a file (recognised by their header); raw bytes whose
            ``format`` is declared; or a numpy array (``(samples,)`` or ``(samples,
            channels)``, int16/int32/uint8/float32/float64) with its ``sample_rate``.
        format: the format of raw, headerless bytes or file contents. Ignored when the
            bytes start with a WAV/MP3/FLAC/Ogg header: a header is never audio.
        sample_rate: the sample rate of a numpy array.
        progress: called as ``progress(done_ms, total_ms)`` while converting.

    Returns:
        A :class:`Conversion`; its ``mulaw`` is ready for Twilio.

    Raises:
        AudioError: a subclass saying what is wrong: :class:`EmptyAudio`,
            :class:`TruncatedAudio`, :class:`UnknownAudioFormat`, :class:`UnsupportedAudio`.
    """
    decoded = _open(source, format, sample_rate)
    return Conversion(
        mulaw=_decoded_to_mulaw(decoded, progress),
        container=decoded.container,
        input_format=decoded.format,
        input_duration_ms=decoded.duration_ms,
        reencoded=decoded.format != MULAW_8K,
    )


def to_mulaw(
    source: AudioSource, *, format: AudioFormat | None = None, sample_rate: int | None = None
) -> bytes:
    """Any source as headerless mu-law, 8000 Hz, mono: the bytes Twilio plays.

    Takes the same arguments as :func:`convert` (which also describes the input).

    Example::

        payload = to_mulaw("prompt.mp3")
        payload = to_mulaw(pcm_bytes, format=AudioFormat(sample_rate=24000))
        payload = to_mulaw(samples, sample_rate=16000)
    """
    return convert(source, format=format, sample_rate=sample_rate).mulaw


class MulawEncoder:
    """Converts a stream of raw sample chunks to mu-law/8000 chunks as they arrive.

    Chunks may split samples anywhere (network reads do): partial sample frames are held back
    until the next chunk. If the stream starts with a WAV header (some TTS services send one),
    its format replaces ``format`` and the header is dropped.

    Args:
        format: the format of the chunks' samples, or ``None`` when the stream starts with a
            WAV header that says it.
        name: how to name the stream in error messages.
    """

    def __init__(self, format: AudioFormat | None, *, name: str = "<stream>") -> None:
        self.name = name
        self.format: AudioFormat | None = None
        self._resampler: Resampler | None = None
        self._pending = b""
        self._header_checked = False
        self._declared = format

    def _start(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resampler = Resampler(fmt.sample_rate, MULAW_SAMPLE_RATE)

    def _needs_more(self, data: bytes) -> bool:
        """Whether the start of the stream is too short to tell a file header from samples."""
        if len(data) < 12 and (
            self._declared is None or any(sig.startswith(data[:4]) for sig in _SIGNATURES)
        ):
            return True
        mpeg_bytes = mpeg_frame_bytes(data[:4])
        return mpeg_bytes is not None and len(data) < mpeg_bytes + 4

    def _check_header(self) -> bool:
        """Look for a file header at the start; ``False`` while more bytes are needed."""
        data = self._pending
        if self._needs_more(data):
            return False
        kind = sniff(data)
        if kind is Container.WAV:
            header = read_wav_header(data, self.name)
            if header is None:
                return False
            self._start(header[0])
            self._pending = data[header[1] :]
        elif kind is not None:
            raise UnsupportedAudio(
                f"{self.name}: a {kind} stream cannot be converted chunk by chunk; ask the "
                f"source for raw PCM, or collect the bytes and use to_mulaw()"
            )
        elif self._declared is None:
            raise UnknownAudioFormat(
                f"{self.name}: stream has no WAV header and no declared format; pass "
                f"format=AudioFormat(sample_rate=..., sample_width=..., channels=...)"
            )
        else:
            self._start(self._declared)
        self._header_checked = True
        return True

    def push(self, chunk: bytes) -> bytes:
        """Convert the next chunk; returns the mu-law ready so far (possibly empty)."""
        self._pending += chunk
        if not self._header_checked and not self._check_header():
            return b""
        fmt, resampler = self.format, self._resampler
        assert fmt is not None and resampler is not None
        whole = len(self._pending) - len(self._pending) % fmt.frame_bytes
        if not whole:
            return b""
        data, self._pending = self._pending[:whole], self._pending[whole:]
        if fmt == MULAW_8K:
            return data
        return mulaw.encode_array(resampler.process(to_mono_int16(data, fmt))).tobytes()

    def flush(self) -> bytes:
        """The last mu-law of the stream (the resampler's tail).

        Raises:
            TruncatedAudio: the stream ended inside a sample frame or inside its header.
        """
        if not self._header_checked:  # the stream ended before its start could be told apart
            if self._pending and self._declared is None:
                raise TruncatedAudio(f"{self.name}: stream ended inside its WAV header")
            self._start(self._declared or MULAW_8K)
            self._header_checked = True
        converted = self.push(b"") if self._pending else b""
        if self._pending:
            raise TruncatedAudio(
                f"{self.name}: stream ended mid-sample ({len(self._pending)} stray bytes); "
                f"is the declared sample width or channel count right?"
            )
        assert self._resampler is not None
        return converted + mulaw.encode_array(self._resampler.flush()).tobytes()


async def stream_to_mulaw(
    chunks: AsyncIterable[bytes], format: AudioFormat | None, *, name: str = "<stream>"
) -> AsyncIterator[bytes]:
    """Convert an async stream of raw sample chunks (e.g. TTS output) to mu-law/8000 chunks.

    Args:
        chunks: raw samples of ``format``, split anywhere; a WAV header at the start is read.
        format: the chunks' format, or ``None`` if the stream starts with a WAV header.
        name: how to name the stream in error messages.

    Yields:
        Non-empty chunks of headerless mu-law/8000 mono (frame them with ``FrameBuffer``).
    """
    encoder = MulawEncoder(format, name=name)
    async for chunk in chunks:
        converted = encoder.push(chunk)
        if converted:
            yield converted
    tail = encoder.flush()
    if tail:
        yield tail


class MulawDecoder:
    """Decodes inbound mu-law/8000 chunks to 16-bit PCM at ``sample_rate``, statefully.

    Args:
        sample_rate: the PCM rate wanted: 8000 (no resampling), 16000, 24000, 48000 or any
            other positive rate.
    """

    def __init__(self, sample_rate: int = MULAW_SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self._resampler = Resampler(MULAW_SAMPLE_RATE, sample_rate)

    def decode(self, mulaw_chunk: bytes) -> bytes:
        """Decode the next chunk; returns little-endian 16-bit PCM (the filter delays a bit)."""
        if self.sample_rate == MULAW_SAMPLE_RATE:
            return mulaw.decode(mulaw_chunk)
        codes = np.frombuffer(mulaw_chunk, dtype=np.uint8)
        return self._resampler.process(mulaw.decode_array(codes)).tobytes()

    def flush(self) -> bytes:
        """The last PCM still in the resampler's filter, at the end of the stream."""
        return self._resampler.flush().tobytes()


def mulaw_to_pcm(mulaw_bytes: bytes, sample_rate: int = MULAW_SAMPLE_RATE) -> bytes:
    """Decode a whole mu-law/8000 buffer to little-endian 16-bit PCM at ``sample_rate``."""
    decoder = MulawDecoder(sample_rate)
    return decoder.decode(mulaw_bytes) + decoder.flush()


def describe_source(source: object) -> str:
    """How to name a source in a message: its path, ``"a stream"``, or its type's name.

    Bytes are named by their length (``"1600 bytes"``) where they are played, without
    importing this package (see :meth:`mediastreams.session.MediaStream.play`).
    """
    if isinstance(source, str | PurePath):
        return str(source)
    if isinstance(source, AsyncIterable):
        return "a stream"
    return type(source).__name__


async def mulaw_chunks(
    source: AudioSource | AsyncIterable[Any],
    *,
    format: AudioFormat | None = None,
    sample_rate: int | None = None,
) -> AsyncIterator[bytes]:
    """Any source as mu-law/8000 chunks, as a session plays it.

    An async iterable of chunks (a TTS stream) is converted chunk by chunk as it arrives:
    raw samples of ``format``, a stream that starts with a WAV header, or mu-law/8000 passed
    through when there is neither. Anything else goes through :func:`to_mulaw` in a thread
    (decoding and resampling a long file takes a while) and comes out as one chunk.

    Raises:
        AudioError: the source cannot be read or converted.
    """
    if not isinstance(source, AsyncIterable):
        yield await asyncio.to_thread(to_mulaw, source, format=format, sample_rate=sample_rate)
        return
    iterator = aiter(source)
    try:
        first = bytes(await anext(iterator))
    except StopAsyncIteration:
        return
    if format is None and not first.startswith(b"RIFF"):
        yield first  # mu-law already: passed through with no conversion layer
        async for chunk in iterator:
            yield bytes(chunk)
        return

    async def rest() -> AsyncIterator[bytes]:
        yield first
        async for chunk in iterator:
            yield bytes(chunk)

    async for chunk in stream_to_mulaw(rest(), format):
        yield chunk
