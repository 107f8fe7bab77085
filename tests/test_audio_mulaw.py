"""The mu-law codec against a slow G.711 reference (and audioop where it still exists)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mediastreams.audio import mulaw

ALL_PCM16 = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


def reference_encode_sample(sample: int) -> int:
    """G.711 mu-law of one int16 sample, the way the classic C reference does it."""
    value = sample >> 2  # 14-bit
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + 33
    for segment, end in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)):
        if value <= end:
            return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def reference_decode_code(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def test_encode_matches_reference_on_every_sample() -> None:
    expected = bytes(reference_encode_sample(s) for s in range(-32768, 32768))
    assert mulaw.encode(ALL_PCM16) == expected


def test_decode_matches_reference_on_every_code() -> None:
    expected = np.array([reference_decode_code(c) for c in range(256)], dtype="<i2").tobytes()
    assert mulaw.decode(ALL_CODES) == expected
    # The bulk path (pairs table) on every pair of codes, and an odd length.
    pairs = np.arange(65536, dtype="<u2").tobytes()
    table = np.frombuffer(expected, "<i2")
    want = table[np.frombuffer(pairs, np.uint8)].tobytes()
    assert mulaw.decode(pairs) == want
    assert mulaw.decode(pairs + b"\x01") == want + table[1:2].tobytes()


def test_matches_audioop_where_it_exists() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # audioop's own, on 3.11 and 3.12
        audioop = pytest.importorskip("audioop", reason="no audioop here, nor audioop-lts")
    assert mulaw.encode(ALL_PCM16) == audioop.lin2ulaw(ALL_PCM16, 2)
    assert mulaw.decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert mulaw.decode(ALL_CODES * 10) == audioop.ulaw2lin(ALL_CODES * 10, 2)


def test_silence_is_0xff_and_decodes_to_zero() -> None:
    assert mulaw.encode(b"\x00\x00") == bytes([mulaw.SILENCE_BYTE]) == b"\xff"
    assert mulaw.decode(b"\xff") == b"\x00\x00"


def test_round_trip_error_is_within_half_a_g711_step() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    codes = np.frombuffer(mulaw.encode(ALL_PCM16), np.uint8)
    restored = np.frombuffer(mulaw.decode(codes.tobytes()), "<i2").astype(np.int32)
    segment = ((~codes.astype(np.int32)) & 0x70) >> 4
    step = 8 << segment  # distance between neighbouring codes in this segment, in int16 units
    in_range = np.abs(samples) <= 32124  # beyond the largest code the sample is clipped
    error = np.abs(restored - samples)
    # + 3: G.711 works on 14 bits, so the 2 low bits of a 16-bit sample are dropped first.
    assert np.all(error[in_range] <= step[in_range] // 2 + 3)
    assert np.all(error[~in_range] <= 32768 - 32124)


def test_array_variants_match_bytes_variants() -> None:
    samples = np.frombuffer(ALL_PCM16, "<i2")
    assert mulaw.encode_array(samples).tobytes() == mulaw.encode(ALL_PCM16)
    codes = np.frombuffer(ALL_CODES, np.uint8)
    assert mulaw.decode_array(codes).tobytes() == mulaw.decode(ALL_CODES)
    assert mulaw.decode_array(codes.reshape(16, 16)).shape == (256,)


def test_frame_sized_and_empty_inputs() -> None:
    frame = np.frombuffer(ALL_PCM16, "<i2")[::410][:160].tobytes()
    encoded = mulaw.encode(frame)
    assert len(encoded) == 160
    assert len(mulaw.decode(encoded)) == 320
    assert mulaw.encode(b"") == b""
    assert mulaw.decode(b"") == b""
    assert mulaw.decode(bytearray(b"\xff\x00")) == mulaw.decode(memoryview(b"\xff\x00"))


def test_odd_pcm_length_is_refused() -> None:
    with pytest.raises(ValueError, match="odd length"):
        mulaw.encode(b"\x00\x00\x00")
