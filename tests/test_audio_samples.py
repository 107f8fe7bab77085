"""Declared sample formats and raw samples of every format to mono int16."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from mediastreams.audio import mulaw
from mediastreams.audio.samples import MULAW_8K, AudioFormat, alaw_decode_array, to_mono_int16
from mediastreams.exceptions import AudioError, UnsupportedAudio

RAMP = np.array([-32768, -1000, -1, 0, 1, 1000, 32767], dtype=np.int16)


def reference_alaw(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = magnitude + 8 if segment == 0 else (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def test_alaw_matches_reference_and_audioop() -> None:
    codes = np.arange(256, dtype=np.uint8)
    expected = [reference_alaw(c) for c in range(256)]
    assert alaw_decode_array(codes).tolist() == expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            audioop = importlib.import_module("audioop")
        except ImportError:
            return
    assert alaw_decode_array(codes).tobytes() == audioop.alaw2lin(bytes(range(256)), 2)


@pytest.mark.parametrize(
    ("width", "encode"),
    [
        (1, lambda s: ((s.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()),
        (2, lambda s: s.astype("<i2").tobytes()),
        (3, lambda s: b"".join(b"\x00" + int(v).to_bytes(2, "little", signed=True) for v in s)),
        (4, lambda s: (s.astype("<i4") << 16).tobytes()),
    ],
)
def test_integer_widths(width: int, encode) -> None:  # type: ignore[no-untyped-def]
    result = to_mono_int16(encode(RAMP), AudioFormat(8000, width))
    expected = RAMP if width > 1 else (RAMP.astype(np.int32) >> 8 << 8).astype(np.int16)
    assert result.tolist() == expected.tolist()


@pytest.mark.parametrize("width", [4, 8])
def test_float_is_scaled_and_clipped(width: int) -> None:
    floats = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 0.999, 1.0, 2.0])
    data = floats.astype("<f4" if width == 4 else "<f8").tobytes()
    result = to_mono_int16(data, AudioFormat(8000, width, encoding="float"))
    assert result.tolist() == [-32768, -32768, -16384, 0, 16384, 32735, 32767, 32767]


def test_channels_are_averaged() -> None:
    stereo = np.array([[100, 300], [-100, -301], [32767, 32767], [-32768, -32768]], "<i2")
    result = to_mono_int16(stereo.tobytes(), AudioFormat(8000, 2, 2))
    assert result.tolist() == [200, -200, 32767, -32768]
    three = np.array([[3, 6, 9], [0, 0, 1]], "<i2")
    assert to_mono_int16(three.tobytes(), AudioFormat(8000, 2, 3)).tolist() == [6, 0]


def test_mulaw_input_is_decoded() -> None:
    codes = mulaw.encode(RAMP.tobytes())
    result = to_mono_int16(codes, MULAW_8K)
    assert result.tobytes() == mulaw.decode(codes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_width": 5}, "unsupported sample width for pcm: 5 bytes"),
        ({"sample_width": 2, "encoding": "float"}, "float takes 4 or 8 bytes"),
        ({"sample_width": 2, "encoding": "mulaw"}, "mulaw takes 1 bytes"),
        ({"encoding": "opus"}, "unknown encoding 'opus'"),
        ({"channels": 0}, "must be positive"),
    ],
)
def test_bad_formats_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UnsupportedAudio, match=message) as raised:
        AudioFormat(8000, **kwargs)  # type: ignore[arg-type]
    assert isinstance(raised.value, AudioError)
    assert isinstance(raised.value, ValueError)


def test_describe() -> None:
    assert AudioFormat(24000).describe() == "16-bit PCM, 24000 Hz, mono"
    assert MULAW_8K.describe() == "mu-law, 8000 Hz, mono"
    assert AudioFormat(44100, 4, 2, "float").describe() == "32-bit float, 44100 Hz, stereo"
    assert AudioFormat(48000, 3, 6).frame_bytes == 18
