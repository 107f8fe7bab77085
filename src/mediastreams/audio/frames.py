"""20 ms framing of mu-law/8000 and every conversion between bytes and milliseconds.

Twilio's media frames carry 20 ms of mu-law at 8000 Hz: 160 samples, one byte each. Audio
that does not fill the last frame is padded with mu-law silence, ``0xFF`` (``0x00`` is a
full-scale sample and sounds as a buzz).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..wireformat import FRAME_BYTES, FRAME_MS, SILENCE_BYTE
from ..wireformat import SAMPLE_RATE as MULAW_SAMPLE_RATE

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "MULAW_SAMPLE_RATE",
    "FrameBuffer",
    "bytes_to_ms",
    "ms_to_bytes",
    "pad_to_frame",
    "silence",
    "split_frames",
]

# FRAME_MS, FRAME_BYTES and MULAW_SAMPLE_RATE (the wire's SAMPLE_RATE) are defined once, in
# mediastreams.wireformat, and exported here as this package's names for them.


def bytes_to_ms(
    n_bytes: int, *, sample_rate: int = MULAW_SAMPLE_RATE, sample_width: int = 1, channels: int = 1
) -> float:
    """Duration in milliseconds of ``n_bytes`` of audio (default: mu-law/8000 mono).

    Args:
        n_bytes: length of the audio in bytes.
        sample_rate: samples per second per channel.
        sample_width: bytes per sample (1 for mu-law, 2 for 16-bit PCM).
        channels: interleaved channels.
    """
    return n_bytes * 1000 / (sample_rate * sample_width * channels)


def ms_to_bytes(
    duration_ms: float,
    *,
    sample_rate: int = MULAW_SAMPLE_RATE,
    sample_width: int = 1,
    channels: int = 1,
) -> int:
    """Bytes of audio in ``duration_ms`` milliseconds, rounded down to whole sample frames."""
    n_samples = int(duration_ms * sample_rate // 1000)
    return n_samples * sample_width * channels


def silence(duration_ms: float) -> bytes:
    """Mu-law/8000 silence (``0xFF`` bytes) lasting ``duration_ms`` milliseconds."""
    return bytes([SILENCE_BYTE]) * ms_to_bytes(duration_ms)


def pad_to_frame(mulaw: bytes, frame_bytes: int = FRAME_BYTES) -> bytes:
    """``mulaw`` padded with silence (``0xFF``) up to a whole number of frames."""
    short = -len(mulaw) % frame_bytes
    return mulaw + bytes([SILENCE_BYTE]) * short if short else mulaw


def split_frames(mulaw: bytes, frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Split mu-law into frames of ``frame_bytes`` (default 160 = 20 ms), padding the last.

    Args:
        mulaw: headerless mu-law/8000.
        frame_bytes: bytes per frame; Twilio's frames are 160.

    Yields:
        Frames of exactly ``frame_bytes`` bytes; nothing for empty input.
    """
    if frame_bytes <= 0:
        raise ValueError(f"frame_bytes must be positive, not {frame_bytes}")
    padded = pad_to_frame(mulaw, frame_bytes)
    view = memoryview(padded)
    for start in range(0, len(padded), frame_bytes):
        yield bytes(view[start : start + frame_bytes])


class FrameBuffer:
    """Collects mu-law chunks of any size and hands out whole 20 ms frames.

    For streams (TTS output, a live source): ``push()`` returns every frame completed so
    far and keeps the remainder; ``flush()`` pads and returns what is left at the end.
    """

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, not {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._pending = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes held back until a frame is full."""
        return len(self._pending)

    def push(self, mulaw: bytes) -> list[bytes]:
        """Add ``mulaw`` and return the frames it completes (possibly none)."""
        self._pending += mulaw
        whole = len(self._pending) - len(self._pending) % self.frame_bytes
        if not whole:
            return []
        view = memoryview(self._pending)
        ready = [bytes(view[i : i + self.frame_bytes]) for i in range(0, whole, self.frame_bytes)]
        view.release()
        del self._pending[:whole]
        return ready

    def flush(self) -> bytes | None:
        """The last, silence-padded frame, or ``None`` when nothing is pending."""
        if not self._pending:
            return None
        last = pad_to_frame(bytes(self._pending), self.frame_bytes)
        self._pending.clear()
        return last
