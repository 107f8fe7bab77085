"""The wire's constants: one definition each, shared by every layer, and light to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mediastreams import wireformat
from mediastreams.wireformat import (
    BYTES_PER_MS,
    FRAME_BYTES,
    FRAME_MS,
    SAMPLE_RATE,
    SENDERS,
    SILENCE_BYTE,
    SILENCE_FRAME,
)


def test_the_numbers_are_twilios() -> None:
    # https://www.twilio.com/docs/voice/media-streams/websocket-messages#media-message:
    # mu-law/8000, one byte per sample, 20 ms a frame.
    assert (SAMPLE_RATE, BYTES_PER_MS, FRAME_MS, FRAME_BYTES) == (8000, 8, 20, 160)
    assert SILENCE_FRAME == b"\xff" * 160 and SILENCE_BYTE == 0xFF
    assert SENDERS == ("twilio", "app")


def test_the_audio_package_exports_the_same_objects() -> None:
    from mediastreams import audio
    from mediastreams.audio import frames, mulaw

    assert audio.FRAME_MS is frames.FRAME_MS is wireformat.FRAME_MS
    assert audio.FRAME_BYTES is frames.FRAME_BYTES is wireformat.FRAME_BYTES
    assert audio.MULAW_SAMPLE_RATE is frames.MULAW_SAMPLE_RATE is wireformat.SAMPLE_RATE
    assert audio.SILENCE_BYTE is mulaw.SILENCE_BYTE is wireformat.SILENCE_BYTE


def test_one_sender_type() -> None:
    from mediastreams import diagnostics, trace

    assert diagnostics.Sender is wireformat.Sender
    assert trace.Sender is wireformat.Sender


@pytest.mark.parametrize(
    "module", ["mediastreams.wireformat", "mediastreams.containers", "mediastreams.session"]
)
def test_importing_stays_free_of_numpy(module: str) -> None:
    code = f"import sys, {module}; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
