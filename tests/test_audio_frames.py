"""20 ms framing and the bytes <-> milliseconds conversions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediastreams.audio import frames as framing
from mediastreams.audio.frames import (
    FRAME_BYTES,
    FrameBuffer,
    bytes_to_ms,
    ms_to_bytes,
    pad_to_frame,
    silence,
    split_frames,
)


def test_twilio_frame_constants() -> None:
    assert FRAME_BYTES == 160
    assert framing.FRAME_MS == 20
    assert framing.MULAW_SAMPLE_RATE == 8000


def test_bytes_and_milliseconds() -> None:
    assert bytes_to_ms(160) == 20
    assert bytes_to_ms(8000) == 1000
    assert bytes_to_ms(32000, sample_rate=16000, sample_width=2) == 1000
    assert ms_to_bytes(20) == 160
    assert ms_to_bytes(1000, sample_rate=24000, sample_width=2, channels=2) == 96000
    assert ms_to_bytes(0.1) == 0  # less than one sample


@given(st.integers(min_value=0, max_value=10**7))
def test_ms_to_bytes_inverts_bytes_to_ms(n_bytes: int) -> None:
    assert ms_to_bytes(bytes_to_ms(n_bytes)) == n_bytes


def test_silence_is_0xff() -> None:
    assert silence(20) == b"\xff" * 160
    assert silence(0) == b""


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=400))
def test_frames_are_whole_and_padded_with_silence(data: bytes, frame_bytes: int) -> None:
    result = list(split_frames(data, frame_bytes))
    assert all(len(frame) == frame_bytes for frame in result)
    assert len(result) == -(-len(data) // frame_bytes)
    joined = b"".join(result)
    assert joined[: len(data)] == data
    assert set(joined[len(data) :]) <= {0xFF}
    assert pad_to_frame(data, frame_bytes) == joined


@given(st.lists(st.binary(max_size=500), max_size=20))
def test_frame_buffer_gives_the_same_frames_as_one_call(chunks: list[bytes]) -> None:
    buffer = FrameBuffer()
    produced: list[bytes] = []
    for chunk in chunks:
        produced += buffer.push(chunk)
        assert buffer.pending_bytes < FRAME_BYTES
    last = buffer.flush()
    if last is not None:
        produced.append(last)
    assert produced == list(split_frames(b"".join(chunks)))
    assert buffer.flush() is None


def test_frame_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        list(split_frames(b"abc", 0))
    with pytest.raises(ValueError, match="positive"):
        FrameBuffer(0)
