import numpy as np

from mediastreams.audio import mulaw
from mediastreams.demo import SpeechDetector, prompt
from mediastreams.demo.conversation import beep


def frames(audio: bytes) -> list[bytes]:
    return [audio[i : i + 160] for i in range(0, len(audio) - 159, 160)]


def test_prompts_are_bundled_as_mulaw() -> None:
    greeting = prompt("greeting")
    assert 4_000 * 8 < len(greeting) < 10_000 * 8  # seconds of 8 kHz mu-law, no header
    assert greeting[:4] != b"RIFF"


def test_detector_finds_speech_start_and_end() -> None:
    detector = SpeechDetector()
    changes = [detector.push(f) for f in frames(prompt("caller-request"))]
    assert changes.count("start") == 1
    changes += [detector.push(b"\xff" * 160) for _ in range(40)]
    assert changes.count("end") == 1
    assert changes.index("start") < changes.index("end")


def test_detector_ignores_silence_and_a_click() -> None:
    detector = SpeechDetector()
    click = mulaw.encode(np.full(160, 20000, dtype="<i2").tobytes())
    results = [detector.push(f) for f in [b"\xff" * 160] * 10 + [click] + [b"\xff" * 160] * 10]
    assert results == [None] * 21


def test_beep_is_a_short_tone() -> None:
    tone = beep(duration_ms=100)
    assert tone.dtype == np.int16 and len(tone) == 800
    assert 5000 < np.abs(tone).max() <= 8000
