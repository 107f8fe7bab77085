"""Sample formats, and raw interleaved samples of any format to mono int16.

:class:`AudioFormat` declares what raw bytes hold (rate, width, channels, encoding). Every
conversion goes through mono int16 at the source rate: G.711 keeps 14 bits, so 16 bits lose
nothing that reaches the caller, and soxr resamples int16 directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ..exceptions import UnsupportedAudio
from . import mulaw

__all__ = [
    "MULAW_8K",
    "AudioFormat",
    "Encoding",
    "alaw_decode_array",
    "to_mono_int16",
]

Encoding = Literal["pcm", "float", "mulaw", "alaw"]
"""``pcm``: integer PCM (8-bit unsigned, 16/24/32-bit signed, little-endian); ``float``:
IEEE float of 4 or 8 bytes in [-1, 1]; ``mulaw`` / ``alaw``: G.711, one byte per sample."""

_WIDTHS: Final[dict[str, tuple[int, ...]]] = {
    "pcm": (1, 2, 3, 4),
    "float": (4, 8),
    "mulaw": (1,),
    "alaw": (1,),
}


@dataclass(frozen=True)
class AudioFormat:
    """What raw, headerless audio bytes hold.

    Attributes:
        sample_rate: samples per second per channel (e.g. 8000, 16000, 24000, 44100).
        sample_width: bytes per sample: 1, 2, 3 or 4 for ``pcm``; 4 or 8 for ``float``;
            1 for ``mulaw`` and ``alaw``.
        channels: interleaved channels; more than one is mixed down to mono.
        encoding: how a sample is coded, see :data:`Encoding`.
    """

    sample_rate: int
    sample_width: int = 2
    channels: int = 1
    encoding: Encoding = "pcm"

    def __post_init__(self) -> None:
        widths = _WIDTHS.get(self.encoding)
        if widths is None:
            raise UnsupportedAudio(
                f"unknown encoding {self.encoding!r}: use one of {', '.join(_WIDTHS)}"
            )
        if self.sample_width not in widths:
            raise UnsupportedAudio(
                f"unsupported sample width for {self.encoding}: {self.sample_width} bytes "
                f"({8 * self.sample_width}-bit); {self.encoding} takes "
                f"{' or '.join(str(w) for w in widths)} bytes per sample"
            )
        if self.sample_rate <= 0 or self.channels <= 0:
            raise UnsupportedAudio(
                f"sample_rate and channels must be positive, not {self.sample_rate} Hz and "
                f"{self.channels} channels"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (one sample of every channel)."""
        return self.sample_width * self.channels

    def describe(self) -> str:
        """A short human description, e.g. ``16-bit PCM, 24000 Hz, mono``."""
        kind = {
            "pcm": f"{8 * self.sample_width}-bit PCM",
            "float": f"{8 * self.sample_width}-bit float",
            "mulaw": "mu-law",
            "alaw": "A-law",
        }[self.encoding]
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{kind}, {self.sample_rate} Hz, {layout}"


MULAW_8K: Final = AudioFormat(sample_rate=8000, sample_width=1, channels=1, encoding="mulaw")
"""Twilio's format: headerless mu-law, 8000 Hz, mono."""


def _build_alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (codes & 0x70) >> 4
    base = (codes & 0x0F) << 4
    magnitude = np.where(segment == 0, base + 8, (base + 0x108) << np.maximum(segment - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype("<i2")


_ALAW: Final = _build_alaw_table()


def alaw_decode_array(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Decode G.711 A-law codes to int16 (bit-exact with ``audioop.alaw2lin``)."""
    return _ALAW.take(codes)


def _to_wide(data: bytes | memoryview, fmt: AudioFormat) -> npt.NDArray[np.integer[Any]]:
    """Interleaved samples on the int16 scale, as int16 or int32 (every value fits int16)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if fmt.encoding == "mulaw":
        return mulaw.decode_array(raw)
    if fmt.encoding == "alaw":
        return alaw_decode_array(raw)
    if fmt.encoding == "float":
        floats = np.frombuffer(data, dtype="<f4" if fmt.sample_width == 4 else "<f8")
        return np.clip(np.rint(floats * 32768.0), -32768, 32767).astype(np.int32)
    if fmt.sample_width == 1:  # 8-bit WAV PCM is unsigned, centred on 128
        return (raw.astype(np.int32) - 128) << 8
    if fmt.sample_width == 2:
        return np.frombuffer(data, dtype="<i2")
    if fmt.sample_width == 3:  # the top two bytes of each 24-bit sample are its int16 value
        return np.ascontiguousarray(raw.reshape(-1, 3)[:, 1:]).view("<i2")[:, 0]
    return np.frombuffer(data, dtype="<i4") >> 16


def to_mono_int16(data: bytes | memoryview, fmt: AudioFormat) -> npt.NDArray[np.int16]:
    """Raw interleaved samples of ``fmt`` to mono int16 at the same sample rate.

    Channels are averaged (rounded). ``data`` must hold whole sample frames (the callers
    check, as they know the file name to report).
    """
    wide = _to_wide(data, fmt)
    if fmt.channels == 2:
        pairs = wide.reshape(-1, 2)
        wide = (pairs[:, 0].astype(np.int32) + pairs[:, 1] + 1) >> 1
    elif fmt.channels > 2:
        summed = wide.reshape(-1, fmt.channels).sum(axis=1, dtype=np.int32)
        wide = np.rint(summed / fmt.channels).astype(np.int32)
    # Every value is on the int16 scale by now, so the cast cannot wrap.
    return wide.astype("<i2", copy=False)
